import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DEFAULT_INBOUND_POLICY, DEFAULT_POLICY } from './defaults.js';
import type { Endpoint, InboundPolicy, MeshSnapshot, PushedTelemetry, Service, TrafficPolicy } from './model.js';
import type { ServiceRoute } from './routes.js';
import { parseEndpoint, parseInboundPolicy, parsePushedTelemetry, parseService, parseTrafficPolicy } from './parse.js';

/**
 * The discovery contract (contract/discovery.proto, package wren.discovery.v1) as
 * hand-written TypeScript types plus converters to and from the mesh model.
 *
 * The proto is loaded at run time with @grpc/proto-loader, `keepCase: false` (so
 * `cluster_ips` is `clusterIps` here), `longs: Number`, `defaults: true`, `oneofs: true`.
 *
 * Policies travel as JSON in the user-facing spelling (`policy_json`), sparse (only the
 * fields that differ from DEFAULT_POLICY), and are validated on arrival by the same
 * parseTrafficPolicy that reads files and CRDs. Why JSON and not a mirrored message:
 * the policy has ~50 fields and one definition (contract/parse.ts); a second schema in
 * proto would drift from it, and the proxy would need a second validator anyway. Policies
 * change rarely and endpoint deltas never carry them, so the JSON's bytes do not matter.
 */

export interface WireEndpoint {
  address: string;
  port: number;
  /** 0 = not meshed. */
  proxyPort: number;
  identity: string;
  weight: number;
  zone: string;
  ready: boolean;
  /** Absent/null: unknown. */
  workload?: WireWorkload | null;
  /** Absent or empty: none. */
  additionalAddresses?: string[];
  /** Endpoint.opaque; false (the proto3 default, and all an older control plane sends): not declared. */
  opaque?: boolean;
}
export interface WireWorkload {
  name: string;
  namespace: string;
  app: string;
  version: string;
}
export interface WireServicePort {
  name: string;
  port: number;
  protocol: string;
  endpoints: WireEndpoint[];
  /** '' = the service's policy applies; else this port's own ('{}' = all defaults). */
  policyJson?: string;
}
export interface WireService {
  name: string;
  namespace: string;
  clusterIps: string[];
  ports: WireServicePort[];
  policyJson: string;
  /** ServiceRoute[] as JSON (contract/routes.ts); '' or absent = none. */
  routesJson?: string;
}
export interface WireEndpointKey {
  address: string;
  port: number;
}
export interface WireEndpointDelta {
  service: string;
  port: number;
  added: WireEndpoint[];
  updated: WireEndpoint[];
  removed: WireEndpointKey[];
}
export interface DiscoveryResponse {
  version: string;
  nonce: string;
  full: boolean;
  baseVersion: string;
  services: WireService[];
  removedServices: string[];
  endpointDeltas: WireEndpointDelta[];
  /** Full: always present (null/absent = defaults). Delta: present only when the policy changed. */
  inboundPolicy?: WireInboundPolicy | null;
  /** The CA's trust state (contract/trust-anchors.ts). Full: set when the control plane is a CA. Delta: only when it changed. */
  trustBundle?: TrustBundleState | null;
  /** The subscriber's telemetry settings. Full: set by this control plane. Delta: only when they changed. Absent: keep. */
  telemetry?: WireTelemetry | null;
  /** The mode and ExternalServices (contract/egress.ts). Full: set by this control plane. Delta: only when they changed. Absent: keep. */
  egress?: WireEgress | null;
}
export interface WireEgress {
  /** '' = nothing set. */
  egressJson: string;
}
export interface WireTelemetry {
  /** '' = no pushed settings. */
  overridesJson: string;
}
export interface TrustBundleState {
  trustAnchorFingerprints: string[];
  signingRootFingerprint: string;
  reissueSpreadMs: number;
}
export interface WireInboundPolicy {
  policyJson: string;
  /** Absent from an older control plane (and when empty): the proxy's static protocol.opaquePorts only. */
  opaquePorts?: number[];
}
export interface WorkloadIdentity {
  spiffeId: string;
  namespace: string;
  pod: string;
  /** Pod labels (for policy selectors); optional when sending, `{}` when decoded without any. */
  labels?: Record<string, string>;
}
export interface Subscribe {
  identity: WorkloadIdentity;
  services: string[];
  lastVersion: string;
  /** The proxy's Wren release; optional when sending, '' when decoded from a proxy that does not send it. */
  proxyVersion?: string;
}
export interface Ack {
  version: string;
  nonce: string;
}
export interface Nack {
  version: string;
  nonce: string;
  errorDetail: string;
  resync: boolean;
}
/** One unhealthy endpoint in a HealthReport (contract/discovery.proto `Ejection`). */
export interface Ejection {
  /** "name.namespace" */
  service: string;
  servicePort: number;
  address: string;
  port: number;
  kind: EjectionKind;
  /** The outlier detector for outlier-ejection; '' otherwise. */
  reason: string;
  ejectedForMs: number;
}
/**
 * The most entries of a HealthReport the control plane keeps (the rest are counted and
 * dropped, control-plane/discovery/health-reports.ts), and so the most a proxy sends: a
 * report of every endpoint of a large mesh could pass the 4 MiB a control plane takes in
 * one message (grpc-js's default receive limit), which ends the whole discovery stream.
 * 10 000 entries are at most ~2.5 MB (Kubernetes names, IPv6 addresses).
 */
