import type { AuthzPolicy, AuthzRule, JwtRule, MtlsMode } from '../../contract/model.js';
import { ROOT_NAMESPACE } from '../../contract/defaults.js';
import { printable } from '../../common/printable.js';
import { authzNeverMatching, parseAuthzAction, parseAuthzRuleResource, unsupportedField } from '../../contract/parse-authz.js';
import { checkPortKeys, MTLS_MODES, parseJwtRule } from '../../contract/parse.js';
import { arr, ConfigError, fail, literal, map, obj, optional, record, str, withDefault, type Parser } from '../../common/schema.js';
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
  /**
   * matchLabels; null = every workload of the namespace, as a namespace-wide (or, in the
   * root namespace, mesh-wide) policy. Parsed objects never hold `{}`; a fail-closed
   * stand-in whose selector cannot be read does: a workload-level policy selecting every
   * workload of the namespace (failClosedPeerAuthentication).
   */
  readonly selector: Labels | null;
  readonly mode: PeerMode;
  /** Per workload port; only honoured on workload-level (selector) policies, as in Istio. */
  readonly portLevelMtls: Readonly<Record<string, PeerMode>>;
  readonly createdAt: string;
  /**
   * Set on the stand-in for an object that was refused with no last good version to keep
   * (failClosedPeerAuthentication): what is enforced instead (mTLS STRICT), and why. Shown on
   * /debug/view, /debug/rejected and by `wren check`; proxies get the resolved mode.
   */
  readonly failClosed?: FailClosed;
}

export interface KAuthorizationPolicy {
  readonly namespace: string;
  readonly selector: Labels | null;
  /** The model policy, named `namespace/name`. */
  readonly policy: AuthzPolicy;
  readonly createdAt: string;
  /**
   * Set on the stand-in for an object that was refused with no last good version to keep
   * (failClosedAuthorizationPolicy): what is enforced instead, and why. Shown on
   * /debug/view, /debug/rejected, the dashboard and `wren check`; never sent to proxies
   * (they get `policy`, an ordinary ALLOW or DENY).
   */
  readonly failClosed?: FailClosed;
  /**
   * What in the object can never match (contract/parse.ts authzNeverMatching), as
   * `spec.field.path: problem`: enforced as matching nothing, as the release before did,
   * and reported (the sources' log line, `wren check`). Absent when there is none. Never
   * sent to proxies.
   */
  readonly warnings?: readonly string[];
}

