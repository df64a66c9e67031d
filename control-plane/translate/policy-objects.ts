import type { AuthzPolicy, JwtRule, MtlsMode } from '../../contract/model.js';
import { checkDenyHasRules, checkPortKeys, MTLS_MODES, parseAuthzAction, parseAuthzRuleResource, parseJwtRule, unsupportedField } from '../../contract/parse.js';
import { arr, fail, literal, map, obj, optional, record, str, withDefault, type Parser } from '../../common/schema.js';
import { TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION } from './k8s-objects.js';

/**
 * Validating parsers for the security CRDs (manifests/crds/peerauthentication.yaml,
 * authorizationpolicy.yaml, requestauthentication.yaml), from real API JSON to what policy resolution needs. The
 * spec is checked strictly (unknown fields are errors, with their path, like the CRD
 * schema) since a typo in a security policy must not pass silently; metadata is lenient.
 */
export type Labels = Readonly<Record<string, string>>;

/** UNSET: inherit from the enclosing level (namespace, then mesh-wide, then STRICT). */
export type PeerMode = MtlsMode | 'UNSET';

export interface KPeerAuthentication {
  readonly name: string;
  readonly namespace: string;
  /** matchLabels; null (or empty) = every workload of the namespace. */
  readonly selector: Labels | null;
  readonly mode: PeerMode;
  /** Per workload port; only honoured on workload-level (selector) policies, as in Istio. */
  readonly portLevelMtls: Readonly<Record<string, PeerMode>>;
  readonly createdAt: string;
}

export interface KAuthorizationPolicy {
  readonly namespace: string;
  readonly selector: Labels | null;
  /** The model policy, named `namespace/name`. */
  readonly policy: AuthzPolicy;
  readonly createdAt: string;
}

