import { DEFAULT_POLICY } from '../../contract/defaults.js';
import { endpointKey, serviceKey, type Endpoint, type Service, type ServicePort, type TrafficPolicy, type Workload } from '../../contract/model.js';
import { serviceFromWire, serviceToWire } from '../../contract/discovery.js';
import type { KEndpointSlice, KPod, KService, KTrafficPolicy } from './k8s-objects.js';

/**
 * Cluster state -> mesh model, as pure functions (no I/O, no clock): the Kubernetes
 * source and the directory source both feed validated objects through here.
 *
 * Rules (cf. Linkerd's destination watcher, which drops endpoints whose
 * conditions.ready is false before streaming [L9 in mesh-anchors]; Istio does not send
 * unhealthy endpoints either [I14]):
 * - an endpoint routes only when conditions.ready is true (nil = true); every other endpoint
 *   is left out, so it disappears from proxies. `terminating` alone does not remove it: the
 *   EndpointSlice controller keeps ready false for a terminating pod, except for a Service
 *   with publishNotReadyAddresses, whose owner asked for every pod, terminating ones too
 *   (the API's EndpointConditions.ready: "should never be true for terminating endpoints,
 *   except when ... overridden, for example ... publishNotReadyAddresses"); kube-proxy,
 *   Istio (endpointHealthStatus: ready -> healthy) and Linkerd read ready alone as well;
 * - a Service port takes its endpoints from the EndpointSlice port of the same name
 *   (the slice port number is the pod's target port);
 * - a pod endpoint whose Pod is not known yet is held back (not sent as plaintext):
 *   it appears as soon as the Pod arrives; so is one whose targetRef.uid names another
 *   incarnation of the pod than the one known (the slice has not caught up yet);
 * - a pod endpoint carries the pod's workload (owner, app and version labels, as Istio
 *   names workloads: pod-workload.ts), so the caller's metrics name the destination workload;
 * - a meshed pod (one that has the wren-proxy sidecar: k8s-objects.ts parsePod; the opt-in
 *   label alone is a request the injector may not have honoured) gives identity `spiffe://<td>/ns/<ns>/sa/<serviceAccount>`
 *   and proxyPort (the sidecar's `wren-inbound` port, else annotation `wren.io/proxy-port`, else 15006); an unmeshed pod gives '' and null;
 * - an endpoint whose port the pod declares opaque itself (wren.io/opaque-ports; k8s-objects.ts
 *   podOpaquePorts) carries `opaque`, so callers treat it as opaque TCP without detection;
 * - TrafficPolicy: a policy without `ports` is the Service's (every port); one with `ports`
 *   applies to the ports it names only, and there it wins over the Service's policy (the more
 *   specific target wins, as a Gateway API policy with a sectionName overrides one for the
 *   whole resource, GEP-713). Among policies for the same scope the oldest
 *   (creationTimestamp, then name) wins, as Gateway API resolves conflicts; the others, and
 *   policies naming no port of the Service, are reported;
 * - a MeshService with the same key as a Service wins over it (it is explicit); its
 *   inline spec.policy wins over a TrafficPolicy;
 * - the result goes through the proxies' own check of a service from the wire
 *   (contract/discovery.ts serviceFromWire): a proxy refuses a whole update when one
 *   service in it is invalid, so a service it would refuse is left out here, with a
 *   warning naming the field, and every other service keeps flowing. The objects' parsers
 *   (k8s-objects.ts) refuse what they can see alone; this catches what only the
 *   translation puts together.
 */
export interface TranslateInput {
  readonly trustDomain: string;
  readonly service?: KService;
  readonly meshService?: Service;
  readonly slices: readonly KEndpointSlice[];
  readonly pod: (namespace: string, name: string) => KPod | undefined;
  readonly policies: readonly KTrafficPolicy[];
}

export interface TranslateResult {
  readonly service: Service | null;
  readonly warnings: readonly string[];
}

export const spiffeId = (trustDomain: string, ns: string, sa: string): string => `spiffe://${trustDomain}/ns/${ns}/sa/${sa}`;

const oldestFirst = (a: KTrafficPolicy, b: KTrafficPolicy): number =>
  a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

function oldest(what: string, fits: KTrafficPolicy[], warnings: string[]): TrafficPolicy | null {
  fits.sort(oldestFirst);
  if (fits.length > 1) warnings.push(`${what}: ${fits.length} TrafficPolicies target it; ${fits[0].name} (oldest) wins over ${fits.slice(1).map((p) => p.name).join(', ')}`);
  return fits[0]?.policy ?? null;
}

