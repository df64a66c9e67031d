import type { ExternalService } from '../../contract/egress.js';
import { serviceKey, type Service } from '../../contract/model.js';
import type { KEndpointSlice, KPod, KService, KTrafficPolicy } from '../translate/k8s-objects.js';
import type { KAuthorizationPolicy, KPeerAuthentication, KRequestAuthentication, Labels } from '../translate/policy-objects.js';
import type { KTelemetry } from '../translate/telemetry-objects.js';
import type { KRateLimitPolicy } from '../translate/ratelimit-objects.js';
import { translateService } from '../translate/translate.js';
import { opaqueTargetPorts } from '../translate/opaque-ports.js';
import { compileRoutes, type RouteStatus, type RouteView } from '../translate/route-compile.js';
import type { KReferenceGrant, KRoute } from '../translate/route-objects.js';
import type { PolicyView } from '../store/mesh-store.js';

/**
 * The validated cluster objects a source has seen, indexed by the Service they feed,
 * with a dirty set: an object change marks only the services it affects, and flush()
 * re-translates just those (a readiness flip in one EndpointSlice re-translates one
 * Service, not the cluster).
 */
export interface IndexChanges {
  readonly upserts: Service[];
  readonly removes: string[];
  readonly warnings: string[];
  /** Set when a PeerAuthentication, an AuthorizationPolicy, a RequestAuthentication, a RateLimitPolicy, a Telemetry, a meshed pod's labels or its opaque ports changed. */
  readonly policy?: PolicyView;
  /** Set when a route, a ReferenceGrant or (with routes present) a Service changed: the recompiled routes. */
  readonly routes?: RouteView;
  /** With `routes`: every route object and the status the compiler gives those with Service parents. */
  readonly routeStatus?: { readonly routes: readonly KRoute[]; readonly statuses: ReadonlyMap<string, RouteStatus> };
  /** With `routes`: the routes refused because the proxies could not serve them (key -> why). */
  readonly refusedRoutes?: ReadonlyMap<string, string>;
}

const nsName = (ns: string, name: string) => `${ns}/${name}`;
const sameWorkload = (a: KPod, b: KPod): boolean =>
  a.workload.name === b.workload.name && a.workload.app === b.workload.app && a.workload.version === b.workload.version;
const svcKey = (ns: string, name: string) => `${name}.${ns}`;

export class ClusterIndex {
  private readonly services = new Map<string, KService>();
  private readonly meshServices = new Map<string, Service>();
  private readonly slices = new Map<string, Map<string, KEndpointSlice>>();
  private readonly sliceOwner = new Map<string, string>();
  private readonly pods = new Map<string, KPod>();
  /**
   * Pod (namespace/name) -> the EndpointSlices (namespace/name) whose current version lists
   * it. Kept by the slices, not the pods: a pod deleted and created again under its name (a
   * StatefulSet member) is still listed by its slice, and its arrival must re-translate it.
   */
  private readonly podRefs = new Map<string, Set<string>>();
  private readonly policies = new Map<string, Map<string, KTrafficPolicy>>();
  private readonly policyOwner = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private readonly peerAuthentications = new Map<string, KPeerAuthentication>();
  private readonly authorizationPolicies = new Map<string, KAuthorizationPolicy>();
  private readonly requestAuthentications = new Map<string, KRequestAuthentication>();
  private readonly telemetries = new Map<string, KTelemetry>();
  private readonly rateLimitPolicies = new Map<string, KRateLimitPolicy>();
  private readonly externalServices = new Map<string, ExternalService>();
  /** Labels of meshed pods only: they are the ones that run proxies (and unmeshed churn costs nothing). */
  private readonly podLabels = new Map<string, Labels>();
  private readonly podServiceAccounts = new Map<string, string>();
  private readonly podUids = new Map<string, string>();
  /**
   * The podUids handed out in the last policy view, the same map until a UID changes (a pod
   * created, deleted or created again under its name), and the pods whose UID changed since:
   * the discovery server re-checks pod-bound streams only then, and only those pods' (PolicyView.podUidChanges).
   */
  private podUidsView: ReadonlyMap<string, string> | undefined = undefined;
  private readonly podUidsChanged = new Set<string>();
  /** Of meshed pods, the target ports their Services declare opaque (translate/opaque-ports.ts); none: left out. */
  private readonly podOpaquePorts = new Map<string, readonly number[]>();
  /** Pods whose opaque ports may have changed (a slice listing them, their Service, or their meshed state did): recomputed at flush(). */
  private readonly portsDirty = new Set<string>();
  private policyDirty = false;
  private readonly routes = new Map<string, KRoute>();
  private readonly referenceGrants = new Map<string, KReferenceGrant>();
  private routesDirty = false;
  /** The version of each route the proxies accept: kept in force while a newer one is refused. */
  private lastGoodRoutes: ReadonlyMap<string, KRoute> = new Map();

