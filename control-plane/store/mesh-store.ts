import type { Clock, Random } from '../../common/clock.js';
import { serviceKey, type Service } from '../../contract/model.js';
import { sameService } from '../discovery/delta.js';
import type { PolicyObjects } from '../translate/inbound-policy.js';
import { EMPTY_ROUTE_VIEW, type RouteView, type ServiceRoutes } from '../translate/route-compile.js';
import type { Labels } from '../translate/policy-objects.js';

/**
 * The control plane's current view of the mesh: services by key ("name.namespace"),
 * versioned. Every commit that changes something makes a new immutable Map (copy on
 * write), bumps the sequence number and logs which keys changed, so each subscriber
 * can keep the exact view it ACKed and get a delta from it by looking only at the keys
 * changed since.
 *
 * Versions are `<epoch>-<seq>`: the epoch is random per process, so two replicas (or a
 * restarted one) never hand out the same version for different content.
 */
/**
 * What per-workload inbound policies are resolved from: every PeerAuthentication and
 * AuthorizationPolicy, and the labels of the meshed pods the source knows
 * ("namespace/name" -> labels). Immutable; a source hands in a new one when it changed.
 */
export interface PolicyView extends PolicyObjects {
  readonly podLabels: ReadonlyMap<string, Labels>;
  /**
   * The service account of the same meshed pods ("namespace/name" -> name): the discovery
   * server checks that a proxy subscribing for a pod holds that pod's identity
   * (control-plane/discovery/client-auth.ts).
   */
  readonly podServiceAccounts: ReadonlyMap<string, string>;
  /**
   * Of the same pods, their metadata.uid ("namespace/name" -> uid; a pod without one, as in a
   * hand-written manifest, is left out): which instance of the name a certificate bound to a
   * pod was signed for (its Certify key digests namespace, name and UID; client-auth.ts
   * checkPodClaim). Absent (a source that does not read them): none.
   */
  readonly podUids?: ReadonlyMap<string, string>;
  /**
   * What changed in `podUids` since the map `since` (the previous policy view's, when the
   * source knows it: cluster-index.ts keeps one map until a UID changes): the keys whose UID
   * was added, replaced or removed. The discovery server re-checks only the pod-bound streams
   * of those pods (discovery-server.ts recheckPodBound); absent, or from another map than the
   * one it saw last, it looks at every pod-bound stream.
   */
  readonly podUidChanges?: { readonly since: ReadonlyMap<string, string> | undefined; readonly keys: ReadonlySet<string> };
  /**
   * Of the same pods, the target ports their Services declare opaque (translate/opaque-ports.ts),
   * pushed with each one's inbound policy; a pod with none is left out. Absent (a source that
   * does not compute them): none.
   */
  readonly podOpaquePorts?: ReadonlyMap<string, readonly number[]>;
}

export const EMPTY_POLICY_VIEW: PolicyView = Object.freeze({ peerAuthentications: [], authorizationPolicies: [], requestAuthentications: [], podLabels: new Map(), podServiceAccounts: new Map() });

const NO_PORTS: ReadonlyMap<string, readonly number[]> = new Map();
const NO_UIDS: ReadonlyMap<string, string> = new Map();
const sameList = <T>(a: readonly T[], b: readonly T[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** Cheap equality: sources keep unchanged objects by reference, so a re-read that changed nothing is equal. */
export function samePolicyView(a: PolicyView, b: PolicyView): boolean {
  if (a === b) return true;
  if (!sameList(a.peerAuthentications, b.peerAuthentications) || !sameList(a.authorizationPolicies, b.authorizationPolicies)) return false;
  if (!sameList(a.requestAuthentications ?? [], b.requestAuthentications ?? [])) return false;
  if (!sameList(a.telemetries ?? [], b.telemetries ?? [])) return false;
  if (!sameList(a.rateLimitPolicies ?? [], b.rateLimitPolicies ?? [])) return false;
  if (!sameList(a.externalServices ?? [], b.externalServices ?? [])) return false;
  if (a.podLabels.size !== b.podLabels.size || a.podServiceAccounts.size !== b.podServiceAccounts.size) return false;
  for (const [k, v] of a.podServiceAccounts) if (b.podServiceAccounts.get(k) !== v) return false;
  const au = a.podUids ?? NO_UIDS;
  const bu = b.podUids ?? NO_UIDS;
  if (au.size !== bu.size) return false;
  for (const [k, v] of au) if (bu.get(k) !== v) return false;
  const ap = a.podOpaquePorts ?? NO_PORTS;
  const bp = b.podOpaquePorts ?? NO_PORTS;
  if (ap.size !== bp.size) return false;
  for (const [k, v] of ap) {
    const w = bp.get(k);
    if (w === undefined || (w !== v && w.join() !== v.join())) return false;
  }
  for (const [k, v] of a.podLabels) {
    const w = b.podLabels.get(k);
    if (w === undefined || (w !== v && JSON.stringify(w) !== JSON.stringify(v))) return false;
  }
  return true;
}

const sameSet = (a: ReadonlySet<string>, b: ReadonlySet<string>): boolean => a.size === b.size && [...a].every((x) => b.has(x));
const routesJson = (r: ServiceRoutes | undefined): string =>
  r ? JSON.stringify([r.producer, [...r.consumers].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))]) : '';

