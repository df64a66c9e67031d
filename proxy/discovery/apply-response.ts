import { egressFromJson, type EgressSettings } from '../../contract/egress.js';
import { endpointFromWire, inboundPolicyFromJson, serviceFromWire, telemetryFromJson, withOpaquePorts, type DiscoveryResponse } from '../../contract/discovery.js';
import { DEFAULT_INBOUND_POLICY } from '../../contract/defaults.js';
import { endpointKey, serviceKey, type Endpoint, type InboundPolicy, type PushedTelemetry, type Service } from '../../contract/model.js';

/** The delta does not apply to what the proxy holds: it needs a full snapshot (NACK with resync). */
export class ResyncError extends Error {
  override readonly name = 'ResyncError';
}

/**
 * Turns the proxy's last good view plus one discovery response into the next view,
 * validating everything that arrives (contract/parse.ts parsers via the contract
 * converters). Pure: on any error it throws and `current` is untouched, so the caller
 * NACKs and keeps its last good config.
 */
export function applyResponse(
  current: ReadonlyMap<string, Service> | null,
  currentVersion: string | null,
  r: DiscoveryResponse,
): Map<string, Service> {
  if (typeof r?.version !== 'string' || r.version === '') throw new Error('version: missing');
  if (r.full) {
    const next = new Map<string, Service>();
    (r.services ?? []).forEach((w, i) => {
      const s = serviceFromWire(w, `services[${i}]`);
      const key = serviceKey(s);
      if (next.has(key)) throw new Error(`services[${i}]: duplicate service ${key}`);
      next.set(key, s);
    });
    return next;
  }
  if (!current || r.baseVersion !== currentVersion)
    throw new ResyncError(`delta applies to version ${JSON.stringify(r.baseVersion)} but the proxy holds ${JSON.stringify(currentVersion)}`);
  const next = new Map(current);
  for (const key of r.removedServices ?? []) next.delete(key);
  (r.services ?? []).forEach((w, i) => {
    const s = serviceFromWire(w, `services[${i}]`);
    next.set(serviceKey(s), s);
  });
  (r.endpointDeltas ?? []).forEach((d, i) => {
    const path = `endpointDeltas[${i}]`;
    const svc = next.get(d.service);
    if (!svc) throw new ResyncError(`${path}.service: unknown service ${JSON.stringify(d.service)}`);
    const pi = svc.ports.findIndex((p) => p.port === d.port);
    if (pi < 0) throw new ResyncError(`${path}.port: service ${d.service} has no port ${d.port}`);
    const eps = new Map<string, Endpoint>(svc.ports[pi].endpoints.map((e) => [endpointKey(e), e]));
    (d.removed ?? []).forEach((k) => eps.delete(endpointKey(k)));
    (d.added ?? []).forEach((w, j) => {
      const e = endpointFromWire(w, `${path}.added[${j}]`);
      eps.set(endpointKey(e), e);
    });
    (d.updated ?? []).forEach((w, j) => {
      const e = endpointFromWire(w, `${path}.updated[${j}]`);
      if (!eps.has(endpointKey(e))) throw new ResyncError(`${path}.updated[${j}]: unknown endpoint ${endpointKey(e)}`);
      eps.set(endpointKey(e), e);
    });
    const ports = svc.ports.map((p, k) => (k === pi ? Object.freeze({ ...p, endpoints: Object.freeze([...eps.values()]) }) : p));
    next.set(d.service, Object.freeze({ ...svc, ports: Object.freeze(ports) }));
  });
  return next;
}

/**
 * The proxy's inbound policy after a response: a full response carries it (absent means
 * the defaults), a delta only when it changed (absent means unchanged), with the opaque
 * ports pushed beside it (none from an older control plane). Validated by
 * parseInboundPolicy; throws (so the response is NACKed) when invalid.
 */
export function applyInboundPolicy(current: InboundPolicy | null, r: DiscoveryResponse): InboundPolicy {
  if (r.inboundPolicy) return withOpaquePorts(inboundPolicyFromJson(r.inboundPolicy.policyJson ?? '', 'inboundPolicy'), r.inboundPolicy.opaquePorts, 'inboundPolicy.opaquePorts');
  if (r.full || !current) return DEFAULT_INBOUND_POLICY;
  return current;
}

/**
 * The telemetry settings the control plane pushed for this workload after a response:
 * present (even '' = none set) replaces them, absent keeps `current` (a delta that did
 * not change them, or a control plane that does not send them: undefined until one does).
 * Validated by parsePushedTelemetry; throws (so the response is NACKed) when invalid.
 */
export function applyTelemetry(current: PushedTelemetry | undefined, r: DiscoveryResponse): PushedTelemetry | undefined {
  return r.telemetry ? telemetryFromJson(r.telemetry.overridesJson ?? '', 'telemetry') : current;
}

/**
 * The egress settings (mode, ExternalServices) pushed for this workload after a response,
 * as applyTelemetry: present replaces, absent keeps. Invalid: throws, so the response is
 * NACKed and the last good settings stay.
 */
export function applyEgress(current: EgressSettings | undefined, r: DiscoveryResponse): EgressSettings | undefined {
  return r.egress ? egressFromJson(r.egress.egressJson ?? '', 'egress') : current;
}