/** The Service's policy (from policies without `ports`) and each port's own (from policies naming it). */
function pickPolicies(
  key: string, ports: readonly number[], policies: readonly KTrafficPolicy[], warnings: string[],
): { service: TrafficPolicy | null; byPort: Map<number, TrafficPolicy> } {
  const service = oldest(key, policies.filter((p) => p.ports.length === 0), warnings);
  const byPort = new Map<number, TrafficPolicy>();
  for (const n of ports) {
    const own = oldest(`${key}:${n}`, policies.filter((p) => p.ports.includes(n)), warnings);
    if (own) byPort.set(n, own);
  }
  for (const p of policies)
    if (p.ports.length > 0 && !p.ports.some((n) => ports.includes(n)))
      warnings.push(`${key}: TrafficPolicy ${p.name} names ports ${p.ports.join(', ')}, none of which the service has; it applies nowhere`);
  return { service, byPort };
}

function withPortPolicies<P extends ServicePort>(ports: readonly P[], byPort: Map<number, TrafficPolicy>): readonly P[] {
  if (byPort.size === 0) return ports;
  return Object.freeze(ports.map((p) => (byPort.has(p.port) ? Object.freeze({ ...p, policy: byPort.get(p.port)! }) : p)));
}

/**
 * One endpoint per pod and service port, as kube-proxy balances each pod once per family:
 * - A dual-stack Service has an EndpointSlice per IP family, so a dual-stack pod is in two
 *   slices (KEP-563: "2 single-family endpoints per backend pod"). Taken as two endpoints it
 *   had twice a single-stack pod's share of the traffic, and counted twice in outlier
 *   ejection and the mesh-wide health math (adv21). Such a pod is one endpoint, dialled at its
 *   address of the Service's primary family (its first cluster IP's, IPv4 when it names none),
 *   its other address carried along (Endpoint.additionalAddresses) so a connection the app
 *   makes to that pod IP is still recognised as the pod's; a pod ready in the other family's
 *   slice only is that one. As Istio since 1.23 (one IstioEndpoint with both addresses,
 *   istio #51279; before, two endpoints as here); Linkerd keeps one family per dual-stack
 *   Service (IPv4 unless IPv6 is enabled, then IPv6: linkerd2 #12428).
 * - An endpoint's addresses are "fungible and clients may choose to only use the first"
 *   (EndpointSlice API, kubernetes#106267); kube-proxy uses addresses[0]. Each address was an
 *   endpoint of its own; the first is dialled now, the rest carried along as above.
 * Endpoints that name no pod are not matched across families: nothing says two are one.
 */
function portEndpoints(portName: string, input: TranslateInput): Endpoint[] {
  const out = new Map<string, Endpoint>();
  const primary = input.service?.primaryFamily ?? 'IPv4';
  // The primary family's slices first: a pod met there is not taken again from the other family's.
  const rank = (s: KEndpointSlice): number => (s.addressType === primary ? 0 : 1);
  const slices = [...input.slices].sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  /** Pods that have an endpoint of the primary family for this port: its key in `out`. */
  const inPrimary = new Map<string, string>();
  /** An endpoint's other addresses: the rest of its own, and its pod's of the other family. */
  const others = new Map<string, string[]>();
  const addOthers = (key: string, addresses: readonly string[]): void => {
    let l = others.get(key);
    for (const a of addresses) if (a !== out.get(key)?.address && !l?.includes(a)) (l ??= []).push(a);
    if (l) others.set(key, l);
  };
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const sp = slice.ports.find((p) => p.name === portName);
    if (!sp) continue;
    const isPrimary = slice.addressType === primary;
    for (const ep of slice.endpoints) {
      if (!ep.ready) continue;
      const primaryOfPod = ep.pod && !isPrimary ? inPrimary.get(ep.pod) : undefined;
      if (primaryOfPod !== undefined) {
        addOthers(primaryOfPod, ep.addresses);
        continue;
      }
      let identity = '';
      let proxyPort: number | null = null;
      let workload: Workload | undefined;
      let opaque = false;
      if (ep.pod) {
        const pod = input.pod(slice.namespace, ep.pod);
        // Held back too while the slice still names an earlier incarnation of the pod (its
        // targetRef.uid is not the known pod's): a pod deleted and created again under its
        // name before the slice caught up; that address is the old pod's, maybe already
        // another pod's, and must not be sent with the new pod's identity.
        if (!pod || (ep.podUid !== '' && pod.uid !== '' && ep.podUid !== pod.uid)) continue;
        workload = pod.workload;
        // The pod declares this target port opaque itself (wren.io/opaque-ports): callers skip detection to it.
        opaque = pod.opaquePorts.includes(sp.port);
        if (pod.meshed) {
          identity = spiffeId(input.trustDomain, pod.namespace, pod.serviceAccount);
          proxyPort = pod.proxyPort;
        }
      }
      const address = ep.addresses[0];
      const base = workload
        ? { address, port: sp.port, proxyPort, identity, weight: 1, zone: ep.zone, ready: true, workload }
        : { address, port: sp.port, proxyPort, identity, weight: 1, zone: ep.zone, ready: true };
      const e: Endpoint = Object.freeze(opaque ? { ...base, opaque } : base);
      const key = endpointKey(e);
      out.set(key, e);
      if (ep.addresses.length > 1) addOthers(key, ep.addresses.slice(1));
      if (ep.pod && isPrimary && !inPrimary.has(ep.pod)) inPrimary.set(ep.pod, key);
    }
  }
  for (const [key, l] of others) {
    const e = out.get(key)!;
    out.set(key, Object.freeze({ ...e, additionalAddresses: Object.freeze(l.sort()) }));
  }
  return [...out.values()].sort((a, b) => (endpointKey(a) < endpointKey(b) ? -1 : 1));
}

