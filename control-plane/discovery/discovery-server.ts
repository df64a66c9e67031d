import * as grpc from '@grpc/grpc-js';
import { sourceAddress } from '../source-address.js';
import { ExpiryQueue } from './expiry-queue.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { fullResponse, loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse, type StatsReport, type Subscribe } from '../../contract/discovery.js';
import { MAX_SUBSCRIBE_LABELS, MAX_SUBSCRIBE_SERVICES } from '../../contract/subscribe-limits.js';
import type { Service } from '../../contract/model.js';
import { short } from '../../contract/trust-anchors.js';
import { certifiedFleet, certifiedPod, parseCertifyState } from '../identity/certify-limiter.js';
import { ClientAnchors } from '../identity/client-anchors.js';
import { issuerSnapshot, type Issuer } from '../identity/issuer.js';
import { peerIdentityOf, type PeerIdentity } from '../identity/peer-certificate.js';
import { describeIssuerTrust } from '../identity/trust-state.js';
import type { EndpointWithdrawal } from '../health/endpoint-withdrawal.js';
import type { ControlPlaneMetrics } from '../metrics.js';
import type { MeshStore, PolicyView, StoreView } from '../store/mesh-store.js';
import { routesFor, type RouteView } from '../translate/route-compile.js';
import { checkIdentityClaim, checkPodClaim } from './client-auth.js';
import { diffViews, isEmptyDelta } from './delta.js';
import { healthRows, validateHealthReport, type HealthRow } from './health-reports.js';
import { debugProxy, debugTrustProxy, newSubscriber, reportFromWire, type DebugTrustProxy, type Entry, type ReportKind, type Subscriber } from './subscriber.js';
import { currentAnchors, proxyConfigDump, proxyStatusRow, type ProxyConfigDump, type ProxyStatusRow } from './proxy-status.js';
import { TrustPush, type TrustPushOptions, type TrustPushState } from './trust-push.js';
import { encodePolicySuffix, WorkloadPolicies } from './workload-policy.js';
import { encodeTelemetrySuffix, WorkloadTelemetries } from './workload-telemetry.js';
import { encodeEgressSuffix, MeshEgress } from './mesh-egress.js';
import type { EgressMode } from '../../contract/egress.js';

/**
 * The server side of wren.discovery.v1 Discovery.Stream.
 *
 * Per stream it keeps the view the proxy last ACKed (an immutable Map shared with the
 * store) and at most one response in flight. On every store change each subscriber is
 * "pumped": if nothing is in flight it gets the delta from its ACKed view to the current
 * one. Subscribers with the same filter at the same ACKed version get the very same
 * delta, so it is computed and serialized once per (filter, from, to) and the bytes are
 * written to every stream (that is what keeps 1000 subscribers cheap).
 *
 * Routes (HTTPRoute / GRPCRoute with Service parents): each Service carries the routes in
 * force for the subscriber (routes_json), which depend on its namespace: consumer routes
 * declared there replace the producer routes (GEP-1294; route-compile.ts routesFor). So the
 * shared computation is per (filter, route namespace, from, to), where the route namespace
 * is the subscriber's own only if it has consumer routes, '*' otherwise: subscribers in
 * ordinary namespaces still share one response.
 *
 * NACK: the response is recorded (metric, log, /debug/proxies) and the subscriber stays
 * at its last ACKed view; the next delta is computed from there when the view changes
 * again (no retry loop on the same bad content). A NACK with `resync` gets a full
 * snapshot at once.
 *
 * Inbound policy: each subscriber also gets its own workload's InboundPolicy (resolved
 * from PeerAuthentications, AuthorizationPolicies and its labels), in every full
 * response and in a delta whenever it differs from the one the subscriber ACKed, even
 * if no service changed. It is versioned and ACKed with the response that carries it.
 *
 * Trust state (when the control plane is a CA, `issuer`): the anchors it hands out and
 * the root it signs under (trust-push.ts), the same way — in every full response, and in
 * a delta whenever the subscriber has not ACKed the current one, even an otherwise empty
 * delta at the version it holds. Proxies answer with IdentityReports (what they trust and
 * present), kept per stream for GET /debug/trust and `wren trust-anchors check`.
 *
 * Client authentication (`clientAuth`, on whenever the control plane serves TLS): a stream
 * needs a client certificate that chains to an anchor of the current trust bundle
 * (UNAUTHENTICATED otherwise, at once), and is bound to the SPIFFE ID it proves. The
 * anchor is derived per stream (client-anchors.ts), not taken from the connection's
 * handshake: a connection authenticated before a root was removed cannot open new streams
 * under it, and when the bundle drops the root a stream's certificate chains to, the
 * stream ends (UNAUTHENTICATED, 'trust-anchor-removed'); the proxy reconnects with its
 * renewed certificate. Its
 * Subscribe must name that identity, its namespace, and a pod of that service account with
 * the labels it claims, and for a certificate bound to a pod that very pod (client-auth.ts;
 * PERMISSION_DENIED otherwise), so what a stream
 * receives (its own workload's inbound policy) and the reports it sends (HealthReport,
 * IdentityReport) belong to the workload that holds the key. The stream ends
 * (UNAUTHENTICATED) when its certificate expires; the proxy reconnects with its renewed
 * one. Every refusal is counted (wren_cp_discovery_refused_total{reason}) and logged with
 * the peer address, the claimed and the proven identity, never the certificate; so are the
 * protocol errors that end a stream (subscribe-twice, bad-spiffe-id, not-subscribed), which
 * a client with no certificate at all (plaintext) can cause.
 */
export interface PushRecord {
  readonly subscriber: number;
  readonly identity: string;
  readonly version: string;
  readonly full: boolean;
  readonly bytes: number;
  readonly response: DiscoveryResponse;
}

export interface DiscoveryServerOptions {
  readonly store: MeshStore;
  readonly metrics: ControlPlaneMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Policies here without a selector are mesh-wide (default wren-system). */
  readonly rootNamespace?: string;
  /** The mesh-wide egress mode pushed to every proxy (mesh-egress.ts); undefined: not set (the proxies' own, else ALLOW_ANY). */
  readonly egressMode?: EgressMode;
  /** The CA, when the control plane is one: its trust state is pushed and proxies' reports are kept. */
  readonly issuer?: Issuer;
  readonly trustPush?: TrustPushOptions;
  /**
   * Require and check client certificates (above). `trustDomain`: the only one accepted.
   * `podsAuthoritative`: the source knows every meshed pod (Kubernetes), so a Subscribe for
   * a pod it does not know is refused. Absent: streams are not authenticated (plaintext
   * transport, tests), and Subscribe is taken at its word. Needs `issuer` (its bundle is
   * what certificates must chain to).
   */
  readonly clientAuth?: { readonly trustDomain: string; readonly podsAuthoritative: boolean };
  /** Aggregates StatsReports (control-plane/stats/) for `wren stat` and the dashboard; without it they are ignored. */
  readonly stats?: { ingest(reporter: { pod: string; namespace: string; identity: string; workload: string }, report: StatsReport): void };
  /** Acts on HealthReports (mesh-wide withdrawal, control-plane/health/); without it reports are only kept and shown. */
  readonly withdrawal?: EndpointWithdrawal;
  /** The largest response written (default MAX_RESPONSE_BYTES; the gRPC server's max send must be at least this). */
  readonly maxResponseBytes?: number;
  /** Streams the certificates of one fleet (a bootstrap token, or a service account's tokens bound to no pod) may hold at once (default DEFAULT_MAX_STREAMS_PER_FLEET). */
  readonly maxStreamsPerFleet?: number;
  /** Reports per stream and kind (REPORT_BUDGET); absent fields: the default. */
  readonly reportBudget?: Partial<ReportBudget>;
  /** A SERVER span per subscription (control-plane/tracing.ts), when a collector is configured; pushes are traced through onPush. */
  readonly tracing?: { subscribed(subscriber: number, identity: string, pod: string): void; dropped(subscriber: number): void };
}

