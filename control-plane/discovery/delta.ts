import {
  endpointToWire, policyToJson, routesToJson, serviceToWire,
  type WireEndpointDelta, type WireService,
} from '../../contract/discovery.js';
import { endpointKey, type Endpoint, type Service, type Workload } from '../../contract/model.js';

/**
 * The incremental part of a discovery response: what turns the proxy's ACKed view
 * `from` into `to`, looking only at `keys` (the services changed between the two
 * versions). A service whose ports, clusterIPs, policies (its own or a port's) or routes changed is sent whole; one
 * whose only change is endpoints gets per-port endpoint deltas (added / updated /
 * removed), so a readiness flip of one pod costs one EndpointKey on the wire, not the
 * whole service (the point of Envoy's delta xDS).
 */
export interface Delta {
  readonly services: WireService[];
  readonly removedServices: string[];
  readonly endpointDeltas: WireEndpointDelta[];
}

export const isEmptyDelta = (d: Delta): boolean =>
  d.services.length === 0 && d.removedServices.length === 0 && d.endpointDeltas.length === 0;

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return (
    a.address === b.address && a.port === b.port && a.proxyPort === b.proxyPort && a.identity === b.identity &&
    a.weight === b.weight && a.zone === b.zone && a.ready === b.ready && sameWorkload(a.workload, b.workload) &&
    sameAddresses(a.additionalAddresses, b.additionalAddresses) && (a.opaque ?? false) === (b.opaque ?? false)
  );
}

const sameAddresses = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean =>
  a === b || (a?.length ?? 0) === (b?.length ?? 0) && (a ?? []).every((x, i) => x === b![i]);

const sameWorkload = (a: Workload | undefined, b: Workload | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.name === b.name && a.namespace === b.namespace && a.app === b.app && a.version === b.version);

/** Everything but the endpoints is equal (then an endpoint delta is enough). */
export function sameShape(a: Service, b: Service): boolean {
  if (a.name !== b.name || a.namespace !== b.namespace) return false;
  if (a.clusterIPs.length !== b.clusterIPs.length || a.clusterIPs.some((ip, i) => ip !== b.clusterIPs[i])) return false;
  if (a.ports.length !== b.ports.length) return false;
  for (let i = 0; i < a.ports.length; i++) {
    const p = a.ports[i];
    const q = b.ports[i];
    if (p.name !== q.name || p.port !== q.port || p.protocol !== q.protocol) return false;
    if (p.policy !== q.policy && (!p.policy || !q.policy || policyToJson(p.policy) !== policyToJson(q.policy))) return false;
  }
  // Routes (chosen per subscriber: the discovery server sets them) travel with the service, never in an endpoint delta.
  if (a.routes !== b.routes && routesToJson(a.routes) !== routesToJson(b.routes)) return false;
  return a.policy === b.policy || policyToJson(a.policy) === policyToJson(b.policy);
}

export function sameService(a: Service, b: Service): boolean {
  if (a === b) return true;
  if (!sameShape(a, b)) return false;
  for (let i = 0; i < a.ports.length; i++) {
    const x = a.ports[i].endpoints;
    const y = b.ports[i].endpoints;
    if (x.length !== y.length) return false;
    const byKey = new Map(x.map((e) => [endpointKey(e), e]));
    for (const e of y) {
      const o = byKey.get(endpointKey(e));
      if (!o || !sameEndpoint(o, e)) return false;
    }
  }
  return true;
}

function endpointDeltas(key: string, a: Service, b: Service): WireEndpointDelta[] {
  const out: WireEndpointDelta[] = [];
  for (let i = 0; i < b.ports.length; i++) {
    const before = new Map(a.ports[i].endpoints.map((e) => [endpointKey(e), e]));
    const d: WireEndpointDelta = { service: key, port: b.ports[i].port, added: [], updated: [], removed: [] };
    for (const e of b.ports[i].endpoints) {
      const k = endpointKey(e);
      const o = before.get(k);
      if (!o) d.added.push(endpointToWire(e));
      else if (!sameEndpoint(o, e)) d.updated.push(endpointToWire(e));
      before.delete(k);
    }
    for (const e of before.values()) d.removed.push({ address: e.address, port: e.port });
    if (d.added.length || d.updated.length || d.removed.length) out.push(d);
  }
  return out;
}

export function diffViews(from: ReadonlyMap<string, Service>, to: ReadonlyMap<string, Service>, keys: Iterable<string>): Delta {
  const delta: Delta = { services: [], removedServices: [], endpointDeltas: [] };
  for (const key of keys) {
    const a = from.get(key);
    const b = to.get(key);
    if (a === b) continue;
    if (!b) delta.removedServices.push(key);
    else if (!a || !sameShape(a, b)) delta.services.push(serviceToWire(b));
    else delta.endpointDeltas.push(...endpointDeltas(key, a, b));
  }
  return delta;
}