export interface FailClosed {
  /** The refusal: `field.path: problem`. */
  readonly refusal: string;
  /** What is enforced, in words: `an ALLOW that matches nothing (...)`, `a DENY of every request (...)`. */
  readonly enforced: string;
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

/**
 * The selector of an AuthorizationPolicy, a PeerAuthentication or a RequestAuthentication:
 * as `selector`, but `selector: {}` is refused (omit it to select the whole namespace). It is
 * what the API server leaves of a misspelt `matchLabels` (pruned for clients without strict
 * field validation), and read as "every workload" it would spread an ALLOW, an mTLS mode or a
 * token requirement meant for one workload to its whole namespace (the CRDs say
 * minProperties: 1). Telemetry still reads `selector` (not a security policy).
 */
export const resourceSelector: Parser<Labels | null> = (raw, path) =>
  raw !== null && typeof raw === 'object' && !Array.isArray(raw) && Object.keys(raw).length === 0
    ? fail(path, 'must not be empty: leave it out to select every workload of the namespace, or set matchLabels')
    : selector(raw, path);

/** Common envelope; `status` and other top-level fields the API server adds are allowed. */
const resource = <S>(spec: Parser<S>) => obj({ apiVersion, kind: optional(str()), metadata, spec }, { allowUnknown: true });

export const parsePeerAuthenticationResource: Parser<KPeerAuthentication> = (raw, path) => {
  const o = resource(
    withDefault(
      obj({
        selector: resourceSelector,
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

export const parseAuthorizationPolicyResource: Parser<KAuthorizationPolicy> = (raw, path) => {
  const spec = obj({
    selector: resourceSelector, action: parseAuthzAction, rules: arr(parseAuthzRuleResource, { default: [] }),
    // Istio's targetRef(s) (a Service or Gateway instead of a selector): empty is "not set", anything else refused, as the CRD.
    targetRef: unsupportedField('object', 'use selector'), targetRefs: unsupportedField('list', 'use selector'),
  });
  const o = resource((v, p) => (v === undefined || v === null ? fail(p, 'is required') : spec(v, p)))(raw, path);
  // A DENY without rules, a method, path or destination.port that never matches: read as matching nothing, reported (not refused: see authzNeverMatching).
  const warnings = authzNeverMatching(o.spec, path ? `${path}.spec` : 'spec');
  return Object.freeze({
    namespace: o.metadata.namespace,
    selector: o.spec.selector,
    policy: Object.freeze({ name: `${o.metadata.namespace}/${o.metadata.name}`, action: o.spec.action, rules: o.spec.rules }),
    createdAt: o.metadata.creationTimestamp,
    ...(warnings.length > 0 ? { warnings: Object.freeze(warnings) } : {}),
  });
};

/** A refused object's envelope as a stand-in reads it: its spec as an object, its name printable. */
interface RefusedEnvelope {
  readonly namespace: string;
  readonly name: string;
  readonly spec: Readonly<Record<string, unknown>>;
  readonly createdAt: string;
}

/**
 * What a fail-closed stand-in reads of a refused object, each field on its own: the
 * namespace as the directory source files it (manifest-loader: absent, YAML null or ""
 * is `default`), or null when it is no DNS label (no workload there); a name the logs and
 * the CLI can show (the proxy's parser takes any without whitespace); the spec, or {}.
 */
function refusedEnvelope(raw: unknown): RefusedEnvelope | null {
  const r = (raw && typeof raw === 'object' ? raw : {}) as { metadata?: Record<string, unknown>; spec?: unknown };
  const m = r.metadata && typeof r.metadata === 'object' ? r.metadata : {};
  const namespace = m.namespace === undefined || m.namespace === null || m.namespace === '' ? 'default' : m.namespace;
  if (typeof namespace !== 'string' || !DNS_LABEL.test(namespace)) return null;
  return {
    namespace,
    name: typeof m.name === 'string' && /^[!-~]{1,253}$/.test(m.name) ? m.name : '(unnamed)',
    spec: (r.spec && typeof r.spec === 'object' && !Array.isArray(r.spec) ? r.spec : {}) as Record<string, unknown>,
    createdAt: timestamp(m.creationTimestamp, 'metadata.creationTimestamp'),
  };
}

/** `p(v, path)`, or the error it threw: a stand-in reads each field of a refused spec on its own. */
function attempt<T>(p: Parser<T>, v: unknown, path: string): T | Error {
  try {
    return p(v, path);
  } catch (err) {
    return err as Error;
  }
}

/** A selector's labels as `k=v,...`, printable (they are the object author's text). */
const labelsText = (labels: Labels): string => printable(Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(','));

/** The refusal as `field.path: problem`, at most 500 characters. */
function refusalText(e: unknown): string {
  const text = e instanceof ConfigError ? `${e.path || '<root>'}: ${e.problem}` : String((e as Error)?.message ?? e);
  return text.slice(0, 500);
}

const MATCH_EVERYTHING: AuthzRule = Object.freeze({ from: Object.freeze([]), to: Object.freeze([]), when: Object.freeze([]) });

/**
 * What stands in for an AuthorizationPolicy that was refused when there is no last good
 * version of it to keep (the control plane just started, or the object is new): it fails
 * closed, as Istio does with a rule it cannot translate (an ALLOW rule it cannot build is
 * left out, a DENY rule it cannot build matches every request). Without this, a refused
 * object was simply absent after a control-plane restart, and a workload whose only ALLOW
 * policy it was became open to every caller.
 *
 * - scope: the object's namespace and, when its selector can be read, its selector; when
 *   even the selector cannot be read, the whole namespace (for wren-system: the mesh), since
 *   the workloads it was meant for are among them. A namespace that is no DNS label holds
 *   no workload: then nothing (null).
 * - a refused ALLOW becomes an ALLOW that matches nothing: the selected workloads admit only
 *   what another ALLOW policy admits (none: every request is denied);
 * - a refused DENY becomes a DENY of every request;
 * - a refused AUDIT audits every request (AUDIT never decides);
 * - an action that cannot be read (CUSTOM, a typo) becomes a DENY of every request.
 *
 * The name is the object's (`namespace/name`), so denials name it; `failClosed` says why.
 */
export function failClosedAuthorizationPolicy(raw: unknown, e: unknown): KAuthorizationPolicy | null {
  const env = refusedEnvelope(raw);
  if (env === null) return null;
  const { namespace, spec } = env;
  const sel = attempt(resourceSelector, spec.selector, 'spec.selector');
  const act = attempt(parseAuthzAction, spec.action, 'spec.action');
  const selector = sel instanceof Error ? null : sel;
  const action: AuthzPolicy['action'] = act instanceof Error ? 'DENY' : act;
  const scope =
    `${sel instanceof Error ? 'every workload (the selector cannot be read)' : selector ? `the workloads labelled ${labelsText(selector)}` : 'every workload'}` +
    ` of namespace ${namespace}${namespace === ROOT_NAMESPACE ? ' (the root namespace: every namespace)' : ''}`;
  const enforced =
    action === 'ALLOW'
      ? `an ALLOW that matches nothing, for ${scope}: they admit only what another ALLOW policy admits`
      : action === 'AUDIT'
        ? `an AUDIT of every request, for ${scope}`
        : `a DENY of every request, for ${scope}${act instanceof Error ? ' (the action cannot be read)' : ''}`;
  return Object.freeze({
    namespace,
    selector,
    policy: Object.freeze({ name: `${namespace}/${env.name}`, action, rules: Object.freeze(action === 'ALLOW' ? [] : [MATCH_EVERYTHING]) }),
    createdAt: env.createdAt,
    failClosed: Object.freeze({ refusal: refusalText(e), enforced }),
  });
}

/**
 * What stands in for a PeerAuthentication that was refused when there is no last good
 * version of it to keep (the control plane just started, or the object is new): mode STRICT
 * on every port, whatever the refused object said, in its place. Without this a refused
 * object was simply absent, and the enclosing level applied: a namespace PeerAuthentication
 * STRICT refused after a control-plane restart left its workloads to a mesh-wide PERMISSIVE.
 *
 * - the place: the object's namespace, its selector (read on its own) and its
 *   creationTimestamp, so it is resolved at the object's level (mesh-wide, namespace,
 *   workload) and age as the object itself would be: an older policy of that level still
 *   wins, as it would over a valid version (its mode then did not count either).
 * - a selector that cannot be read (`selector: {}`, `matchExpressions`, a label value that
 *   is no string): it was meant for some workloads of the namespace, so the stand-in is a
 *   workload-level policy for **every** workload of the namespace (selector `{}`): a
 *   workload level overrides the namespace and mesh-wide levels, which a namespace-wide
 *   stand-in would not. In the root namespace, where workload-level policies are ignored,
 *   a mesh-wide one.
 * - nothing (null) when the object could apply to no workload: a namespace that is no DNS
 *   label, or a selector in the root namespace (ignored there, as in Istio).
 * - portLevelMtls: none, so every port takes the stand-in's STRICT (a workload-level
 *   stand-in also drops the PERMISSIVE ports the refused object may have listed).
 *
 * The name is the object's; `failClosed` says why.
 */
export function failClosedPeerAuthentication(raw: unknown, e: unknown): KPeerAuthentication | null {
  const env = refusedEnvelope(raw);
  if (env === null) return null;
  const { namespace } = env;
  const sel = attempt(resourceSelector, env.spec.selector, 'spec.selector');
  const root = namespace === ROOT_NAMESPACE;
  if (root && sel !== null && !(sel instanceof Error)) return null;
  const selector: Labels | null = sel instanceof Error ? (root ? null : Object.freeze({})) : sel;
  const scope = root
    ? `mesh-wide (namespace ${namespace}: every namespace${sel instanceof Error ? '; the selector cannot be read' : ''})`
    : sel instanceof Error
      ? `for every workload (the selector cannot be read) of namespace ${namespace}, as a workload policy`
      : sel
        ? `for the workloads labelled ${labelsText(sel)} of namespace ${namespace}`
        : `for every workload of namespace ${namespace}`;
  return Object.freeze({
    name: env.name,
    namespace,
    selector,
    mode: 'STRICT',
    portLevelMtls: Object.freeze({}),
    createdAt: env.createdAt,
    failClosed: Object.freeze({ refusal: refusalText(e), enforced: `mTLS STRICT on every port, ${scope}: plaintext is refused` }),
  });
}

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
  const spec = obj({ selector: resourceSelector, jwtRules: arr(jwtRuleResource, { default: [] }) });
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
