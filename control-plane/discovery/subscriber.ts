import type { X509Certificate } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { DiscoveryRequest, DiscoveryResponse, Ejection, IdentityReport, Subscribe } from '../../contract/discovery.js';
import type { Service } from '../../contract/model.js';
import type { PeerIdentity } from '../identity/peer-certificate.js';

/** One computed response for (filter, from, to), shared by every subscriber in the same place. */
export interface Entry {
  readonly seq: number;
  readonly version: string;
  readonly committedAt: number;
  readonly nonce: string;
  readonly view: ReadonlyMap<string, Service>;
  /** The consumer-route namespace `view` was made for ('*': none of its own; discovery-server.ts entryFor). */
  readonly routeNs: string;
  readonly full: boolean;
  /** null: nothing this subscriber watches changed. */
  readonly bytes: Buffer | null;
  readonly response: DiscoveryResponse | null;
  /** `bytes` plus per-subscriber parts (inbound policy, trust state), by their key: subscribers with the same ones share these too. */
  readonly withPolicy: Map<string, Buffer>;
}

/** The discovery server's state for one stream. */
export interface Subscriber {
  readonly id: number;
  readonly call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>;
  readonly peer: string;
  readonly connectedAt: number;
  sub: Subscribe | null;
  filter: ReadonlySet<string> | null;
  filterId: string;
  ackedSeq: number;
  ackedVersion: string;
  ackedView: ReadonlyMap<string, Service>;
  /** The route namespace of the view the proxy ACKed (Entry.routeNs): with ackedSeq and the filter, what names ackedView. */
  ackedRouteNs: string;
  /** Inbound policy JSON the proxy ACKed (null: none yet). */
  ackedPolicyJson: string | null;
  /** The opaque ports sent with it (joined with ','; null: none yet). */
  ackedOpaquePorts: string | null;
  /** Key of the trust state the proxy ACKed (null: none yet). */
  ackedTrustKey: string | null;
  /**
   * Key of a trust state the proxy NACKed when it came alone (an otherwise empty delta):
   * it refuses that state itself, so it is not sent again on this stream until the CA's
   * state changes (discovery-server.ts pump; null: none).
   */
  nackedTrustKey: string | null;
  /** Telemetry settings JSON the proxy ACKed (null: none yet). */
  ackedTelemetryJson: string | null;
  /** Egress settings JSON the proxy ACKed (null: none yet). */
  ackedEgressJson: string | null;
  /** policyJson / trustKey / telemetryJson: what this response carries besides services, null when it carries none. */
  inflight: (Entry & { sentAt: number; policyJson: string | null; opaquePorts: string | null; trustKey: string | null; telemetryJson: string | null; egressJson: string | null }) | null;
  nackedSeq: number;
  /** The last response written: its version and when (null: none yet). For /debug/proxy-status. */
  lastSent: { readonly version: string; readonly at: number } | null;
  /** The proxy NACKed a response and has not ACKed one since: it holds an older config (NACKED). */
  nackedSinceAck: boolean;
  /** When the proxy's last message (any kind) came; `connectedAt` until then. */
  lastSeenAt: number;
  forceFull: boolean;
  nacks: number;
  lastNack: { version: string; detail: string; at: number } | null;
  /** The proxy's last HealthReport, validated (health-reports.ts), and when it came (0: none). */
  ejections: readonly Ejection[];
  healthReportedAt: number;
  /** The proxy's last IdentityReport (what it trusts and presents) and when it came. */
  identityReport: { readonly report: IdentityReport; readonly at: number } | null;
  /** The identity the stream's client certificate proves (null: not authenticated, client authentication off). */
  authPeer: PeerIdentity | null;
  /** The current trust anchor (fingerprint) that certificate chains to, and the certificate, re-checked when the bundle changes. */
  authAnchor: { readonly fingerprint: string; readonly certificate: X509Certificate } | null;
  /**
   * Set at Subscribe: what the stream counts against for MAX_STREAMS_PER_POD (the pod its
   * certificate was issued to, its claimed pod, or its certificate when it names none;
   * discovery-server.ts streamsKey; on plaintext, the pod it claims from its address). Null: none.
   */
  podKey: string | null;
  /** The certificate an authenticated stream also counts against (MAX_STREAMS_PER_POD, discovery-server.ts certificateKey), when podKey is not already it; null: none. */
  certKey: string | null;
  /** The fleet (bootstrap token, unbound service-account tokens) an authenticated stream's certificate was issued for (maxStreamsPerFleet); null: none. */
  fleetKey: string | null;
  /** The source address a plaintext stream counts against, an IPv6 one's /64 (source-address.ts; MAX_PLAINTEXT_STREAMS_PER_ADDRESS); null: none (mTLS, loopback). */
  addressKey: string | null;
  /** Its pod claim was checked against a synced view (client-auth.ts checkPodClaim), at its first push. */
  podClaimChecked: boolean;
  /**
   * A stream whose certificate is bound to a pod, once its claim passed: the pod it names
   * ("namespace/name") and the UID the source knew for it then (undefined: none). Re-checked
   * when that pod's UID changes (discovery-server.ts recheckPodBound).
   */
  podBound: { readonly key: string; uid: string | undefined } | null;
  closed: boolean;
  /** The stream's report budget per kind (discovery-server.ts REPORT_BUDGET), made at its first report of that kind. */
  reportBuckets: Partial<Record<ReportKind, ReportBucket>>;
}

