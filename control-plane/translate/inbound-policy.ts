import type { ExternalService } from '../../contract/egress.js';
import { DEFAULT_INBOUND_POLICY, ROOT_NAMESPACE } from '../../contract/defaults.js';
import type { AuthzPolicy, InboundPolicy, JwtRule, MtlsMode, RateLimitPolicy } from '../../contract/model.js';
import type { KRateLimitPolicy } from './ratelimit-objects.js';
import type { KTelemetry } from './telemetry-objects.js';
import type { KAuthorizationPolicy, KPeerAuthentication, KRequestAuthentication, Labels, PeerMode } from './policy-objects.js';

/**
 * The inbound policy of one workload, from every PeerAuthentication and
 * AuthorizationPolicy in the cluster. Pure; Istio's rules:
 *
 * PeerAuthentication (pilot/pkg/model/authentication.go getConfigsForWorkload and
 * ComposePeerAuthentication): the candidates are the policies of the workload's
 * namespace and of the root namespace whose selector (matchLabels) is a subset of the
 * workload's labels. Mesh-wide = root namespace, no selector; namespace-wide = the
 * workload's namespace, no selector; workload = a selector, not in the root namespace.
 * At each level the oldest policy wins (creationTimestamp, then name). The mode is
 * resolved mesh -> namespace -> workload, each level overriding the one before unless
 * UNSET; with no policy at all it is STRICT (Istio's default is PERMISSIVE). Port-level
 * modes come from the workload policy only; an UNSET port inherits the workload's mode.
 *
 * AuthorizationPolicy: every policy of the workload's namespace or the root namespace
 * whose selector is absent or matches the workload's labels (a root-namespace policy
 * applies to every namespace). Order: by namespace/name, so equal inputs give equal output.
 *
 * RequestAuthentication: selected the same way; the jwtRules of all of them are
 * concatenated (Istio merges them per workload), ordered by namespace/name.
 *
 * RateLimitPolicy: the workload's namespace only (no mesh-wide limits: a rate is a
 * per-workload capacity), selector absent or matching; each one is enforced, by namespace/name.
 */
export interface Workload {
  readonly namespace: string;
  readonly labels: Labels;
}

export interface PolicyObjects {
  readonly peerAuthentications: readonly KPeerAuthentication[];
  readonly authorizationPolicies: readonly KAuthorizationPolicy[];
  /** Absent in sources that predate RequestAuthentication: none. */
  readonly requestAuthentications?: readonly KRequestAuthentication[];
  /** RateLimitPolicies (ratelimit-objects.ts); absent: none. */
  readonly rateLimitPolicies?: readonly KRateLimitPolicy[];
  /** Telemetry resources (telemetry-objects.ts); not inbound policy, but resolved per workload the same way. Absent: none. */
  readonly telemetries?: readonly KTelemetry[];
  /** ExternalServices (external-service-objects.ts): not inbound policy; every proxy gets all of them (egress control). Absent: none. */
  readonly externalServices?: readonly ExternalService[];
}

export const selects = (selector: Labels | null, labels: Labels): boolean =>
  selector === null || Object.entries(selector).every(([k, v]) => labels[k] === v);

const older = (a: KPeerAuthentication, b: KPeerAuthentication): boolean =>
  a.createdAt !== b.createdAt ? a.createdAt < b.createdAt : a.name < b.name;

function oldest(list: KPeerAuthentication[]): KPeerAuthentication | null {
  let best: KPeerAuthentication | null = null;
  for (const p of list) if (!best || older(p, best)) best = p;
  return best;
}

const inherit = (mode: PeerMode, parent: MtlsMode): MtlsMode => (mode === 'UNSET' ? parent : mode);

export function resolveInboundPolicy(objs: PolicyObjects, w: Workload, rootNamespace: string = ROOT_NAMESPACE): InboundPolicy {
  const inScope = (ns: string) => ns === w.namespace || ns === rootNamespace;
  const pas = objs.peerAuthentications.filter((p) => inScope(p.namespace) && selects(p.selector, w.labels));
  const mesh = oldest(pas.filter((p) => p.selector === null && p.namespace === rootNamespace));
  const ns = w.namespace === rootNamespace ? null : oldest(pas.filter((p) => p.selector === null && p.namespace === w.namespace));
  const workload = oldest(pas.filter((p) => p.selector !== null && p.namespace !== rootNamespace));
  let mode: MtlsMode = DEFAULT_INBOUND_POLICY.mtls.mode;
  for (const level of [mesh, ns, workload]) if (level) mode = inherit(level.mode, mode);
  const ports: Record<string, { mode: MtlsMode }> = {};
  for (const [port, m] of Object.entries(workload?.portLevelMtls ?? {}).sort((a, b) => Number(a[0]) - Number(b[0])))
    ports[port] = Object.freeze({ mode: inherit(m, mode) });
  const authz: AuthzPolicy[] = objs.authorizationPolicies
    .filter((p) => inScope(p.namespace) && selects(p.selector, w.labels))
    .map((p) => p.policy)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const jwtRules: JwtRule[] = (objs.requestAuthentications ?? [])
    .filter((p) => inScope(p.namespace) && selects(p.selector, w.labels))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((p) => p.jwtRules);
  const rateLimits: RateLimitPolicy[] = (objs.rateLimitPolicies ?? [])
    .filter((p) => p.namespace === w.namespace && selects(p.selector, w.labels))
    .map((p) => p.policy)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (mode === DEFAULT_INBOUND_POLICY.mtls.mode && Object.keys(ports).length === 0 && authz.length === 0 && jwtRules.length === 0 && rateLimits.length === 0) return DEFAULT_INBOUND_POLICY;
  return Object.freeze({
    mtls: Object.freeze({ mode }), portLevelMtls: Object.freeze(ports), authorizationPolicies: Object.freeze(authz), jwtRules: Object.freeze(jwtRules),
    ...(rateLimits.length > 0 ? { rateLimits: Object.freeze(rateLimits) } : {}),
  });
}
