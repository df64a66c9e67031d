/**
 * A jwksUri as logs and the `source` label show it: without its query, which may carry an
 * API key (`?key=...`). Credentials in the authority are refused by the parser
 * (contract/parse.ts JWKS_URI); the metric is on the pod's metrics port, which Prometheus
 * (and whoever reaches the pod) reads. Shared by the proxy (its logs, metrics and admin
 * /config_dump) and the control plane (its admin port's debug pages and /api/).
 */
export function uriShown(uri: string): string {
  const q = uri.search(/[?#]/);
  return q < 0 ? uri : `${uri.slice(0, q)}?…`;
}

/**
 * The policy as the admin /config_dump (and so `wren proxy-config --admin`) shows it: each
 * jwksUri as uriShown shows it. The admin port is the pod's, but what it dumps is read by
 * whoever debugs the pod and pasted into tickets; the key stays in the RequestAuthentication.
 */
export function policyShown<P extends { readonly jwtRules?: readonly { readonly jwksUri: string }[] }>(p: P): P {
  const rules = p.jwtRules;
  if (!rules?.some((r) => uriShown(r.jwksUri) !== r.jwksUri)) return p;
  return { ...p, jwtRules: rules.map((r) => ({ ...r, jwksUri: uriShown(r.jwksUri) })) };
}

/** What an AuthorizationPolicy condition's hidden value is shown as: one per value, so their count stays visible. */
const CONDITION_VALUE_HIDDEN = '<hidden>';

/**
 * The condition keys whose values may be a credential: a `when: request.headers[x-api-key]`
 * with a static key is the usual way to gate a route on an API key, and a
 * `request.auth.claims[...]` value may be a tenant or account secret. The other keys
 * (source.*, destination.port, request.auth.principal/audiences/presenter) name identities
 * that the rest of the page shows anyway.
 */
const SECRET_CONDITION_KEY = /^request\.(?:headers|auth\.claims)\[/;

/**
 * A JSON.stringify replacer for what the control plane's admin port writes (every debug page,
 * /api/ and so the dashboard): each `jwksUri` member as uriShown shows it, and the `values` and
 * `notValues` of each AuthorizationPolicy condition on request.headers[...] or
 * request.auth.claims[...] replaced one for one by CONDITION_VALUE_HIDDEN (the key and the
 * count stay, for debugging which condition failed). The pages carry policies in several
 * shapes (a proxy's ACKed inbound policy, the view's policies, the dashboard's service and
 * denial details), and one replacer at the point of writing covers each of them, and any page
 * added later. The values stay in the AuthorizationPolicy, where RBAC guards them.
 */
export function secretsHidden(key: string, value: unknown): unknown {
  if (key === 'jwksUri' && typeof value === 'string') return uriShown(value);
  if (isSecretCondition(value)) {
    return { ...value, values: value.values.map(() => CONDITION_VALUE_HIDDEN), notValues: value.notValues.map(() => CONDITION_VALUE_HIDDEN) };
  }
  return value;
}

function isSecretCondition(v: unknown): v is { key: string; values: unknown[]; notValues: unknown[] } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const c = v as Record<string, unknown>;
  return typeof c['key'] === 'string' && SECRET_CONDITION_KEY.test(c['key']) && Array.isArray(c['values']) && Array.isArray(c['notValues']);
}