  constructor(private readonly trustDomain: string) {}

  get hasDirty(): boolean {
    return this.dirty.size > 0 || this.policyDirty || this.routesDirty || this.portsDirty.size > 0;
  }

  /** HTTPRoute and GRPCRoute objects (`kind` tells which map key they take). */
  setRoute(kind: 'HTTPRoute' | 'GRPCRoute', ns: string, name: string, r: KRoute | null): void {
    const key = `${kind}/${nsName(ns, name)}`;
    if (r) this.routes.set(key, r);
    else if (!this.routes.delete(key)) return;
    this.routesDirty = true;
  }

  setReferenceGrant(ns: string, name: string, g: KReferenceGrant | null): void {
    if (g) this.referenceGrants.set(nsName(ns, name), g);
    else if (!this.referenceGrants.delete(nsName(ns, name))) return;
    this.routesDirty = true;
  }

  setPeerAuthentication(ns: string, name: string, p: KPeerAuthentication | null): void {
    if (p) this.peerAuthentications.set(nsName(ns, name), p);
    else if (!this.peerAuthentications.delete(nsName(ns, name))) return;
    this.policyDirty = true;
  }

  setAuthorizationPolicy(ns: string, name: string, p: KAuthorizationPolicy | null): void {
    if (p) this.authorizationPolicies.set(nsName(ns, name), p);
    else if (!this.authorizationPolicies.delete(nsName(ns, name))) return;
    this.policyDirty = true;
  }

  setRequestAuthentication(ns: string, name: string, p: KRequestAuthentication | null): void {
    if (p) this.requestAuthentications.set(nsName(ns, name), p);
    else if (!this.requestAuthentications.delete(nsName(ns, name))) return;
    this.policyDirty = true;
  }

  setRateLimitPolicy(ns: string, name: string, p: KRateLimitPolicy | null): void {
    if (p) this.rateLimitPolicies.set(nsName(ns, name), p);
    else if (!this.rateLimitPolicies.delete(nsName(ns, name))) return;
    this.policyDirty = true;
  }

  setTelemetry(ns: string, name: string, t: KTelemetry | null): void {
    if (t) this.telemetries.set(nsName(ns, name), t);
    else if (!this.telemetries.delete(nsName(ns, name))) return;
    this.policyDirty = true;
  }

  setExternalService(ns: string, name: string, e: ExternalService | null): void {
    if (e) this.externalServices.set(nsName(ns, name), e);
    else if (!this.externalServices.delete(nsName(ns, name))) return;
    this.policyDirty = true;
  }

  private setPodLabels(id: string, labels: Labels | null): void {
    const old = this.podLabels.get(id);
    if (labels === null) {
      if (old === undefined) return;
      this.podLabels.delete(id);
    } else {
      if (old !== undefined && JSON.stringify(old) === JSON.stringify(labels)) return;
      this.podLabels.set(id, labels);
    }
    this.policyDirty = true;
  }

  private setPodServiceAccount(id: string, sa: string | null): void {
    if ((this.podServiceAccounts.get(id) ?? null) === sa) return;
    if (sa === null) this.podServiceAccounts.delete(id);
    else this.podServiceAccounts.set(id, sa);
    this.policyDirty = true;
  }

