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

/**
 * A JSON.stringify replacer that shows every `jwksUri` member as uriShown does, wherever it
 * sits: the control plane's debug pages carry policies in several shapes (a proxy's ACKed
 * inbound policy, the view's RequestAuthentications, the dashboard's proxies), and one
 * replacer at the point of writing covers each of them, and any page added later.
 */
export function jwksUriHidden(key: string, value: unknown): unknown {
  return key === 'jwksUri' && typeof value === 'string' ? uriShown(value) : value;
}