export const MAX_REPORTED_ENDPOINTS = 10_000;
export type EjectionKind = 'outlier-ejection' | 'health-check-failed' | 'breaker-open' | 'connect-failure';
export interface HealthReport {
  ejected: Ejection[];
}
/** What the proxy trusts (its bundle) and uses (the root its certificate chains to). Fingerprints as in contract/trust-anchors.ts. */
export interface IdentityReport {
  trustAnchorFingerprints: string[];
  /** '' when the chain ends at no root of the bundle. */
  chainRootFingerprint: string;
  leafSerial: string;
  notAfterMs: number;
  /** The roots of its configured bundle (what it verifies the control plane with after a restart); absent or [] = unknown. */
  startupTrustAnchorFingerprints?: string[];
}
/**
 * The most a control plane takes in one message from a proxy: grpc-js's default receive limit
 * (grpc.max_receive_message_length), set explicitly on the control plane's server
 * (control-plane/server.ts). A bigger message ends the whole discovery stream
 * RESOURCE_EXHAUSTED (grpc-js refuses it before the application sees it), so every report a
 * proxy sends stays well under it: HealthReport by MAX_REPORTED_ENDPOINTS, StatsReport by
 * MAX_STATS_REPORT_BYTES.
 */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/**
 * The most bytes a StatsReport is encoded to (the DiscoveryRequest that carries it), half of
 * MAX_REQUEST_BYTES. discovery.statsReport.maxEdges allows 10,000 edges, and an edge's labels
 * are Kubernetes names (up to 253 characters each): such a report was several MiB, over the
 * limit, and ended the stream at every report (adv29). The reporter leaves out the quietest
 * edges until it fits (proxy/stats/stats-reporter.ts), as it leaves out those over maxEdges:
 * a report is the proxy's whole cumulative state (the control plane rates each series from
 * consecutive reports, stats-store.ts), so it is trimmed, never split; the edges left out are
 * counted in droppedEdges. Envoy's gRPC sinks bound what they send by bytes the same way
 * (the access-log service's buffer_size_bytes).
 */