  private setPodUid(id: string, uid: string | null): void {
    if ((this.podUids.get(id) ?? null) === uid) return;
    if (uid === null) this.podUids.delete(id);
    else this.podUids.set(id, uid);
    this.podUidsChanged.add(id);
    this.policyDirty = true;
  }

  setService(ns: string, name: string, s: KService | null): void {
    const key = svcKey(ns, name);
    if (s) this.services.set(key, s);
    else this.services.delete(key);
    this.dirty.add(key);
    // A port's declared protocol may have changed: the opaque ports of the pods it selects.
    for (const slice of this.slices.get(key)?.values() ?? []) for (const ep of slice.endpoints) if (ep.pod) this.portsDirty.add(nsName(slice.namespace, ep.pod));
    // Parents and backendRefs resolve against Services (and their ports).
    if (this.routes.size > 0) this.routesDirty = true;
  }

  setMeshService(ns: string, name: string, s: Service | null): void {
    const key = svcKey(ns, name);
    if (s) this.meshServices.set(key, s);
    else this.meshServices.delete(key);
    this.dirty.add(key);
    if (this.routes.size > 0) this.routesDirty = true;
  }

  setSlice(ns: string, name: string, slice: KEndpointSlice | null): void {
    const id = nsName(ns, name);
    const old = this.sliceOwner.get(id);
    if (old) {
      const prev = this.slices.get(old)?.get(id);
      if (prev) this.podRefsOf(prev, id, false);
      this.slices.get(old)?.delete(id);
      if (this.slices.get(old)?.size === 0) this.slices.delete(old);
      this.sliceOwner.delete(id);
      this.dirty.add(old);
    }
    if (!slice || !slice.service) return;
    const key = svcKey(ns, slice.service);
    let m = this.slices.get(key);
    if (!m) this.slices.set(key, (m = new Map()));
    m.set(id, slice);
    this.sliceOwner.set(id, key);
    this.dirty.add(key);
    this.podRefsOf(slice, id, true);
  }

  /** Adds (or removes) slice `id` to (from) the refs of every pod its endpoints name. */
  private podRefsOf(slice: KEndpointSlice, id: string, add: boolean): void {
    for (const ep of slice.endpoints) {
      if (!ep.pod) continue;
      const pk = nsName(slice.namespace, ep.pod);
      this.portsDirty.add(pk);
      let refs = this.podRefs.get(pk);
      if (add) {
        if (!refs) this.podRefs.set(pk, (refs = new Set()));
        refs.add(id);
      } else if (refs) {
        refs.delete(id);
        if (refs.size === 0) this.podRefs.delete(pk);
      }
    }
  }

  setPod(ns: string, name: string, pod: KPod | null): void {
    const id = nsName(ns, name);
    const old = this.pods.get(id);
    if (pod) this.pods.set(id, pod);
    else this.pods.delete(id);
    this.setPodLabels(id, pod?.meshed ? pod.labels : null);
    this.setPodServiceAccount(id, pod?.meshed ? pod.serviceAccount : null);
    this.setPodUid(id, pod?.meshed && pod.uid ? pod.uid : null);
    if ((old?.meshed ?? false) !== (pod?.meshed ?? false)) this.portsDirty.add(id);
    // Only what the endpoints carry matters (pod status churns constantly): identity, proxy
    // port, workload (owner, app and version labels, which callers' metrics name) and the
    // ports it declares opaque (Endpoint.opaque).
    if (old && pod && old.meshed === pod.meshed && old.serviceAccount === pod.serviceAccount && old.proxyPort === pod.proxyPort && old.uid === pod.uid && sameWorkload(old, pod) && old.opaquePorts.join() === pod.opaquePorts.join()) return;
    for (const sliceId of this.podRefs.get(id) ?? []) {
      const key = this.sliceOwner.get(sliceId);
      if (key) this.dirty.add(key);
    }
  }

  setPolicy(ns: string, name: string, p: KTrafficPolicy | null): void {
    const id = nsName(ns, name);
    const old = this.policyOwner.get(id);
    if (old) {
      this.policies.get(old)?.delete(id);
      this.policyOwner.delete(id);
      this.dirty.add(old);
    }
    if (!p) return;
    const key = svcKey(ns, p.target);
    let m = this.policies.get(key);
    if (!m) this.policies.set(key, (m = new Map()));
    m.set(id, p);
    this.policyOwner.set(id, key);
    this.dirty.add(key);
  }