/** The reports a proxy sends on its stream, each with a budget of its own (discovery-server.ts). */
export type ReportKind = 'stats' | 'health' | 'identity';

/** A token bucket: `tokens` as of `at` (the control plane's clock); `limited`: a report was dropped since the last one taken (logged once per run). */
export interface ReportBucket {
  tokens: number;
  at: number;
  limited: boolean;
}

export function newSubscriber(id: number, call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>, now: number): Subscriber {
  return {
    id, call, peer: call.getPeer(), connectedAt: now, sub: null, filter: null, filterId: '*',
    ackedSeq: -1, ackedVersion: '', ackedView: new Map(), ackedRouteNs: '*', ackedPolicyJson: null, ackedOpaquePorts: null, ackedTrustKey: null, nackedTrustKey: null, ackedTelemetryJson: null, ackedEgressJson: null, inflight: null, nackedSeq: -1,
    lastSent: null, nackedSinceAck: false, lastSeenAt: now,
    forceFull: false, nacks: 0, lastNack: null, ejections: [], healthReportedAt: 0, identityReport: null,
    authPeer: null, authAnchor: null, podKey: null, certKey: null, fleetKey: null, addressKey: null, podClaimChecked: false, podBound: null, closed: false, reportBuckets: {},
  };
}

/** An IdentityReport as kept for /debug/trust: only strings and numbers, whatever the wire held (it is shown, never trusted). */
export function reportFromWire(r: IdentityReport): IdentityReport {
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.slice(0, 64).map((x) => String(x).slice(0, 200)) : []);
  return Object.freeze({
    trustAnchorFingerprints: strings(r.trustAnchorFingerprints),
    chainRootFingerprint: String(r.chainRootFingerprint ?? '').slice(0, 200),
    leafSerial: String(r.leafSerial ?? '').slice(0, 100),
    notAfterMs: Number(r.notAfterMs ?? 0) || 0,
    startupTrustAnchorFingerprints: strings(r.startupTrustAnchorFingerprints),
  });
}

/** One row of GET /debug/proxies. */
export function debugProxy(s: Subscriber, now: number): Record<string, unknown> {
  return {
    id: s.id,
    peer: s.peer,
    identity: s.sub?.identity ?? null,
    authenticatedAs: s.authPeer?.spiffeId ?? null,
    services: s.sub?.services ?? [],
    connectedForMs: Math.round(now - s.connectedAt),
    ackedVersion: s.ackedVersion || null,
    inboundPolicy: s.ackedPolicyJson === null ? null : s.ackedPolicyJson === '' ? 'default' : (JSON.parse(s.ackedPolicyJson) as unknown),
    /** The target ports its Services declare opaque, ACKed with the policy (its inbound splices them unsniffed). */
    inboundOpaquePorts: s.ackedOpaquePorts ? s.ackedOpaquePorts.split(',').map(Number) : [],
    telemetry: s.ackedTelemetryJson === null ? null : s.ackedTelemetryJson === '' ? 'none' : (JSON.parse(s.ackedTelemetryJson) as unknown),
    egress: s.ackedEgressJson === null ? null : s.ackedEgressJson === '' ? 'none' : (JSON.parse(s.ackedEgressJson) as unknown),
    inflightVersion: s.inflight?.version ?? null,
    nacks: s.nacks,
    lastNack: s.lastNack,
    ejections: s.ejections,
  };
}

/** One proxy in GET /debug/trust: what it trusts and uses (`wren trust-anchors check` reads these fields). */
export interface DebugTrustProxy {
  readonly id: number;
  readonly identity: string | null;
  /** namespace/pod */
  readonly pod: string | null;
  readonly peer: string;
  /** false: connected but no IdentityReport yet (just subscribed, or an older proxy). */
  readonly reported: boolean;
  readonly trusts: readonly string[];
  /** The roots it verifies the control plane with after a restart (its configured bundle); null when unknown. */
  readonly trustsAtStartup: readonly string[] | null;
  /** The root its certificate chains to; null when unknown, '' when none of its anchors. */
  readonly uses: string | null;
  readonly leafSerial: string | null;
  readonly notAfter: string | null;
  readonly reportedForMs: number | null;
  /** It ACKed the control plane's current trust state. */
  readonly ackedTrustState: boolean;
}

export function debugTrustProxy(s: Subscriber, now: number, currentTrustKey: string | null): DebugTrustProxy {
  const r = s.identityReport;
  const id = s.sub?.identity;
  return {
    id: s.id,
    identity: id?.spiffeId ?? null,
    pod: id ? `${id.namespace}/${id.pod}` : null,
    peer: s.peer,
    reported: r !== null,
    trusts: r ? [...r.report.trustAnchorFingerprints] : [],
    trustsAtStartup: r?.report.startupTrustAnchorFingerprints?.length ? [...r.report.startupTrustAnchorFingerprints] : null,
    uses: r ? r.report.chainRootFingerprint : null,
    leafSerial: r ? r.report.leafSerial : null,
    notAfter: r && r.report.notAfterMs > 0 ? new Date(r.report.notAfterMs).toISOString() : null,
    reportedForMs: r ? Math.round(now - r.at) : null,
    ackedTrustState: currentTrustKey !== null && s.ackedTrustKey === currentTrustKey,
  };
}