export function translateService(input: TranslateInput): TranslateResult {
  const r = translate(input);
  if (!r.service) return r;
  const key = serviceKey(r.service);
  try {
    serviceFromWire(serviceToWire(r.service), key);
  } catch (e) {
    return { service: null, warnings: [...r.warnings, `${key}: left out, the proxies would refuse it: ${(e as Error).message}`] };
  }
  return r;
}

function translate(input: TranslateInput): TranslateResult {
  const warnings: string[] = [];
  const { service: svc, meshService } = input;
  if (meshService) {
    const key = serviceKey(meshService);
    if (svc) warnings.push(`${key}: a MeshService and a Service share this name; the MeshService wins`);
    if (meshService.policy !== DEFAULT_POLICY || input.policies.length === 0) return { service: meshService, warnings };
    const picked = pickPolicies(key, meshService.ports.map((p) => p.port), input.policies, warnings);
    if (!picked.service && picked.byPort.size === 0) return { service: meshService, warnings };
    return {
      service: Object.freeze({ ...meshService, policy: picked.service ?? meshService.policy, ports: withPortPolicies(meshService.ports, picked.byPort) }),
      warnings,
    };
  }
  if (!svc) return { service: null, warnings };
  const key = serviceKey(svc);
  if (svc.externalName) return { service: null, warnings };
  if (svc.ports.length === 0) {
    warnings.push(`${key}: Service has no ports; skipped`);
    return { service: null, warnings };
  }
  const picked = pickPolicies(key, svc.ports.map((p) => p.port), input.policies, warnings);
  const ports: ServicePort[] = svc.ports.map((p) => {
    const own = picked.byPort.get(p.port);
    const endpoints = Object.freeze(portEndpoints(p.name, input));
    return Object.freeze(own ? { name: p.name, port: p.port, protocol: p.protocol, endpoints, policy: own } : { name: p.name, port: p.port, protocol: p.protocol, endpoints });
  });
  const policy = picked.service ?? DEFAULT_POLICY;
  return {
    service: Object.freeze({ name: svc.name, namespace: svc.namespace, clusterIPs: svc.clusterIPs, ports: Object.freeze(ports), policy }),
    warnings,
  };
}

export interface ClusterObjects {
  readonly services?: readonly KService[];
  readonly meshServices?: readonly Service[];
  readonly slices?: readonly KEndpointSlice[];
  readonly pods?: readonly KPod[];
  readonly policies?: readonly KTrafficPolicy[];
}

/** The whole cluster at once (fixtures, the directory source). Services sorted by key. */
export function translateCluster(objs: ClusterObjects, trustDomain: string): { services: Service[]; warnings: string[] } {
  const k = (ns: string, name: string) => `${name}.${ns}`;
  const pods = new Map((objs.pods ?? []).map((p) => [`${p.namespace}/${p.name}`, p]));
  const keys = new Set<string>([...(objs.services ?? []).map(serviceKey), ...(objs.meshServices ?? []).map(serviceKey)]);
  const warnings: string[] = [];
  const services: Service[] = [];
  for (const key of [...keys].sort()) {
    const r = translateService({
      trustDomain,
      service: objs.services?.find((s) => serviceKey(s) === key),
      meshService: objs.meshServices?.find((s) => serviceKey(s) === key),
      slices: (objs.slices ?? []).filter((s) => s.service && k(s.namespace, s.service) === key),
      pod: (ns, name) => pods.get(`${ns}/${name}`),
      policies: (objs.policies ?? []).filter((p) => k(p.namespace, p.target) === key),
    });
    warnings.push(...r.warnings);
    if (r.service) services.push(r.service);
  }
  return { services, warnings };
}