export const MAX_STATS_REPORT_BYTES = 2 * 1024 * 1024;
/** The proxy's traffic per edge, cumulative counters (contract/discovery.proto `StatsReport`). */
export interface StatsReport {
  workload: string;
  workloadNamespace: string;
  latencyBoundsMs: number[];
  edges: EdgeStats[];
  droppedEdges: number;
  recentDenials: RecentDenial[];
  intervalMs: number;
  /** How long the proxy had been running at this report (its counters start at 0 then); 0 or absent: unknown. */
  uptimeMs?: number;
  /** Absent from an older proxy. */
  recentRetries?: RecentRetry[];
  droppedRetries?: number;
}
export interface EdgeStats {
  direction: 'inbound' | 'outbound';
  peerWorkload: string;
  peerNamespace: string;
  peerIdentity: string;
  /** "name.namespace", '' unknown. */
  service: string;
  destinationWorkload: string;
  success: number;
  failure: number;
  /** Per bucket (latencyBoundsMs), then +Inf: one more than the bounds. */
  latencyBuckets: number[];
  latencySumMs: number;
  tcpOpened: number;
  tcpClosed: number;
  mtls: boolean;
}
export interface RecentDenial {
  ageMs: number;
  policy: string;
  action: string;
  reason: string;
  principal: string;
  method: string;
  path: string;
  port: number;
  /** Index of the deciding policy's matched rule; -1 none (absent from an older proxy). */
  rule?: number;
  /** `ns[NS]-policy[NAME]-rule[N]` ('' none). */
  effectivePolicyId?: string;
  /** no-allow-policy-matched: the ALLOW policies considered. */
  policiesConsidered?: string[];
  /** '' a request or connection refused; 'tcp' / 'upgrade' an open tunnel closed because a policy push denies it ('' from an older proxy). */
  closedTunnel?: string;
}
/** A request the proxy retried (contract/discovery.proto `RecentRetry`). */
export interface RecentRetry {
  ageMs: number;
  service: string;
  port: number;
  route: string;
  method: string;
  path: string;
  attempts: number;
  causes: RetryCause[];
  result: string;
  stopped: string;
}
export interface RetryCause {
  outcome: string;
  retryOn: string;
}
/** What the proxy sends: exactly one of the fields (`kind` names it when decoded). */
export type DiscoveryRequest =
  | { subscribe: Subscribe; kind?: 'subscribe' }
  | { ack: Ack; kind?: 'ack' }
  | { nack: Nack; kind?: 'nack' }
  | { health: HealthReport; kind?: 'health' }
  | { identityReport: IdentityReport; kind?: 'identityReport' }
  | { stats: StatsReport; kind?: 'stats' };

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

/** The .proto sits beside this file in the repo; from dist/contract it is two levels up. */
function protoPath(): string {
  const candidates = ['./discovery.proto', '../../contract/discovery.proto'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`discovery.proto not found (looked in ${candidates.join(', ')})`);
  return found;
}

export interface DiscoveryProto {
  /** Service definition for grpc.Server#addService. */
  readonly service: grpc.ServiceDefinition;
  /** Client constructor: `new Client(address, credentials, options)`. */
  readonly Client: grpc.ServiceClientConstructor;
  readonly encodeResponse: (r: DiscoveryResponse) => Buffer;
  readonly decodeResponse: (b: Buffer) => DiscoveryResponse;
  /** A request as the proxy's stream writes it (its size: MAX_STATS_REPORT_BYTES). */
  readonly encodeRequest: (r: DiscoveryRequest) => Buffer;
}

let loaded: DiscoveryProto | undefined;

export function loadDiscoveryProto(): DiscoveryProto {
  if (loaded) return loaded;
  const def = protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { wren: { discovery: { v1: { Discovery: grpc.ServiceClientConstructor } } } };
  const Client = pkg.wren.discovery.v1.Discovery;
  const method = Client.service.Stream;
  loaded = {
    service: Client.service,
    Client,
    encodeResponse: (r) => method.responseSerialize(r),
    decodeResponse: (b) => method.responseDeserialize(b) as DiscoveryResponse,
    encodeRequest: (r) => method.requestSerialize(r),
  };
  return loaded;
}

// ---- model -> wire -------------------------------------------------------------------

const policyJsonCache = new WeakMap<TrafficPolicy, string>();

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function sparse(value: unknown, def: unknown): unknown {
  if (isPlain(value) && isPlain(def)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const d = sparse(v, def[k]);
      if (d !== undefined) out[k] = d;
    }
    return Object.keys(out).length > 0 ? out : undefined;
  }
  return JSON.stringify(value) === JSON.stringify(def) ? undefined : value;
}