/**
 * Discovery streams one authenticated pod may hold at once. A sidecar holds one (its
 * listener workers share it); a reconnect may overlap the stream it replaces until the
 * connection's keepalive finds it gone. Each stream costs an encoded catalog for its own
 * service filter (about 0.5 MB in a mesh of a few hundred services), so without a bound
 * one workload certificate could hold any number (500 streams: +250 MiB, adv15). istiod
 * bounds the rate of new connections instead (PILOT_MAX_REQUESTS_PER_SECOND). Past it the
 * stream is refused RESOURCE_EXHAUSTED, counted as wren_cp_discovery_refused_total{reason="streams-per-pod"};
 * the proxy retries with its backoff. In Kubernetes the pod must exist and run as the
 * certificate's service account (client-auth.ts), so this bounds a certificate's streams
 * by its service account's pods.
 */
export const MAX_STREAMS_PER_POD = 8;

/**
 * Discovery streams the certificates of one fleet may hold at once, all together: a bootstrap
 * token (one secret a fleet of VMs may share), or a service account's TokenReview tokens bound
 * to no pod, the keys Certify charges a fleet's bucket to (certify-limiter.ts certifiedFleet,
 * written into every certificate signed for them and renewed from them). Each certificate
 * holds at most MAX_STREAMS_PER_POD streams, but such a token gets a new certificate per
 * Certify (a burst of 20, then one a second: --certify-fleet-burst/-refill), so one holder of
 * the token minted certificates for 8 streams each, thousands an hour, each an encoded catalog
 * (adv59). 256: a fleet of a couple of hundred VMs, each holding one stream, with room for
 * reconnects overlapping; a larger fleet raises it (--discovery-max-streams-per-fleet) or is
 * given several tokens. Past it the stream is refused RESOURCE_EXHAUSTED, counted as
 * wren_cp_discovery_refused_total{reason="streams-per-fleet"}; the proxy retries with its
 * backoff. Pods' own certificates (a projected token bound to the pod) are bounded per pod.
 */
export const DEFAULT_MAX_STREAMS_PER_FLEET = 256;

/**
 * Plaintext discovery (`--insecure`, no client authentication: meant for tests and a
 * debugging session) has no certificate to bound by, so it bounds what a stream says and
 * where it comes from. A stream claiming a pod counts against that claimed pod from its
 * source address (MAX_STREAMS_PER_POD, refused `streams-per-pod` as with mTLS): a sidecar in
 * a reconnect loop holds no more there than here. Per address because a claim proves
 * nothing: counted by the claim alone, anything reaching the port held a pod's 8 places with
 * streams claiming it and that pod's sidecar, from its own address, was refused for as long
 * as they stayed open (adv53). Loopback streams share one count per claim. A claim costs nothing to make, though, so what bounds
 * a client is its source address: at most this many streams from one (refused
 * `streams-per-address`), the catalogs of 8 pods' worth of sidecars (a node's pods each have
 * their own address; a hostNetwork or SNATed client shares one). Loopback is exempt: every
 * local process has that one address (the test suites and the benchmark open hundreds of
 * plaintext streams from 127.0.0.1), and whoever runs there can do more than open streams.
 * Until 2026-12-07 (adv41) plaintext streams were bounded by nothing, unlike mTLS ones
 * (istiod's plaintext port 15010 is still under its connection rate limit, PILOT_MAX_REQUESTS_PER_SECOND).
 */
export const MAX_PLAINTEXT_STREAMS_PER_ADDRESS = 64;

/**
 * The most bytes of computed responses kept for sharing (entryFor's cache, and the copies
 * with per-subscriber parts). The cache lived until the next change of the view, keyed by
 * the subscriber's service filter, which a Subscribe chooses: in a quiet mesh, streams opened
 * and cancelled with a new filter each (a subset of the catalog each time) left one encoded
 * response each, without bound (a 1.3 MB catalog: 130 MB per 100 streams). Past it the
 * oldest entries are dropped (wren_cp_discovery_response_cache_evictions_total); one
 * change's shared responses (one per filter in use) fit well within it. An entry's key (the
 * filter, as its service names joined) is counted with its bytes.
 */