export interface KRequestAuthentication {
  /** `namespace/name`, for ordering and /debug/view. */
  readonly name: string;
  readonly namespace: string;
  readonly selector: Labels | null;
  readonly jwtRules: readonly JwtRule[];
  readonly createdAt: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const timestamp: Parser<string> = (raw) => (raw instanceof Date ? raw.toISOString() : typeof raw === 'string' ? raw : '');

/** metadata of a namespaced resource: name, namespace (default `default`), creationTimestamp; other fields allowed. Shared with telemetry-objects.ts. */
export const metadata = obj(
  { name: str({ pattern: DNS_SUBDOMAIN }), namespace: str({ pattern: DNS_LABEL, default: 'default' }), creationTimestamp: timestamp },
  { allowUnknown: true },
);
const apiVersion = optional(literal([`${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}`] as const));
/** spec.selector.matchLabels; absent or empty = null (the whole namespace). Shared with telemetry-objects.ts. */
export const selector: Parser<Labels | null> = map(
  withDefault(obj({ matchLabels: record(str()) }), null as { matchLabels: Labels } | null),
  (s) => (s && Object.keys(s.matchLabels).length > 0 ? s.matchLabels : null),
);
const PEER_MODES = [...MTLS_MODES, 'UNSET'] as readonly PeerMode[];
const peerMode = literal(PEER_MODES, 'UNSET');

/** Common envelope; `status` and other top-level fields the API server adds are allowed. */
const resource = <S>(spec: Parser<S>) => obj({ apiVersion, kind: optional(str()), metadata, spec }, { allowUnknown: true });

export const parsePeerAuthenticationResource: Parser<KPeerAuthentication> = (raw, path) => {
  const o = resource(
    withDefault(
      obj({
        selector,
        mtls: obj({ mode: peerMode }),
        portLevelMtls: map(record(obj({ mode: literal(PEER_MODES) })), checkPortKeys),
      }),
      { selector: null, mtls: { mode: 'UNSET' as PeerMode }, portLevelMtls: {} },
    ),
  )(raw, path);
  const at = (k: string) => (path ? `${path}.${k}` : k);
  // Istio: "portLevelMtls requires selector" (the ports are a workload's container ports).
  if (Object.keys(o.spec.portLevelMtls).length > 0 && o.spec.selector === null)
    fail(at('spec.selector'), 'is required when portLevelMtls is set (port-level modes apply to the workloads a selector picks)');
  return Object.freeze({
    name: o.metadata.name,
    namespace: o.metadata.namespace,
    selector: o.spec.selector,
    mode: o.spec.mtls.mode,
    portLevelMtls: Object.freeze(Object.fromEntries(Object.entries(o.spec.portLevelMtls).map(([k, v]) => [k, v.mode]))),
    createdAt: o.metadata.creationTimestamp,
  });
};

/**
 * An AuthorizationPolicy's selector: as `selector`, but `selector: {}` is refused (omit it to
 * select the whole namespace). It is what the API server leaves of a misspelt `matchLabels`
 * (pruned for clients without strict field validation), and read as "every workload" it
 * would spread an ALLOW meant for one workload to its whole namespace (the CRD says
 * minProperties: 1).
 */
const authzSelector: Parser<Labels | null> = (raw, path) =>
  raw !== null && typeof raw === 'object' && !Array.isArray(raw) && Object.keys(raw).length === 0
    ? fail(path, 'must not be empty: leave it out to select every workload of the namespace, or set matchLabels')
    : selector(raw, path);

export const parseAuthorizationPolicyResource: Parser<KAuthorizationPolicy> = (raw, path) => {
  const spec = map(
    obj({
      selector: authzSelector, action: parseAuthzAction, rules: arr(parseAuthzRuleResource, { default: [] }),
      // Istio's targetRef(s) (a Service or Gateway instead of a selector): empty is "not set", anything else refused, as the CRD.
      targetRef: unsupportedField('object', 'use selector'), targetRefs: unsupportedField('list', 'use selector'),
    }),
    checkDenyHasRules,
  );
  const o = resource((v, p) => (v === undefined || v === null ? fail(p, 'is required') : spec(v, p)))(raw, path);
  return Object.freeze({
    namespace: o.metadata.namespace,
    selector: o.spec.selector,
    policy: Object.freeze({ name: `${o.metadata.namespace}/${o.metadata.name}`, action: o.spec.action, rules: o.spec.rules }),
    createdAt: o.metadata.creationTimestamp,
  });
};

/**
 * Istio's RequestAuthentication (security/v1beta1/request_authentication.proto): which
 * issuers' end-user tokens the selected workloads accept. Two rules of one resource may
 * not name the same issuer (the proxy could not tell which one a token is for).
 */
/** In a resource an empty string is a mistake (the CRD's pattern / minLength says so), not "unset" as on the wire. */
const NON_EMPTY_FIELDS = ['jwksUri', 'jwks', 'jwksFile', 'outputPayloadToHeader'] as const;
const jwtRuleResource: Parser<JwtRule> = (raw, path) => {
  if (raw && typeof raw === 'object')
    for (const k of NON_EMPTY_FIELDS) if ((raw as Record<string, unknown>)[k] === '') fail(`${path}.${k}`, 'must not be empty');
  return parseJwtRule(raw, path);
};

export const parseRequestAuthenticationResource: Parser<KRequestAuthentication> = (raw, path) => {
  const spec = obj({ selector, jwtRules: arr(jwtRuleResource, { default: [] }) });
  const o = resource(withDefault(spec, { selector: null, jwtRules: [] }))(raw, path);
  const at = (k: string) => (path ? `${path}.${k}` : k);
  const seen = new Set<string>();
  o.spec.jwtRules.forEach((r, i) => {
    if (seen.has(r.issuer)) fail(at(`spec.jwtRules[${i}].issuer`), `duplicate issuer ${JSON.stringify(r.issuer)}`);
    seen.add(r.issuer);
  });
  return Object.freeze({
    name: `${o.metadata.namespace}/${o.metadata.name}`,
    namespace: o.metadata.namespace,
    selector: o.spec.selector,
    jwtRules: o.spec.jwtRules,
    createdAt: o.metadata.creationTimestamp,
  });
};