/** The policy as sparse JSON ('' when it equals DEFAULT_POLICY). Memoized: policies are frozen and shared. */
export function policyToJson(p: TrafficPolicy): string {
  let s = policyJsonCache.get(p);
  if (s === undefined) {
    const d = sparse(p, DEFAULT_POLICY);
    s = d === undefined ? '' : JSON.stringify(d);
    policyJsonCache.set(p, s);
  }
  return s;
}

export function endpointToWire(e: Endpoint): WireEndpoint {
  const w: WireEndpoint = { address: e.address, port: e.port, proxyPort: e.proxyPort ?? 0, identity: e.identity, weight: e.weight, zone: e.zone, ready: e.ready };
  if (e.workload) w.workload = { name: e.workload.name, namespace: e.workload.namespace, app: e.workload.app, version: e.workload.version };
  if (e.additionalAddresses && e.additionalAddresses.length > 0) w.additionalAddresses = [...e.additionalAddresses];
  if (e.opaque) w.opaque = true;
  return w;
}

export function serviceToWire(s: Service): WireService {
  return {
    name: s.name,
    namespace: s.namespace,
    clusterIps: [...s.clusterIPs],
    ports: s.ports.map((p) => ({
      name: p.name, port: p.port, protocol: p.protocol, endpoints: p.endpoints.map(endpointToWire), policyJson: p.policy ? policyToJson(p.policy) || '{}' : '',
    })),
    policyJson: policyToJson(s.policy),
    routesJson: routesToJson(s.routes),
  };
}

/** ServiceRoute[] as sent in `routes_json`: '' when there are none (the proxy then routes by authority only). */
export const routesToJson = (routes: readonly ServiceRoute[] | undefined): string => (routes && routes.length > 0 ? JSON.stringify(routes) : '');

export function fullResponse(version: string, nonce: string, services: Iterable<Service>): DiscoveryResponse {
  return { version, nonce, full: true, baseVersion: '', services: [...services].map(serviceToWire), removedServices: [], endpointDeltas: [] };
}

// ---- wire -> model (validated) ---------------------------------------------------------

/** Raw endpoint in the parse.ts spelling; zero values mean "absent" on the wire. */
function endpointRaw(w: WireEndpoint): Record<string, unknown> {
  const raw: Record<string, unknown> = { address: w?.address, port: w?.port, weight: w?.weight || undefined, zone: w?.zone, ready: w?.ready };
  if (w?.proxyPort) raw.proxyPort = w.proxyPort;
  if (w?.identity) raw.identity = w.identity;
  if (w?.workload?.name) raw.workload = w.workload;
  if (Array.isArray(w?.additionalAddresses) && w.additionalAddresses.length > 0) raw.additionalAddresses = w.additionalAddresses;
  if (w?.opaque === true) raw.opaque = true;
  return raw;
}

/** Validates one endpoint from the wire; throws ConfigError naming `path`. */
export function endpointFromWire(w: WireEndpoint, path: string): Endpoint {
  return parseEndpoint(endpointRaw(w), path);
}

/** Validates one service from the wire through parseService/parseTrafficPolicy; throws ConfigError naming `path`. */
export function serviceFromWire(w: WireService, path: string): Service {
  const json = (s: string | undefined, at: string): unknown => {
    if (!s) return undefined;
    try {
      return JSON.parse(s);
    } catch (e) {
      throw new Error(`${at}: invalid JSON (${(e as Error).message})`, { cause: e });
    }
  };
  const wirePorts = w?.ports ?? [];
  const raw = {
    name: w?.name,
    namespace: w?.namespace,
    clusterIPs: w?.clusterIps ?? [],
    ports: wirePorts.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol || undefined, endpoints: (p.endpoints ?? []).map(endpointRaw) })),
    policy: json(w?.policyJson, `${path}.policy`),
    routes: json(w?.routesJson, `${path}.routes`),
  };
  const s = parseService(raw, path);
  if (!wirePorts.some((p) => p?.policyJson)) return s;
  // Port policies are not part of the user-facing service spelling (parseService): they come
  // only from TrafficPolicies naming ports, so they are validated here, one by one.
  const ports = s.ports.map((p, i) => {
    const pj = wirePorts[i]?.policyJson;
    if (!pj) return p;
    const at = `${path}.ports[${i}].policy`;
    return Object.freeze({ ...p, policy: parseTrafficPolicy(json(pj, at), at) });
  });
  return Object.freeze({ ...s, ports: Object.freeze(ports) });
}