export const MAX_RESPONSE_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * The largest discovery response written: what a proxy takes in one message
 * (grpc.max_receive_message_length, proxy/discovery/discovery-client.ts) and the gRPC
 * server's max send (server.ts). A bigger one (a catalog of about a million endpoints, for a
 * proxy that watches everything) was cut by grpc-js with "Sent message larger than max",
 * and the control plane neither logged nor counted it. It now ends the stream itself with
 * RESOURCE_EXHAUSTED, a detail that says what to narrow, the refusal counted
 * (wren_cp_discovery_refused_total{reason="response-too-large"}) and logged; the proxy
 * keeps its last good config and retries with its backoff (a response it could not read
 * is no better).
 */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * The longest SPIFFE ID a Subscribe may claim, in bytes (SPIFFE-ID §2.3, "Maximum SPIFFE ID
 * Length": implementations must take 2048 and should not make longer ones). Without client
 * authentication the claim is the stream's own word, and it is kept per stream (/debug/proxies,
 * the stats store's reporters) and written into the log line of every HealthReport and NACK:
 * a 4 MiB claim made each of those a 4 MiB line (adv29). With client authentication it must
 * equal the certificate's, which the CA bounds the same way.
 */
export const MAX_SPIFFE_ID_BYTES = 2048;

/** A token bucket's size and refill, in reports. */
export interface ReportBudget {
  readonly burst: number;
  readonly perSecond: number;
}

/**
 * How many reports of each kind (StatsReport, HealthReport, IdentityReport) one stream may
 * send: a burst of 10, then 5 a second. Every report is CPU on the control plane's one event
 * loop (a StatsReport of 10,000 edges is validated and folded edge by edge, a HealthReport
 * checked entry by entry against what the proxy was sent), and nothing bounded how fast a
 * stream sent them: a proxy, or anything holding a workload certificate, could send them as
 * fast as it could write and every other proxy's pushes waited behind them (adv29). An honest
 * proxy sends a StatsReport every discovery.statsReport.intervalMs (10 s by default), a
 * HealthReport at most once a second (health-reporter.ts) and an IdentityReport per rotation:
 * well within it. Past it a report is dropped unread (counted,
 * wren_cp_discovery_reports_limited_total{kind}, and logged once per run of drops per stream
 * and kind); the stream stays up. Each report replaces the proxy's previous one and stats
 * are cumulative, so the next report within budget loses nothing. Envoy's local rate limit
 * and gRPC servers' per-stream message limits are the same token bucket; istiod bounds
 * only new connections per second (PILOT_MAX_REQUESTS_PER_SECOND).
 */
export const REPORT_BUDGET: ReportBudget = Object.freeze({ burst: 10, perSecond: 5 });

export class DiscoveryServer {
  private readonly subs = new Set<Subscriber>();
  /** Open streams per authenticated pod, or certificate of a proxy that names none (MAX_STREAMS_PER_POD, streamsKey). */
  private readonly podStreams = new Map<string, number>();
  /** Open authenticated streams per fleet (maxStreamsPerFleet, certifiedFleet). */
  private readonly fleetStreams = new Map<string, number>();
  private readonly maxStreamsPerFleet: number;
  /** Open plaintext streams per source address, an IPv6 one's /64 (source-address.ts; MAX_PLAINTEXT_STREAMS_PER_ADDRESS; loopback not counted). */
  private readonly addressStreams = new Map<string, number>();
  /** Open streams whose certificate is bound to a pod and whose claim passed, by the pod they name ("namespace/name"; Subscriber.podBound). */
  private readonly podBound = new Map<string, Set<Subscriber>>();
  /** The store's podUids that recheckPodBound last looked at. */
  private podUidsSeen: ReadonlyMap<string, string> | undefined = undefined;
  private readonly cache = new Map<string, Entry>();
  /** The cached entries, oldest first, with their key and the bytes they hold (MAX_RESPONSE_CACHE_BYTES). */
  private readonly cached = new Map<Entry, { readonly key: string; bytes: number }>();
  private cachedBytes = 0;
  private cacheSeq = -1;
  private nextId = 1;
  private readonly pushListeners = new Set<(p: PushRecord) => void>();
  private readonly unsubscribe: () => void;
  private readonly policies: WorkloadPolicies;
  private readonly telemetries: WorkloadTelemetries;
  private readonly egress: MeshEgress;
  private readonly trust: TrustPush | null;
  private readonly unsubscribeTrust: () => void;
  private readonly anchors: ClientAnchors | null;
  private readonly reportBudget: ReportBudget;
  /** Authenticated streams by their client certificate's notAfter (armExpiry). */
  private readonly expiries: ExpiryQueue<Subscriber>;

  constructor(private readonly o: DiscoveryServerOptions) {
    this.expiries = new ExpiryQueue(o.clock, (s) => {
      if (!s.closed) this.armExpiry(s);
    });
    this.reportBudget = { ...REPORT_BUDGET, ...o.reportBudget };
    if (!(this.reportBudget.burst >= 1) || !(this.reportBudget.perSecond > 0))
      throw new RangeError(`reportBudget: burst must be >= 1 and perSecond > 0, got ${JSON.stringify(this.reportBudget)}`);
    this.maxStreamsPerFleet = o.maxStreamsPerFleet ?? DEFAULT_MAX_STREAMS_PER_FLEET;
    if (!Number.isInteger(this.maxStreamsPerFleet) || this.maxStreamsPerFleet < 1)
      throw new RangeError(`maxStreamsPerFleet must be an integer >= 1, got ${o.maxStreamsPerFleet}`);
    if (o.clientAuth && !o.issuer) throw new Error('client authentication needs the issuer (its trust bundle is what client certificates must chain to)');
    this.anchors = o.clientAuth && o.issuer ? new ClientAnchors(o.issuer) : null;
    this.policies = new WorkloadPolicies(o.rootNamespace);
    this.telemetries = new WorkloadTelemetries(o.logger.child({ component: 'telemetry' }), o.rootNamespace);
    this.egress = new MeshEgress(o.egressMode);
    this.unsubscribe = o.store.onChange((view) => {
      this.recheckPodBound(view.policy);
      for (const s of this.subs) this.pump(s);
    });
    this.trust = o.issuer ? new TrustPush(o.issuer, () => this.subs.size, o.trustPush) : null;
    this.unsubscribeTrust = this.trust?.onChange((next) => this.onTrustChange(next)) ?? (() => undefined);
  }

  /** Service definition whose serializer lets pre-encoded Buffers through (shared bytes across subscribers). */
  static definition(): grpc.ServiceDefinition {
    const base = loadDiscoveryProto().service;
    const m = base.Stream;
    return { Stream: { ...m, responseSerialize: (v: unknown) => (Buffer.isBuffer(v) ? v : m.responseSerialize(v)) } };
  }

  readonly implementation: grpc.UntypedServiceImplementation = {
    Stream: (call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>) => this.onStream(call),
  };

  /** Observe every response written (tests, benchmark). */
  onPush(fn: (p: PushRecord) => void): () => void {
    this.pushListeners.add(fn);
    return () => this.pushListeners.delete(fn);
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** For /debug/proxies. */
  debugProxies(): Record<string, unknown>[] {
    const now = this.o.clock.now();
    return [...this.subs].map((s) => debugProxy(s, now));
  }

  /** For /debug/proxy-status: one row per subscribed proxy (proxy-status.ts). */
  proxyStatus(): ProxyStatusRow[] {
    const now = this.o.clock.now();
    const key = this.trust?.current().key ?? null;
    const anchors = this.o.issuer ? currentAnchors(this.o.issuer) : null;
    return [...this.subs].filter((s) => s.sub).map((s) => proxyStatusRow(s, now, this.o.store.view.version, key, anchors));
  }

  /** For /debug/proxy-config: what the control plane sent each proxy with this pod ("namespace/pod"), and its reported certificate. */
  proxyConfig(pod: string): ProxyConfigDump[] {
    const anchors = this.o.issuer ? currentAnchors(this.o.issuer) : null;
    return [...this.subs].filter((s) => s.sub && `${s.sub.identity.namespace}/${s.sub.identity.pod}` === pod).map((s) => proxyConfigDump(s, anchors));
  }

  /** For /debug/health: every endpoint some proxy reports unhealthy, with its reporters. */
  debugHealth(): HealthRow[] {
    return healthRows(
      [...this.subs]
        .filter((s) => s.sub && s.healthReportedAt > 0)
        .map((s) => ({ identity: s.sub!.identity.spiffeId, pod: claimedPod(s.sub!.identity), at: s.healthReportedAt, ejections: s.ejections })),
    );
  }

  /**
   * A HealthReport replaces the reporter's previous one. Only entries for endpoints it was
   * sent are kept (health-reports.ts); the rest are counted and logged, never kept.
   */
  private onHealthReport(s: Subscriber, ejected: Parameters<typeof validateHealthReport>[0]): void {
    if (!s.sub) return; // before Subscribe: nobody to attribute it to
    const v = validateHealthReport(ejected, s.inflight ? [s.ackedView, s.inflight.view] : [s.ackedView]);
    s.ejections = v.accepted;
    s.healthReportedAt = this.o.clock.now();
    this.o.metrics.healthReports.inc({ result: v.rejected > 0 ? 'partly-rejected' : 'accepted' });
    if (v.rejected > 0) {
      this.o.metrics.healthReportRejectedEntries.inc(v.rejected);
      this.o.logger.warn('health report names endpoints the proxy cannot observe; those entries are ignored', {
        id: s.id, identity: s.sub.identity.spiffeId, rejected: v.rejected, examples: v.examples,
      });
    }
    this.countReported();
    const reporter = s.authPeer ? this.reporterOf(s, s.authPeer) : `${s.sub.identity.spiffeId} ${claimedPod(s.sub.identity)}`;
    this.o.withdrawal?.report(s.id, reporter, v.accepted);
    this.o.logger.info('health report', {
      id: s.id, identity: s.sub.identity.spiffeId, pod: claimedPod(s.sub.identity), unhealthy: v.accepted.length,
      endpoints: v.accepted.slice(0, 10).map((e) => `${e.service}:${e.servicePort} ${e.address}:${e.port} ${e.kind}${e.reason ? ` (${e.reason})` : ''}`),
    });
  }

  /**
   * Who a health report counts as (minReporters: one proxy's view is its own network path).
   * With client authentication:
   * - a pod the view knows, run by the certificate's service account: that pod, whatever
   *   certificates it holds. Certify renews by certificate as often as asked, so counting
   *   certificates let one pod be many reporters (ADV5-10);
   * - but a certificate that open streams use for several pods is one reporter (its serial),
   *   and those streams' reports are re-filed under it at once: the pod name is only a claim
   *   (a SPIFFE ID names a service account), and one certificate claiming two sibling pods
   *   must not count twice;
   * - a pod the view does not know (a source that lists no pods): the certificate.
   * But first, a certificate bound to a pod (signed for a pod-bound token, or renewed from
   * one: certify-limiter.ts certifiedPod, the pod instance's namespace, name and UID) is
   * that pod, whatever pod its streams claim: until 2026-12-07 (adv53) one pod's sidecar
   * with two certificates (Certify signs a pod five at once) claiming two sibling pods of
   * its service account was two reporters, and withdrew an endpoint mesh-wide alone.
   * Certificates bound to no pod (a bootstrap token's, `wren certs`) claiming two sibling
   * pods still count twice.
   */
  private reporterOf(s: Subscriber, peer: PeerIdentity): string {
    const certified = certifiedPod(peer.certifyState);
    if (certified !== null) return `${peer.spiffeId} certified:${certified}`;
    const id = s.sub!.identity;
    const pod = `${id.namespace}/${id.pod}`;
    const bySerial = `${peer.spiffeId} serial:${peer.serial}`;
    if (id.namespace !== peer.namespace || this.o.store.view.policy.podServiceAccounts.get(pod) !== peer.serviceAccount) return bySerial;
    let shared = false;
    for (const o of this.subs) {
      if (o === s || !o.sub || o.authPeer?.serial !== peer.serial || o.authPeer?.spiffeId !== peer.spiffeId) continue;
      if (`${o.sub.identity.namespace}/${o.sub.identity.pod}` === pod) continue;
      shared = true;
      if (o.healthReportedAt > 0) this.o.withdrawal?.report(o.id, bySerial, o.ejections);
    }
    return shared ? bySerial : `${peer.spiffeId} pod:${pod}`;
  }

  /** For /debug/trust: what the CA hands out, and what every subscribed proxy trusts and uses. */
  debugTrust(): { controlPlane: Record<string, unknown> | null; proxies: DebugTrustProxy[] } {
    const now = this.o.clock.now();
    const key = this.trust?.current().key ?? null;
    return {
      controlPlane: this.o.issuer ? { ...describeIssuerTrust(this.o.issuer), generation: this.trust!.current().generation } : null,
      proxies: [...this.subs].filter((s) => s.sub).map((s) => debugTrustProxy(s, now, key)),
    };
  }

  private onTrustChange(next: TrustPushState): void {
    const anchors = new Set(next.wire.trustAnchorFingerprints);
    this.endRemovedAnchorStreams(anchors);
    const stranded = [...this.subs].filter((s) => s.identityReport && !anchors.has(s.identityReport.report.chainRootFingerprint));
    // Removing a root that connected proxies' certificates still end at breaks their mTLS with every proxy that takes the new bundle.
    if (stranded.length > 0)
      this.o.logger.warn('the new trust bundle lacks the root that connected proxies still present certificates from', {
        code: 'TRUST_ANCHOR_STILL_IN_USE', proxies: stranded.length, example: stranded[0].sub?.identity.spiffeId, root: short(stranded[0].identityReport!.report.chainRootFingerprint),
      });
    this.o.logger.info('pushing the new trust state to proxies', { subscribers: this.subs.size, anchors: next.wire.trustAnchorFingerprints.map(short), signingRoot: short(next.wire.signingRootFingerprint), reissueSpreadMs: next.wire.reissueSpreadMs });
    for (const s of this.subs) this.pump(s);
  }

  /**
   * Ends (UNAUTHENTICATED) every authenticated stream whose certificate no longer chains to
   * an anchor of the bundle: removing a root is how a compromised one is revoked, so what
   * it vouched for must not keep receiving config until the certificate expires. A stream
   * whose recorded anchor left but that chains to another current one (the same key
   * re-issued as a new root) is kept, with that anchor recorded.
   */
  private endRemovedAnchorStreams(anchors: ReadonlySet<string>): void {
    if (!this.anchors) return;
    for (const s of [...this.subs]) {
      const a = s.authAnchor;
      if (!a || anchors.has(a.fingerprint)) continue;
      const now = this.anchors.anchorOf(a.certificate);
      if (now !== null) s.authAnchor = { fingerprint: now, certificate: a.certificate };
      else this.refuse(s, grpc.status.UNAUTHENTICATED, 'trust-anchor-removed', `the trust anchor ${short(a.fingerprint)} the client certificate chains to was removed from the trust bundle`);
    }
  }

  /**
   * Re-checks the open streams of a certificate bound to a pod whose UID changed: a pod
   * deleted and created again under its name (a StatefulSet's) is another pod, and the
   * stream its predecessor's sidecar opened (a node gone, a connection not yet found dead,
   * or a certificate copied out of the old pod) passed its check once, at its first push,
   * and kept receiving the new pod's inbound policy, and having its reports filed under it,
   * until its connection's GOAWAY or its certificate's expiry (until 2026-12-08, adv66).
   * It now ends PERMISSION_DENIED `pod-not-certified` (or what checkPodClaim finds first:
   * the new pod runs as another service account), counted and logged like a refusal at
   * Subscribe.
   *
   * Work only when the store's pod UIDs changed, and then only for the pods whose UID did
   * (PolicyView.podUidChanges): nothing per other change of the view (services, endpoints,
   * policies, labels). Without the source's list of changed pods (a directory source's
   * reload) it looks at every pod-bound stream once, a map lookup each. A pod whose UID is
   * gone (deleted, not yet created again) leaves its streams alone: its sidecar is going
   * away with it, and a pod created again under the name is checked when it appears.
   */
  private recheckPodBound(policy: PolicyView): void {
    const uids = policy.podUids;
    if (uids === this.podUidsSeen) return;
    const changes = policy.podUidChanges;
    const keys = changes !== undefined && changes.since === this.podUidsSeen ? [...changes.keys] : [...this.podBound.keys()];
    this.podUidsSeen = uids;
    if (this.podBound.size === 0) return;
    for (const key of keys) {
      const bound = this.podBound.get(key);
      const uid = uids?.get(key);
      if (!bound || uid === undefined) continue;
      for (const s of [...bound]) {
        if (s.podBound!.uid === uid) continue;
        const refused = checkPodClaim(s.authPeer!, s.sub!, policy, this.o.clientAuth!.podsAuthoritative,
          { key: certifiedPod(s.authPeer!.certifyState)!, keyedDigest: (data) => issuerSnapshot(this.o.issuer!).ca.keyedDigest(data) });
        if (refused) this.refuse(s, grpc.status.PERMISSION_DENIED, refused.reason, refused.detail);
        else s.podBound!.uid = uid; // a certificate bound to the pod's name only (no UID in its key): still that pod
      }
    }
  }

  /** Graceful shutdown: end every stream with UNAVAILABLE so proxies reconnect to another replica. */
  closeAll(): void {
    this.unsubscribe();
    this.unsubscribeTrust();
    this.anchors?.close();
    for (const s of [...this.subs]) {
      s.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane shutting down' });
      this.drop(s);
    }
  }

  private onStream(call: grpc.ServerDuplexStream<DiscoveryRequest, Buffer>): void {
    const s = newSubscriber(this.nextId++, call, this.o.clock.now());
    if (this.o.clientAuth) {
      const auth = peerIdentityOf(call, this.o.clientAuth.trustDomain, this.anchors!);
      if (!auth.ok) return this.refuse(s, grpc.status.UNAUTHENTICATED, auth.reason, auth.detail);
      s.authPeer = auth.peer;
      s.authAnchor = { fingerprint: auth.anchor, certificate: auth.certificate };
      this.armExpiry(s);
    }
    this.subs.add(s);
    this.o.metrics.subscribers.set(this.subs.size);
    call.on('data', (req: DiscoveryRequest) => this.onRequest(s, req));
    call.on('end', () => {
      this.drop(s);
      call.end();
    });
    call.on('error', () => this.drop(s));
    call.on('cancelled', () => this.drop(s));
  }

  private drop(s: Subscriber): void {
    if (s.closed) return;
    s.closed = true;
    this.expiries.delete(s);
    this.subs.delete(s);
    this.o.metrics.subscribers.set(this.subs.size);
    if (s.podBound !== null) {
      const bound = this.podBound.get(s.podBound.key);
      bound?.delete(s);
      if (bound?.size === 0) this.podBound.delete(s.podBound.key);
    }
    if (s.podKey !== null) release(this.podStreams, s.podKey);
    if (s.certKey !== null) release(this.podStreams, s.certKey);
    if (s.fleetKey !== null) release(this.fleetStreams, s.fleetKey);
    if (s.addressKey !== null) release(this.addressStreams, s.addressKey);
    // A gone proxy's report goes with it (a reconnect resends the current one).
    if (s.ejections.length > 0) this.countReported();
    this.o.withdrawal?.forget(s.id);
    this.o.tracing?.dropped(s.id);
  }

  private countReported(): void {
    let n = 0;
    for (const x of this.subs) n += x.ejections.length;
    this.o.metrics.reportedUnhealthy.set(n);
  }

  /**
   * Every refusal of a stream (client authentication, a protocol error, a bound): counted by
   * `reason` (a fixed word from this file and client-auth.ts / peer-certificate.ts, never the
   * stream's own text, so the label's values stay few), logged (identities, serial and the
   * claim clipped; never the certificate or a token), the stream ended with `code`.
   */
  private refuse(s: Subscriber, code: grpc.status, reason: string, detail: string): void {
    this.o.metrics.discoveryRefused.inc({ reason });
    this.o.logger.warn('discovery stream refused', {
      code: grpc.status[code], reason, detail, peer: s.peer,
      ...(s.authPeer ? { certificate: s.authPeer.spiffeId, serial: s.authPeer.serial } : {}),
      ...(s.sub ? { claimed: String(s.sub.identity.spiffeId).slice(0, 300), pod: claimedPod(s.sub.identity) } : {}),
    });
    s.call.emit('error', { code, details: detail });
    this.drop(s);
  }

  /**
   * Ends the stream when its client certificate expires: the proxy reconnects with the renewed
   * one. By the wall clock, looked at at least once a minute (common/wall-deadline.ts): one
   * timer of the time left ran on the monotonic clock, which stops while the host is
   * suspended, so a control plane woken after a stream's certificate had expired kept serving
   * the stream for as long again as the certificate had had left (until 2026-12-08, adv66).
   * One deadline for the whole server, not one per stream (expiry-queue.ts): a WallDeadline
   * per stream woke the control plane once a minute per stream (~167 times a second at
   * 10,000 streams; until 2026-12-08, adv68).
   */
  private armExpiry(s: Subscriber): void {
    if (s.authPeer!.notAfterMs <= this.o.clock.wallNow()) return this.refuse(s, grpc.status.UNAUTHENTICATED, 'certificate-expired', 'the client certificate has expired');
    this.expiries.add(s, s.authPeer!.notAfterMs);
  }

  private onRequest(s: Subscriber, req: DiscoveryRequest): void {
    if (s.closed) return;
    s.lastSeenAt = this.o.clock.now();
    if ('subscribe' in req && req.subscribe) {
      if (s.sub) return this.refuse(s, grpc.status.FAILED_PRECONDITION, 'subscribe-twice', 'subscribe sent twice on one stream');
      const id = req.subscribe.identity;
      if (!id || !String(id.spiffeId ?? '').startsWith('spiffe://')) return this.refuse(s, grpc.status.INVALID_ARGUMENT, 'bad-spiffe-id', 'subscribe.identity.spiffeId must be a SPIFFE ID');
      const idBytes = Buffer.byteLength(id.spiffeId);
      if (idBytes > MAX_SPIFFE_ID_BYTES)
        return this.refuse(s, grpc.status.INVALID_ARGUMENT, 'bad-spiffe-id', `subscribe.identity.spiffeId is ${idBytes} bytes; a SPIFFE ID is at most ${MAX_SPIFFE_ID_BYTES} bytes`);
      const tooLarge = subscribeTooLarge(req.subscribe);
      if (tooLarge !== null) return this.refuse(s, grpc.status.INVALID_ARGUMENT, 'subscribe-too-large', tooLarge);
      s.sub = req.subscribe;
      const refused = s.authPeer ? checkIdentityClaim(s.authPeer, req.subscribe) : null;
      if (refused) return this.refuse(s, grpc.status.PERMISSION_DENIED, refused.reason, refused.detail);
      const services = [...new Set(req.subscribe.services ?? [])].sort();
      s.filter = services.length > 0 ? new Set(services) : null;
      s.filterId = services.length > 0 ? services.join(',') : '*';
      // The stream's own words, clipped as refuse() clips them: a Subscribe may be a 4 MiB message.
      this.o.logger.info('proxy subscribed', {
        id: s.id, peer: s.peer, identity: String(id.spiffeId).slice(0, 300), pod: claimedPod(id),
        services: services.length <= 20 ? services.map((x) => String(x).slice(0, 300)) : [...services.slice(0, 20).map((x) => String(x).slice(0, 300)), `(${services.length - 20} more)`],
        authenticated: s.authPeer !== null,
      });
      if (!this.countStream(s)) return;
      this.o.tracing?.subscribed(s.id, id.spiffeId, claimedPod(id));
      return this.pump(s);
    }
    if (!s.sub) return this.refuse(s, grpc.status.FAILED_PRECONDITION, 'not-subscribed', 'the first message must be subscribe');
    if ('ack' in req && req.ack) {
      const f = s.inflight;
      if (!f || req.ack.nonce !== f.nonce) return; // stale or unknown: ignore (xDS semantics)
      s.ackedSeq = f.seq;
      s.ackedVersion = f.version;
      s.ackedView = f.view;
      s.ackedRouteNs = f.routeNs;
      if (f.policyJson !== null) s.ackedPolicyJson = f.policyJson;
      if (f.opaquePorts !== null) s.ackedOpaquePorts = f.opaquePorts;
      if (f.trustKey !== null) s.ackedTrustKey = f.trustKey;
      if (f.telemetryJson !== null) s.ackedTelemetryJson = f.telemetryJson;
      if (f.egressJson !== null) s.ackedEgressJson = f.egressJson;
      s.inflight = null;
      s.nackedSinceAck = false;
      s.forceFull = false;
      if (!f.full) this.o.metrics.pushLatency.observe(Math.max(0, this.o.clock.now() - f.committedAt) / 1000);
      return this.pump(s);
    }
    if ('nack' in req && req.nack) {
      const f = s.inflight;
      if (!f || req.nack.nonce !== f.nonce) return;
      s.inflight = null;
      s.nacks++;
      s.nackedSinceAck = true;
      // A response at the ACKed seq carries only the trust state (pump's second branch): the
      // proxy refuses that state itself. Sent again it would be NACKed again, once per round
      // trip for as long as the stream lives (a proxy whose parser rejects the CA's state, one
      // that NACKs everything); xDS resends a NACKed resource only when it changes, and so
      // does this: not on this stream until the CA's state changes.
      const refusedTrust = f.trustKey !== null && f.seq === s.ackedSeq && !f.full;
      if (refusedTrust) s.nackedTrustKey = f.trustKey;
      // The proxy's words, kept (/debug/proxies) and logged per NACK: clipped as its other reports are (reportFromWire).
      const detail = clipDetail(req.nack.errorDetail);
      s.lastNack = { version: f.version, detail, at: this.o.clock.now() };
      this.o.metrics.nacks.inc();
      this.o.logger.warn('proxy NACKed a discovery response', {
        id: s.id, identity: s.sub.identity.spiffeId, version: f.version, ackedVersion: s.ackedVersion, detail, resync: req.nack.resync,
        ...(refusedTrust ? { withheld: 'the trust state (refused on its own): not resent until it changes' } : {}),
      });
      if (req.nack.resync) s.forceFull = true;
      // `resync` asks for a full snapshot instead of a delta: sent at once for a NACKed delta.
      // A NACKed full is already that; sending it again at once made a stream that NACKs
      // every response with `resync` get the whole catalog once per round trip for as long
      // as it lived (and a NACK log line each time). It gets the next full when the view changes.
      if (req.nack.resync && !f.full) return this.pump(s);
      s.nackedSeq = f.seq;
      // A change committed while the NACKed response was in flight found the subscriber busy
      // and was not sent; pump() sends it now (and never the NACKed content again: only a
      // view newer than nackedSeq goes out).
      return this.pump(s);
    }
    // Reports are attributed to the stream's identity: with client authentication, only to the one its certificate proves.
    if (this.o.clientAuth && s.authPeer?.spiffeId !== s.sub.identity.spiffeId)
      return this.refuse(s, grpc.status.PERMISSION_DENIED, 'identity-mismatch', 'reports on a stream not bound to a certificate of this identity');
    const kind: ReportKind | null = 'health' in req && req.health ? 'health' : 'identityReport' in req && req.identityReport ? 'identity' : 'stats' in req && req.stats ? 'stats' : null;
    if (kind === null || !this.reportAllowed(s, kind)) return;
    if ('health' in req && req.health) return this.onHealthReport(s, req.health.ejected);
    if ('identityReport' in req && req.identityReport) s.identityReport = { report: reportFromWire(req.identityReport), at: this.o.clock.now() };
    if ('stats' in req && req.stats) {
      const id = s.sub.identity;
      this.o.stats?.ingest({ pod: String(id.pod).slice(0, 300), namespace: String(id.namespace).slice(0, 100), identity: id.spiffeId, workload: String(req.stats.workload || id.pod).slice(0, 300) }, req.stats);
    }
  }

  /** Takes one report of `kind` from the stream's budget (REPORT_BUDGET): false, counted and logged once per run, when there is none. */
  private reportAllowed(s: Subscriber, kind: ReportKind): boolean {
    const now = this.o.clock.now();
    const b = (s.reportBuckets[kind] ??= { tokens: this.reportBudget.burst, at: now, limited: false });
    b.tokens = Math.min(this.reportBudget.burst, b.tokens + (Math.max(0, now - b.at) * this.reportBudget.perSecond) / 1000);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      b.limited = false;
      return true;
    }
    this.o.metrics.reportsLimited.inc({ kind });
    if (!b.limited)
      this.o.logger.warn('proxy sends reports faster than its budget; they are dropped until it slows down', {
        id: s.id, peer: s.peer, identity: String(s.sub?.identity.spiffeId ?? '').slice(0, 300), kind, burst: this.reportBudget.burst, perSecond: this.reportBudget.perSecond,
      });
    b.limited = true;
    return false;
  }

  /**
   * Counts a subscribed stream against its pod, its certificate's fleet if any and, on
   * plaintext, its source address (MAX_STREAMS_PER_POD, maxStreamsPerFleet,
   * MAX_PLAINTEXT_STREAMS_PER_ADDRESS); false when it was refused. At
   * Subscribe, not at the first push: a stream's first push waits for a synced view, and
   * counted only then, streams opened while the source had not synced (a control plane
   * starting, an API server it cannot list from) were bounded by nothing, each holding its
   * Subscribe, for as long as the sync took (adv53).
   */
  private countStream(s: Subscriber): boolean {
    let key: string | null;
    let cert: string | null = null;
    let address: string | null = null;
    let fleet: string | null = null;
    if (s.authPeer) {
      key = streamsKey(s);
      fleet = certifiedFleet(s.authPeer.certifyState);
      cert = parseCertifyState(s.authPeer.certifyState ?? undefined) !== null ? certificateKey(s.authPeer) : null;
      if (cert === key) cert = null;
    } else {
      // Plaintext (no client authentication): the pod the stream claims, if any, from its
      // source address, and that address. The claim per address: a claim proves nothing, and
      // counted by the claim alone, 8 streams from anywhere claiming a pod refused that pod's
      // own sidecar for as long as they stayed open (adv53).
      address = sourceAddress(s.peer);
      key = s.sub!.identity.pod ? `claimed pod ${claimedPod(s.sub!.identity)}${address === null ? '' : ` from ${address}`}` : null;
    }
    const open = key === null ? 0 : (this.podStreams.get(key) ?? 0);
    if (key !== null && open >= MAX_STREAMS_PER_POD) {
      const unnamed = s.authPeer !== null && key === certificateKey(s.authPeer) ? ' (no pod named)' : '';
      this.refuse(s, grpc.status.RESOURCE_EXHAUSTED, 'streams-per-pod', `${key.slice(0, 300)}${unnamed} has ${open} discovery streams open, at most ${MAX_STREAMS_PER_POD}`);
      return false;
    }
    const ofCert = cert === null ? 0 : (this.podStreams.get(cert) ?? 0);
    if (cert !== null && ofCert >= MAX_STREAMS_PER_POD) {
      this.refuse(s, grpc.status.RESOURCE_EXHAUSTED, 'streams-per-pod', `${cert.slice(0, 300)} has ${ofCert} discovery streams open, at most ${MAX_STREAMS_PER_POD}`);
      return false;
    }
    const ofFleet = fleet === null ? 0 : (this.fleetStreams.get(fleet) ?? 0);
    if (fleet !== null && ofFleet >= this.maxStreamsPerFleet) {
      const what = fleet.startsWith('bootstrap-token ') ? 'bootstrap token' : "service account's tokens bound to no pod";
      this.refuse(s, grpc.status.RESOURCE_EXHAUSTED, 'streams-per-fleet',
        `the certificates of this ${what} (${fleet.slice(0, 300)}) hold ${ofFleet} discovery streams, at most ${this.maxStreamsPerFleet} (--discovery-max-streams-per-fleet)`);
      return false;
    }
    const fromAddress = address === null ? 0 : (this.addressStreams.get(address) ?? 0);
    if (address !== null && fromAddress >= MAX_PLAINTEXT_STREAMS_PER_ADDRESS) {
      this.refuse(s, grpc.status.RESOURCE_EXHAUSTED, 'streams-per-address', `${address} has ${fromAddress} plaintext discovery streams open, at most ${MAX_PLAINTEXT_STREAMS_PER_ADDRESS}`);
      return false;
    }
    if (key !== null) this.podStreams.set(key, open + 1);
    if (cert !== null) this.podStreams.set(cert, ofCert + 1);
    if (address !== null) this.addressStreams.set(address, fromAddress + 1);
    if (fleet !== null) this.fleetStreams.set(fleet, ofFleet + 1);
    s.fleetKey = fleet;
    s.podKey = key;
    s.certKey = cert;
    s.addressKey = address;
    return true;
  }

  private pump(s: Subscriber): void {
    if (s.closed || !s.sub || s.inflight || !this.o.store.ready) return;
    const view = this.o.store.view;
    if (!s.podClaimChecked && s.authPeer) {
      // On the first push, not at Subscribe: only a synced view knows every pod.
      const certified = certifiedPod(s.authPeer.certifyState);
      const refused = checkPodClaim(s.authPeer, s.sub, view.policy, this.o.clientAuth!.podsAuthoritative,
        certified === null ? null : { key: certified, keyedDigest: (data) => issuerSnapshot(this.o.issuer!).ca.keyedDigest(data) });
      if (refused) return this.refuse(s, grpc.status.PERMISSION_DENIED, refused.reason, refused.detail);
      if (certified !== null) {
        const key = `${s.authPeer.namespace}/${s.sub.identity.pod}`;
        s.podBound = { key, uid: view.policy.podUids?.get(key) };
        let bound = this.podBound.get(key);
        if (!bound) this.podBound.set(key, (bound = new Set()));
        bound.add(s);
      }
    }
    s.podClaimChecked = true;
    const trust = this.trust?.current() ?? null;
    // A trust state the proxy refused on its own (nackedTrustKey) is not due: deltas go out
    // without it, so the proxy still takes config changes. A full always carries it (contract).
    const trustDue = trust !== null && trust.key !== s.ackedTrustKey && trust.key !== s.nackedTrustKey;
    let entry: Entry;
    let policyJson: string | null = null;
    let opaquePorts: readonly number[] = [];
    let opaqueKey: string | null = null;
    let telemetryJson: string | null = null;
    let egressJson: string | null = null;
    if (view.seq !== s.ackedSeq && view.seq > s.nackedSeq) {
      entry = this.entryFor(s, view);
      const pj = this.policies.jsonFor(view.policy, s.sub.identity);
      // The opaque ports ride with the policy (InboundPolicyResource): either changing sends both.
      const op = this.policies.opaquePortsFor(view.policy, s.sub.identity);
      const ok = op.join();
      if (entry.full || pj !== s.ackedPolicyJson || ok !== s.ackedOpaquePorts) {
        policyJson = pj;
        opaquePorts = op;
        opaqueKey = ok;
      }
      const tj = this.telemetries.jsonFor(view.policy, s.sub.identity);
      if (entry.full || tj !== s.ackedTelemetryJson) telemetryJson = tj;
      const ej = this.egress.jsonFor(view.policy);
      if (entry.full || ej !== s.ackedEgressJson) egressJson = ej;
    } else if (trustDue && s.ackedSeq >= 0) {
      // Only the trust state is new: an otherwise empty delta at the version the proxy holds.
      entry = { seq: s.ackedSeq, version: s.ackedVersion, committedAt: this.o.clock.now(), nonce: `${s.ackedSeq}-${s.ackedSeq}-t${trust.generation}`, view: s.ackedView, routeNs: s.ackedRouteNs, full: false, bytes: null, response: null, withPolicy: new Map() };
    } else return;
    const withTrust = trust !== null && (entry.full || trustDue) ? trust : null;
    if (policyJson === null && telemetryJson === null && egressJson === null && withTrust === null && (!entry.bytes || !entry.response)) {
      // Nothing to send: what the proxy ACKed is what it would get now. A NACK of content
      // since superseded (the change was reverted) no longer holds it back: it is in sync.
      if (entry.seq === view.seq) s.nackedSinceAck = false;
      return;
    }
    let bytes: Buffer;
    let response: DiscoveryResponse;
    const extras = {
      ...(policyJson !== null ? { inboundPolicy: { policyJson, opaquePorts: [...opaquePorts] } } : {}),
      ...(withTrust ? { trustBundle: withTrust.wire } : {}),
      ...(telemetryJson !== null ? { telemetry: { overridesJson: telemetryJson } } : {}),
      ...(egressJson !== null ? { egress: { egressJson } } : {}),
    };
    if (entry.bytes && entry.response) {
      const key = `${policyJson ?? '-'}|${opaqueKey ?? '-'}|${withTrust?.key ?? '-'}|${telemetryJson ?? '-'}|${egressJson ?? '-'}`;
      let b = entry.withPolicy.get(key);
      if (!b) {
        const parts = [
          entry.bytes,
          ...(policyJson !== null ? [encodePolicySuffix(policyJson, opaquePorts)] : []),
          ...(withTrust ? [withTrust.suffix] : []),
          ...(telemetryJson !== null ? [encodeTelemetrySuffix(telemetryJson)] : []),
          ...(egressJson !== null ? [encodeEgressSuffix(egressJson)] : []),
        ];
        entry.withPolicy.set(key, (b = parts.length === 1 ? entry.bytes : Buffer.concat(parts)));
        if (b !== entry.bytes) this.noteCached(entry, b.length);
      }
      bytes = b;
      response = b === entry.bytes ? entry.response : { ...entry.response, ...extras };
    } else {
      // Only per-subscriber parts changed: an otherwise empty delta.
      response = { version: entry.version, nonce: entry.nonce, full: false, baseVersion: s.ackedVersion, services: [], removedServices: [], endpointDeltas: [], ...extras };
      bytes = loadDiscoveryProto().encodeResponse(response);
    }
    const max = this.o.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    if (bytes.length > max)
      return this.refuse(s, grpc.status.RESOURCE_EXHAUSTED, 'response-too-large',
        `the ${entry.full ? 'full' : 'delta'} response for this proxy is ${bytes.length} bytes, over the ${max} a discovery response may be; narrow the services it watches (discovery.services)`);
    s.inflight = { ...entry, sentAt: this.o.clock.now(), policyJson, opaquePorts: opaqueKey, trustKey: withTrust?.key ?? null, telemetryJson, egressJson };
    s.call.write(bytes);
    s.lastSent = { version: entry.version, at: s.inflight.sentAt };
    const kind = entry.full ? 'full' : 'delta';
    this.o.metrics.pushes.inc({ kind });
    this.o.metrics.pushedBytes.inc({ kind }, bytes.length);
    if (this.pushListeners.size > 0) {
      const rec: PushRecord = { subscriber: s.id, identity: s.sub.identity.spiffeId, version: entry.version, full: entry.full, bytes: bytes.length, response };
      for (const l of this.pushListeners) l(rec);
    }
  }

  private entryFor(s: Subscriber, view: StoreView): Entry {
    if (this.cacheSeq !== view.seq) {
      this.cache.clear();
      this.cached.clear();
      this.cachedBytes = 0;
      this.cacheSeq = view.seq;
    }
    const changed = s.forceFull || s.ackedSeq < 0 ? null : this.o.store.changedSince(s.ackedSeq);
    const full = changed === null;
    // Subscribers in a namespace with consumer routes see other routes than the rest (GEP-1294): their own entries.
    const ns = s.sub?.identity.namespace ?? '';
    const routeNs = view.routes.consumerNamespaces.has(ns) ? ns : '*';
    // A delta is from the view the subscriber ACKed, which its filter, seq and route namespace
    // name: two subscribers that share those share the entry. The ACKed route namespace is
    // not always the current one (a namespace's last consumer route deleted: '*' now), so
    // it is part of the key, or a subscriber would take a delta made from another's view.
    const key = `${s.filterId}|${routeNs}|${full ? 'full' : `${s.ackedSeq}|${s.ackedRouteNs}`}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const to = withRoutes(s.filter ? subset(view.services, s.filter) : view.services, view.routes, routeNs);
    let response: DiscoveryResponse | null;
    const nonce = full ? `f${view.seq}` : `${s.ackedSeq}-${view.seq}`;
    if (full) response = fullResponse(view.version, nonce, to.values());
    else {
      const keys = s.filter ? [...changed].filter((k) => s.filter?.has(k)) : changed;
      const d = diffViews(s.ackedView, to, keys);
      response = isEmptyDelta(d) ? null : { version: view.version, nonce, full: false, baseVersion: s.ackedVersion, ...d };
    }
    const entry: Entry = {
      seq: view.seq, version: view.version, committedAt: view.committedAt, nonce, view: to, routeNs, full,
      response, bytes: response ? loadDiscoveryProto().encodeResponse(response) : null, withPolicy: new Map(),
    };
    this.cache.set(key, entry);
    this.cached.set(entry, { key, bytes: 0 });
    // The key counts too: it holds the Subscribe's whole filter, up to a 4 MiB message of names
    // that may match nothing (a response of a few bytes under a key of megabytes; adv29).
    this.noteCached(entry, (entry.bytes?.length ?? 0) + key.length);
    return entry;
  }

  /**
   * Counts `n` more bytes held by a cached entry, and drops the oldest entries while the
   * cache holds more than MAX_RESPONSE_CACHE_BYTES. A dropped entry is only no longer shared:
   * a stream it is in flight on keeps it, and the next subscriber in its place computes it again.
   */
  private noteCached(entry: Entry, n: number): void {
    const c = this.cached.get(entry);
    if (!c) return; // not cached (an only-trust delta), or already dropped
    c.bytes += n;
    this.cachedBytes += n;
    for (const [old, o] of this.cached) {
      if (this.cachedBytes <= MAX_RESPONSE_CACHE_BYTES || old === entry) break;
      this.cached.delete(old);
      this.cache.delete(o.key);
      this.cachedBytes -= o.bytes;
      this.o.metrics.responseCacheEvictions.inc();
    }
  }
}

/** One fewer stream open under `key`. */
function release(counts: Map<string, number>, key: string): void {
  const left = (counts.get(key) ?? 0) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}


/**
 * What MAX_STREAMS_PER_POD counts a stream against: the pod instance its certificate was
 * signed for, when the certificate says so (a token bound to a pod got it or its chain:
 * certify-limiter.ts certifiedPod, a digest of the pod's namespace, name and UID), else the
 * pod its Subscribe names (`pod NS/NAME`), or, for a proxy that names none, its certificate.
 * The certificate's pod first: a Subscribe may name any pod of the certificate's service
 * account (client-auth.ts cannot tell which of them holds the key), so counted by the name,
 * one pod's sidecar holding 8 streams that named a sibling refused the sibling's own stream
 * for as long as it liked (it never got a config), and a StatefulSet's pod created again
 * under its name was refused while its predecessor's streams (a node gone, a connection
 * not yet found dead) still counted (adv53). The UID is in the digest: the new pod is
 * another key. `identity.pod` is optional (POD_NAME, docs/identity.md):
 * outside Kubernetes a sidecar may leave it empty, and a manifest directory checks no pod
 * it does not list (client-auth.ts), so keyed by `NS/` every pod-less sidecar of a
 * namespace shared one pod's 8 places and the ninth was refused for ever (it retries with
 * its backoff and never gets a config). Each sidecar has its own certificate (its own key,
 * its own Certify), so the bound stays one certificate's, as it was meant.
 */
function streamsKey(s: Subscriber): string {
  const certified = certifiedPod(s.authPeer!.certifyState);
  if (certified !== null) return `the pod this certificate was issued to (${certified})`;
  const pod = s.sub!.identity.pod;
  if (pod) return `pod ${s.authPeer!.namespace}/${pod}`;
  return certificateKey(s.authPeer!);
}

/**
 * A certificate's own count, which every authenticated stream with a certificate from Certify
 * (it carries the limit's state) also takes (MAX_STREAMS_PER_POD): Certify signed it for one
 * caller's key, and one sidecar holds one stream. Counted only by the pod it claims, a
 * certificate bound to no pod (a bootstrap token's) in a mesh whose source does not list the
 * pod (a manifest directory checks only the pods it lists, client-auth.ts) held 8 streams per
 * made-up pod name, any number in all, each an encoded catalog (adv53; adv15 measured 500
 * streams at 250 MiB). Not a certificate from files (`wren certs`, no state): one may be
 * mounted into every replica of a workload, and those count by pod only, as before.
 */
function certificateKey(peer: PeerIdentity): string {
  return `certificate ${peer.spiffeId} serial ${peer.serial}`;
}

/** Why a Subscribe is over MAX_SUBSCRIBE_SERVICES or MAX_SUBSCRIBE_LABELS, or null. Counted as they arrive, nothing copied. */
function subscribeTooLarge(sub: Subscribe): string | null {
  const services = Array.isArray(sub.services) ? sub.services.length : 0;
  if (services > MAX_SUBSCRIBE_SERVICES) return `subscribe.services names ${services} services, at most ${MAX_SUBSCRIBE_SERVICES}; watch every service (an empty list) instead`;
  const labels = sub.identity?.labels;
  let n = 0;
  if (labels && typeof labels === 'object') for (const _ in labels) if (++n > MAX_SUBSCRIBE_LABELS) return `subscribe.identity.labels has more than ${MAX_SUBSCRIBE_LABELS} labels`;
  return null;
}

/**
 * At most this much of a NACK's error_detail is kept and logged. A proxy's own details are a
 * few hundred characters (the parser's message, discovery-client.ts); the field was taken
 * whole (up to the 4 MiB a gRPC message may hold), stored per stream and written to the log
 * on every NACK, and a NACK with `resync` is answered with a full snapshot, so one stream
 * could log megabytes per round trip.
 */
export const MAX_NACK_DETAIL_CHARS = 2048;

/**
 * A stream's claimed pod as `namespace/pod`, clipped as refuse() clips it, for what is logged,
 * traced or counted as a health reporter. Without client authentication (and with a source
 * that lists no pods) the claim is only checked to be a string: a Subscribe may name a pod of
 * megabytes, and every HealthReport's log line, the subscription's span and each withdrawal's
 * reporters carried it whole (adv29). Names in Kubernetes are at most 253 characters.
 */
function claimedPod(id: { readonly namespace: string; readonly pod: string }): string {
  return `${String(id.namespace ?? '').slice(0, 100)}/${String(id.pod ?? '').slice(0, 300)}`;
}

function clipDetail(v: unknown): string {
  const d = String(v ?? '');
  return d.length <= MAX_NACK_DETAIL_CHARS ? d : `${d.slice(0, MAX_NACK_DETAIL_CHARS)}... (${d.length - MAX_NACK_DETAIL_CHARS} more characters)`;
}

/** The services with the routes in force for subscribers in `ns` ('*': a namespace without consumer routes). Unrouted services stay the same objects. */
function withRoutes(services: ReadonlyMap<string, Service>, routes: RouteView, ns: string): ReadonlyMap<string, Service> {
  if (routes.byService.size === 0) return services;
  let out: Map<string, Service> | null = null;
  for (const [key, r] of routes.byService) {
    const svc = services.get(key);
    if (!svc) continue;
    const list = routesFor(routes, key, ns);
    if (list.length === 0 && r.producer.length === 0) continue;
    out ??= new Map(services);
    out.set(key, Object.freeze({ ...svc, routes: list }));
  }
  return out ?? services;
}

function subset(all: ReadonlyMap<string, Service>, keys: ReadonlySet<string>): Map<string, Service> {
  const out = new Map<string, Service>();
  for (const k of keys) {
    const s = all.get(k);
    if (s) out.set(k, s);
  }
  return out;
}