  private compileRoutes(): Pick<IndexChanges, 'routes' | 'routeStatus' | 'refusedRoutes'> {
    const lookup = (ns: string, name: string) => {
      const key = svcKey(ns, name);
      const m = this.meshServices.get(key);
      if (m) return m;
      const s = this.services.get(key);
      return s && !s.externalName ? s : undefined;
    };
    const routes = [...this.routes.values()];
    const c = compileRoutes(routes, [...this.referenceGrants.values()], lookup, this.lastGoodRoutes);
    this.lastGoodRoutes = c.accepted;
    return { routes: c.view, routeStatus: { routes, statuses: c.statuses }, refusedRoutes: c.refused };
  }

  /** The opaque ports of the pods marked since the last flush, from the slices that list them now. */
  private refreshOpaquePorts(): void {
    for (const id of this.portsDirty) {
      let ports: readonly number[] = [];
      if (this.podLabels.has(id)) {
        const declared: (readonly [KService | undefined, KEndpointSlice])[] = [];
        for (const sliceId of this.podRefs.get(id) ?? []) {
          const key = this.sliceOwner.get(sliceId);
          const slice = key === undefined ? undefined : this.slices.get(key)?.get(sliceId);
          if (slice) declared.push([this.services.get(key!), slice]);
        }
        ports = opaqueTargetPorts(id.slice(id.indexOf('/') + 1), declared);
      }
      const old = this.podOpaquePorts.get(id);
      if ((old?.join() ?? '') === ports.join()) continue;
      if (ports.length === 0) this.podOpaquePorts.delete(id);
      else this.podOpaquePorts.set(id, ports);
      this.policyDirty = true;
    }
    this.portsDirty.clear();
  }

  /** Re-translate the dirty services. */
  flush(): IndexChanges {
    const out: IndexChanges = { upserts: [], removes: [], warnings: [] };
    for (const key of this.dirty) {
      const r = translateService({
        trustDomain: this.trustDomain,
        service: this.services.get(key),
        meshService: this.meshServices.get(key),
        slices: [...(this.slices.get(key)?.values() ?? [])],
        pod: (ns, name) => this.pods.get(nsName(ns, name)),
        policies: [...(this.policies.get(key)?.values() ?? [])],
      });
      out.warnings.push(...r.warnings);
      if (r.service && serviceKey(r.service) === key) out.upserts.push(r.service);
      else out.removes.push(key);
    }
    this.dirty.clear();
    this.refreshOpaquePorts();
    const withRoutes = this.routesDirty ? { ...out, ...this.compileRoutes() } : out;
    this.routesDirty = false;
    if (!this.policyDirty) return withRoutes;
    this.policyDirty = false;
    let podUidChanges: PolicyView['podUidChanges'];
    if (this.podUidsView === undefined || this.podUidsChanged.size > 0) {
      podUidChanges = Object.freeze({ since: this.podUidsView, keys: new Set(this.podUidsChanged) });
      this.podUidsView = new Map(this.podUids);
      this.podUidsChanged.clear();
    }
    return {
      ...withRoutes,
      policy: Object.freeze({
        peerAuthentications: Object.freeze([...this.peerAuthentications.values()]),
        authorizationPolicies: Object.freeze([...this.authorizationPolicies.values()]),
        requestAuthentications: Object.freeze([...this.requestAuthentications.values()]),
        telemetries: Object.freeze([...this.telemetries.values()]),
        rateLimitPolicies: Object.freeze([...this.rateLimitPolicies.values()]),
        externalServices: Object.freeze([...this.externalServices.values()]),
        podLabels: new Map(this.podLabels),
        podServiceAccounts: new Map(this.podServiceAccounts),
        podUids: this.podUidsView,
        ...(podUidChanges ? { podUidChanges } : {}),
        podOpaquePorts: new Map(this.podOpaquePorts),
      }),
    };
  }
}