/** Service keys whose routes (producer or any namespace's consumer routes) differ between two route views. */
function changedRouteKeys(a: RouteView, b: RouteView): string[] {
  const out: string[] = [];
  for (const key of new Set([...a.byService.keys(), ...b.byService.keys()])) {
    const x = a.byService.get(key);
    const y = b.byService.get(key);
    if (x !== y && routesJson(x) !== routesJson(y)) out.push(key);
  }
  return out;
}

export interface StoreView {
  readonly seq: number;
  readonly version: string;
  readonly services: ReadonlyMap<string, Service>;
  readonly policy: PolicyView;
  /** The compiled HTTPRoutes/GRPCRoutes by Service; the discovery server picks each subscriber's (routesFor). */
  readonly routes: RouteView;
  /** Clock time of the commit that made this version. */
  readonly committedAt: number;
}

export class MeshStore {
  readonly epoch: string;
  private current: StoreView;
  private readonly log: { seq: number; keys: readonly string[] }[] = [];
  private readonly listeners = new Set<(view: StoreView, changed: readonly string[]) => void>();
  private synced = false;
  private readonly readyWaiters: (() => void)[] = [];

  constructor(
    private readonly clock: Clock,
    random: Random,
    private readonly historyLimit = 1024,
  ) {
    this.epoch = Math.floor(random() * 0xffffffff).toString(36).padStart(7, '0');
    this.current = Object.freeze({ seq: 0, version: `${this.epoch}-0`, services: new Map(), policy: EMPTY_POLICY_VIEW, routes: EMPTY_ROUTE_VIEW, committedAt: clock.now() });
  }

  get view(): StoreView {
    return this.current;
  }

  /** True once the source finished its initial sync: before that nothing is pushed (an empty view is not the truth). */
  get ready(): boolean {
    return this.synced;
  }

  markReady(): void {
    if (this.synced) return;
    this.synced = true;
    for (const w of this.readyWaiters.splice(0)) w();
    for (const l of this.listeners) l(this.current, []);
  }

  whenReady(): Promise<void> {
    return this.synced ? Promise.resolve() : new Promise((r) => this.readyWaiters.push(r));
  }

  onChange(fn: (view: StoreView, changed: readonly string[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Upserts and removals (and optionally a new policy view and route view) in one commit;
   * unchanged upserts are dropped. Returns the changed service keys (a policy-only commit
   * makes a new version with no changed keys; a Service whose routes changed counts as changed,
   * so subscribers get it again with its new routes).
   */
  apply(upserts: readonly Service[], removes: readonly string[], policy?: PolicyView, routes?: RouteView): readonly string[] {
    const prev = this.current.services;
    const changed: string[] = [];
    let next: Map<string, Service> | undefined;
    const write = (): Map<string, Service> => (next ??= new Map(prev));
    for (const s of upserts) {
      const key = serviceKey(s);
      const old = prev.get(key);
      if (old && sameService(old, s)) continue;
      write().set(key, s);
      changed.push(key);
    }
    for (const key of removes) {
      if (!prev.has(key) || (next && !next.has(key))) continue;
      write().delete(key);
      changed.push(key);
    }
    const policyChanged = policy !== undefined && !samePolicyView(policy, this.current.policy);
    const routeKeys = routes === undefined || routes === this.current.routes ? [] : changedRouteKeys(this.current.routes, routes);
    const routesChanged = routes !== undefined && routes !== this.current.routes && (routeKeys.length > 0 || !sameSet(routes.consumerNamespaces, this.current.routes.consumerNamespaces));
    for (const k of routeKeys) if (!changed.includes(k)) changed.push(k);
    if (!next && !policyChanged && !routesChanged) return changed;
    const seq = this.current.seq + 1;
    this.current = Object.freeze({
      seq, version: `${this.epoch}-${seq}`, services: next ?? prev, policy: policyChanged && policy ? policy : this.current.policy,
      routes: routesChanged && routes ? routes : this.current.routes, committedAt: this.clock.now(),
    });
    this.log.push({ seq, keys: changed });
    if (this.log.length > this.historyLimit) this.log.splice(0, this.log.length - this.historyLimit);
    if (this.synced) for (const l of this.listeners) l(this.current, changed);
    return changed;
  }

  /** Replace everything (file source): removes what is not in `services`. */
  replaceAll(services: readonly Service[], policy?: PolicyView, routes?: RouteView): readonly string[] {
    const keep = new Set(services.map(serviceKey));
    return this.apply(services, [...this.current.services.keys()].filter((k) => !keep.has(k)), policy, routes);
  }

  /** Keys changed after `seq` up to now; null when the history no longer reaches back that far. */
  changedSince(seq: number): Set<string> | null {
    if (seq >= this.current.seq) return new Set();
    const first = this.log[0];
    if (!first || first.seq > seq + 1) return null;
    const keys = new Set<string>();
    for (let i = this.log.length - 1; i >= 0 && this.log[i].seq > seq; i--) for (const k of this.log[i].keys) keys.add(k);
    return keys;
  }
}