/** A full response as a validated MeshSnapshot (throws on the first invalid field). */
export function snapshotFromFullResponse(r: DiscoveryResponse, source: string): MeshSnapshot {
  const services = (r.services ?? []).map((s, i) => serviceFromWire(s, `services[${i}]`));
  return Object.freeze({ version: r.version, source, services: Object.freeze(services) });
}

// ---- inbound policy ----------------------------------------------------------------------

/** Empty lists left out (they are the parser's defaults); objects and list items kept. */
function withoutEmptyLists(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutEmptyLists);
  if (!isPlain(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined && !(Array.isArray(x) && x.length === 0)) out[k] = withoutEmptyLists(x);
  return out;
}

const inboundJsonCache = new WeakMap<InboundPolicy, string>();
const DEFAULT_INBOUND_JSON = JSON.stringify(withoutEmptyLists(DEFAULT_INBOUND_POLICY));

/** The policy as compact JSON ('' when it is DEFAULT_INBOUND_POLICY). Deterministic for equal policies (field order is the parser's). Memoized. */
export function inboundPolicyToJson(p: InboundPolicy): string {
  let s = inboundJsonCache.get(p);
  if (s === undefined) {
    // opaquePorts travel beside the JSON (InboundPolicyResource.opaque_ports), never in it.
    s = JSON.stringify(withoutEmptyLists(p.opaquePorts === undefined ? p : { ...p, opaquePorts: undefined }));
    if (s === DEFAULT_INBOUND_JSON) s = '';
    inboundJsonCache.set(p, s);
  }
  return s;
}

/** Validates an inbound policy from the wire ('' = defaults); throws ConfigError naming `path`. */
export function inboundPolicyFromJson(json: string, path: string): InboundPolicy {
  if (!json) return DEFAULT_INBOUND_POLICY;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`, { cause: e });
  }
  return parseInboundPolicy(raw, path);
}

/**
 * The pushed opaque ports (InboundPolicyResource.opaque_ports) on the policy they came with:
 * each a port number (1..65535), kept sorted and unique; none: the policy as it is. Throws
 * naming `path` (the response is NACKed, as for an invalid policy).
 */
export function withOpaquePorts(p: InboundPolicy, ports: readonly number[] | undefined, path: string): InboundPolicy {
  if (!ports || ports.length === 0) return p;
  ports.forEach((n, i) => {
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${path}[${i}]: expected a port number (1..65535), got ${JSON.stringify(n)}`);
  });
  return Object.freeze({ ...p, opaquePorts: Object.freeze([...new Set(ports)].sort((a, b) => a - b)) });
}

// ---- telemetry ---------------------------------------------------------------------------

const NO_PUSHED_TELEMETRY: PushedTelemetry = Object.freeze({
  tracing: Object.freeze({ samplingPercent: undefined }),
  accessLog: Object.freeze({ enabled: undefined, samplingPercent: undefined }),
});

/** Compact JSON with only the fields set ('' when none is). Deterministic (fixed field order). */
export function telemetryToJson(t: PushedTelemetry): string {
  const tracing = t.tracing.samplingPercent === undefined ? undefined : { samplingPercent: t.tracing.samplingPercent };
  const a = t.accessLog;
  const accessLog = a.enabled === undefined && a.samplingPercent === undefined ? undefined : { enabled: a.enabled, samplingPercent: a.samplingPercent };
  return tracing === undefined && accessLog === undefined ? '' : JSON.stringify({ tracing, accessLog });
}

/** Validates pushed telemetry settings ('' = none set); throws ConfigError naming `path`. */
export function telemetryFromJson(json: string, path: string): PushedTelemetry {
  if (!json) return NO_PUSHED_TELEMETRY;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`, { cause: e });
  }
  return parsePushedTelemetry(raw, path);
}
