import { printable } from '../../common/printable.js';
import { inboundPolicyFromJson, withOpaquePorts } from '../../contract/discovery.js';
import type { Service } from '../../contract/model.js';
import type { Issuer } from '../identity/issuer.js';
import { issuerTrust } from '../identity/trust-state.js';
import type { Subscriber } from './subscriber.js';

/**
 * The control plane's per-proxy status (GET /debug/proxy-status, `wren proxy-status`) and
 * what it sent each proxy (GET /debug/proxy-config, `wren proxy-config`).
 *
 * Sync status, as istioctl proxy-status's per-type column (SYNCED / STALE / NOT SENT),
 * but for the one stream Wren has, with NACKs told apart:
 * - SYNCED: the proxy ACKed the last response sent to it and nothing is in flight.
 * - STALE: a response is in flight (sent, not ACKed yet), or nothing was sent yet
 *   (`sentVersion` null: the source has not synced). A proxy that stays STALE is stuck
 *   (slow, overloaded, or its stream is wedged).
 * - NACKED: the proxy rejected the last response it got (`nack.detail` says why) and has
 *   ACKed none since: it runs its last good config (`ackedVersion`), not the latest.
 * A proxy with a filter (Subscribe.services) gets no push when only other services change,
 * so SYNCED compares with what was sent to it, and `latestVersion` (the control plane's
 * current view) is shown beside it, not compared.
 */
export type SyncStatus = 'SYNCED' | 'STALE' | 'NACKED';

export interface ProxyStatusCert {
  readonly serial: string;
  readonly notAfter: string | null;
  /** The root its certificate chains to ('' when none of its anchors). */
  readonly chainRoot: string;
  /** That root is one of the control plane's current trust anchors (null: the control plane is not a CA). */
  readonly chainsToCurrentAnchor: boolean | null;
  /** The anchors the proxy trusts. */
  readonly trusts: readonly string[];
}

export interface ProxyStatusRow {
  readonly id: number;
  readonly pod: string;
  readonly namespace: string;
  readonly identity: string;
  /** The identity its client certificate proves (null: client authentication off). */
  readonly authenticatedAs: string | null;
  readonly proxyVersion: string | null;
  readonly status: SyncStatus;
  readonly ackedVersion: string | null;
  readonly sentVersion: string | null;
  readonly latestVersion: string;
  /** Milliseconds the in-flight response has waited for its ACK (null: none in flight). */
  readonly pendingForMs: number | null;
  readonly nacks: number;
  readonly nack: { readonly version: string; readonly detail: string; readonly agoMs: number } | null;
  /** It ACKed the control plane's current trust state (null: the control plane is not a CA). */
  readonly trustStateAcked: boolean | null;
  /** null: no IdentityReport yet. */
  readonly cert: ProxyStatusCert | null;
  readonly connectedSince: string;
  /** How long its stream has been up, by the control plane's clock (`wren proxy-status` CONNECTED: no clock skew with the CLI's). */
  readonly connectedForMs: number;
  readonly lastSeenAgoMs: number;
}

export interface ProxyConfigDump {
  readonly pod: string;
  readonly identity: string;
  readonly ackedVersion: string | null;
  /** The services (clusters: ports, endpoints, policy) the proxy ACKed, i.e. runs with. */
  readonly services: readonly Service[];
  /** The routes of those services, by service key "name.namespace". */
  readonly routes: Readonly<Record<string, unknown>>;
  /** The inbound policy it ACKed (the defaults expanded); null: none sent yet. */
  readonly policy: unknown;
  readonly telemetry: unknown;
  readonly cert: ProxyStatusCert | null;
}

/** The current trust anchors' fingerprints. */
export function currentAnchors(issuer: Issuer): ReadonlySet<string> {
  return new Set(issuerTrust(issuer).trustAnchorFingerprints);
}

export function syncStatus(s: Subscriber): SyncStatus {
  if (s.nackedSinceAck) return 'NACKED';
  if (s.inflight !== null || s.lastSent === null) return 'STALE';
  return 'SYNCED';
}

function certOf(s: Subscriber, anchors: ReadonlySet<string> | null): ProxyStatusCert | null {
  const r = s.identityReport?.report;
  if (!r) return null;
  return {
    serial: r.leafSerial.toUpperCase(), // as /certs and openssl show it
    notAfter: r.notAfterMs > 0 ? new Date(r.notAfterMs).toISOString() : null,
    chainRoot: r.chainRootFingerprint,
    chainsToCurrentAnchor: anchors ? r.chainRootFingerprint !== '' && anchors.has(r.chainRootFingerprint) : null,
    trusts: [...r.trustAnchorFingerprints],
  };
}

export function proxyStatusRow(s: Subscriber, now: number, latestVersion: string, trustKey: string | null, anchors: ReadonlySet<string> | null): ProxyStatusRow {
  const id = s.sub!.identity;
  return {
    id: s.id,
    pod: id.pod,
    namespace: id.namespace,
    identity: id.spiffeId,
    authenticatedAs: s.authPeer?.spiffeId ?? null,
    proxyVersion: s.sub!.proxyVersion ? printable(String(s.sub!.proxyVersion).slice(0, 64)) : null,
    status: syncStatus(s),
    ackedVersion: s.ackedVersion || null,
    sentVersion: s.lastSent?.version ?? null,
    latestVersion,
    pendingForMs: s.inflight ? Math.round(now - s.inflight.sentAt) : null,
    nacks: s.nacks,
    nack: s.nackedSinceAck && s.lastNack ? { version: printable(s.lastNack.version), detail: printable(s.lastNack.detail), agoMs: Math.round(now - s.lastNack.at) } : null,
    trustStateAcked: trustKey === null ? null : s.ackedTrustKey === trustKey,
    cert: certOf(s, anchors),
    connectedSince: new Date(s.connectedAt).toISOString(),
    connectedForMs: Math.round(now - s.connectedAt),
    lastSeenAgoMs: Math.round(now - s.lastSeenAt),
  };
}

/** The opaque ports the proxy ACKed with its policy (Subscriber.ackedOpaquePorts, joined with ','). */
const ackedOpaquePorts = (s: Subscriber): number[] => (s.ackedOpaquePorts ? s.ackedOpaquePorts.split(',').map(Number) : []);

const parsed = (json: string | null, empty: string): unknown => (json === null ? null : json === '' ? empty : (JSON.parse(json) as unknown));

export function proxyConfigDump(s: Subscriber, anchors: ReadonlySet<string> | null): ProxyConfigDump {
  const id = s.sub!.identity;
  const services = [...s.ackedView.values()];
  return {
    pod: `${id.namespace}/${id.pod}`,
    identity: id.spiffeId,
    ackedVersion: s.ackedVersion || null,
    services,
    routes: Object.fromEntries(services.filter((x) => x.routes?.length).map((x) => [`${x.name}.${x.namespace}`, x.routes])),
    // '' on the wire is the defaults: shown expanded, as the proxy's own /config_dump does.
    // With the opaque ports sent beside it, as the proxy's /config_dump shows its policy.
    policy: s.ackedPolicyJson === null ? null : withOpaquePorts(inboundPolicyFromJson(s.ackedPolicyJson, 'inboundPolicy'), ackedOpaquePorts(s), 'opaquePorts'),
    telemetry: parsed(s.ackedTelemetryJson, 'none'),
    cert: certOf(s, anchors),
  };
}
