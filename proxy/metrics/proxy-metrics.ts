import { registerLogDrops } from '../../common/log-drops-metric.js';
import { Counter, Gauge, Histogram, Registry } from './prom.js';
import { registerProcessMetrics } from './process-metrics.js';
import { flushBuckets } from './request-series.js';
import { REQUEST_LABELS, TCP_LABELS, WorkloadLabels, type RequestLabel, type TcpLabel, type TcpLabels } from './workload-labels.js';
import type { SplicedBytes } from '../net/tcp-tunnel.js';

/** Istio's default buckets for istio_request_duration_milliseconds. */
const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's byte-size buckets (powers of ten, 1 B to 10 MB) for istio_request_bytes / istio_response_bytes. */
const BYTE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000];

export type Direction = 'inbound' | 'outbound';

/**
 * The proxy's metrics, one registry per proxy instance. Names follow Istio's standard
 * metrics where the meaning matches (istio_requests_total, istio_request_duration_milliseconds,
 * istio_tcp_*) with Istio's standard labels (workload-labels.ts), so Istio's dashboards and
 * Kiali's queries work; Wren-specific ones are prefixed wren_ and keep `direction`.
 * `defaultMetrics` adds the process metrics (process-metrics.ts).
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  /** Istio's standard metrics (workload-labels.ts): labelled by reporter, not direction. */
  readonly requests: Counter<RequestLabel>;
  readonly duration: Histogram<RequestLabel>;
  readonly requestBytes: Histogram<RequestLabel>;
  readonly responseBytes: Histogram<RequestLabel>;
  readonly activeStreams: Gauge<'direction'>;
  /**
   * Requests in flight by direction (record-metrics adds and subtracts), which
   * wren_active_streams shows when scraped; a direction appears once it has seen a request.
   */
  readonly inFlight: { inbound?: number; outbound?: number } = {};
  readonly tcpOpened: Counter<TcpLabel>;
  readonly tcpClosed: Counter<TcpLabel>;
  readonly tcpSent: Counter<TcpLabel>;
  readonly tcpReceived: Counter<TcpLabel>;
  /** This proxy's workload and the label sets built from it (source outbound, destination inbound). */
  readonly local: WorkloadLabels;
  readonly detect: Counter<'direction' | 'result'>;
  readonly passthrough: Counter<'reason'>;
  /** Egress control (proxy/egress): traffic to an undeclared destination refused in REGISTRY_ONLY, by protocol (http, tls, tcp). */
  readonly egressRefused: Counter<'protocol'>;
  readonly egressTlsPoolsRetired: Counter<'reason'>;
  readonly proxyErrors: Counter<'direction' | 'code'>;
  readonly peerConnections: Counter<'kind'>;
  readonly inboundHealthChecks: Counter<'kind' | 'response_code'>;
  /** A connection or stream limit fired (docs/security.md): timeouts, caps, rapid-reset budget, peer keepalive. */
  readonly limits: Counter<'direction' | 'limit'>;
  /** HTTPRoute RequestMirror copies by result (routing/mirror.ts). */
  readonly routeMirrors: Counter<'result'>;
  readonly inboundHealthCheckMarked: Counter<'source_principal' | 'probe_shape'>;
  /** Faults the outbound side injected (TrafficPolicy `fault`), kind="delay" or "abort". */
  readonly faultsInjected: Counter<'kind'>;
  /** Inbound requests refused by a RateLimitPolicy, by the bucket that refused: total, route, identity, override. */
  readonly rateLimited: Counter<'scope'>;
  /** The app's kubelet probes the sidecar ran (proxy/admin/app-prober.ts), by `<container>/<kind>` and result. */
  readonly appProbes: Counter<'probe' | 'result'>;
  private stopProcessMetrics: () => void = () => undefined;
  /** Opaque TCP connections open now (openTcpFlow until closeTcpFlow). */
  private readonly openTcp = new Set<TcpFlow>();

  constructor(opts: { defaultMetrics?: boolean; local?: WorkloadLabels } = {}) {
    const registers = [this.registry];
    registerLogDrops(this.registry);
    this.local = opts.local ?? new WorkloadLabels({ name: '', namespace: '', app: '', version: '' }, () => '');
    const labelNames = REQUEST_LABELS;
    const tcp = TCP_LABELS;
    this.requests = new Counter({ name: 'istio_requests_total', help: 'HTTP/gRPC requests handled, with Istio\'s standard labels (reporter source: outbound; destination: inbound)', labelNames, registers });
    this.duration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Request duration (ms): from the request\'s first byte to the response\'s last byte, as Istio measures it',
      labelNames,
      buckets: DURATION_BUCKETS_MS,
      registers,
      // The bucket counts request-series.ts holds back, added before every read.
      collect: flushBuckets,
    });
    this.requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'HTTP request body sizes (bytes)', labelNames, buckets: BYTE_BUCKETS, registers, collect: flushBuckets });
    this.responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'HTTP response body sizes (bytes)', labelNames, buckets: BYTE_BUCKETS, registers, collect: flushBuckets });
    const inFlight = this.inFlight;
    this.activeStreams = new Gauge({
      name: 'wren_active_streams',
      help: 'HTTP requests/streams in flight',
      labelNames: ['direction'],
      registers,
      // Counted per request in plain numbers (inFlight), copied in when scraped: no label hashing per request.
      collect(this: Gauge<'direction'>) {
        for (const direction of ['inbound', 'outbound'] as const) if (inFlight[direction] !== undefined) this.set({ direction }, inFlight[direction]);
      },
    });
    this.tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Opaque TCP connections opened', labelNames: tcp, registers });
    this.tcpClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'Opaque TCP connections closed', labelNames: tcp, registers });
    // The bytes of connections still open are added when the counters are read (TcpFlow).
    const openFlows = this.openTcp;
    const addOpen = () => {
      for (const f of openFlows) f.report();
    };
    this.tcpSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent to the client side of opaque TCP connections (the response direction), open connections included', labelNames: tcp, registers, collect: addOpen });
    this.tcpReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client side of opaque TCP connections (the request direction), open connections included', labelNames: tcp, registers, collect: addOpen });
    this.detect = new Counter({ name: 'wren_protocol_detect_total', help: 'Protocol detection results (http1, http2, opaque, timeout: undecided within protocol.detectTimeoutMs, nothing or only a prefix of a request line or preface sent, opaque-port; inbound port also tls, closed)', labelNames: ['direction', 'result'], registers });
    this.passthrough = new Counter({ name: 'wren_passthrough_connections_total', help: 'Connections to unknown destinations passed through as plain TCP', labelNames: ['reason'], registers });
    this.egressRefused = new Counter({ name: 'wren_egress_refused_total', help: 'Outbound traffic to destinations no ExternalService declares, refused in REGISTRY_ONLY mode (http: 502 egress-refused; tls, tcp: connection closed)', labelNames: ['protocol'], registers });
    this.egressTlsPoolsRetired = new Counter({ name: 'wren_egress_tls_pools_retired_total', help: 'TLS origination pools retired (idle connections closed, busy ones after their exchange): policy = their sni/CA no longer declared by any ExternalService, limit = over 128 pools, the least recently used', labelNames: ['reason'], registers });
    this.proxyErrors = new Counter({ name: 'wren_proxy_errors_total', help: 'Errors the proxy answered for, by stable code', labelNames: ['direction', 'code'], registers });
    this.peerConnections = new Counter({ name: 'wren_peer_connections_total', help: 'Connections opened to peers (mtls or plaintext)', labelNames: ['kind'], registers });
    this.inboundHealthChecks = new Counter({
      name: 'wren_inbound_health_checks_total',
      help: 'Active health checks received from peer sidecars over mTLS (kept out of istio_requests_total / istio_tcp_*), by kind and response code',
      labelNames: ['kind', 'response_code'],
      registers,
    });
    this.limits = new Counter({
      name: 'wren_limit_exceeded_total',
      help: 'Connections and streams closed by a limit (request-headers-timeout, idle-connection-timeout, stream-idle-timeout, delayed-close-timeout (an HTTP/1.1 client did not close its side, or read our last bytes, in time after we ended ours), tls-handshake-timeout (an inbound mTLS handshake not finished within limits.requestHeadersTimeoutMs), max-connections, max-concurrent-streams (a stream past limits.maxConcurrentStreams refused, on the frame-level HTTP/2 server and the mesh multiplexer), premature-resets, max-streams-per-caller, peer-keepalive-timeout, app-keepalive-timeout (the HTTP/2 session to the app did not answer a PING), peer-metadata-values, request-series-per-peer: a request counted in the overflow series of its peer (response_code="unknown"), which already has 256 (code, gRPC status, flags) series, stats-report-edges: edges left out of a StatsReport, stats-report-bytes: edges left out of a StatsReport to keep it within 2 MiB encoded, mesh-http1-connections-per-peer and mesh-http2-streams-per-peer: a request waited for a virtual connection to a peer sidecar, rate-limit-identity-buckets, shared-cluster-slots: a cluster counting its limits in its own worker, shared-outlier-slots: an endpoint whose outlier detection stays in its own worker (no room in the shared table), worker-shutdown-timeout: a listener worker terminated because it had not closed in time, worker-apply-timeout (direction discovery): a config snapshot NACKed because a listener worker had not answered it within limits.workerApplyTimeoutMs, first-config-timeout (direction discovery): no config from the control plane within discovery.firstConfigTimeoutMs, the proxy reported ready without one, health-report-endpoints (direction discovery): unhealthy endpoints left out of a HealthReport past the 10000 the control plane keeps, jwks-fetch-timeout: a JWKS fetch gave up at requestAuthn.jwksFetchTimeoutMs, jwt-cache-size: a verified token dropped from a full cache of requestAuthn.jwtCacheSize (the least recently used), client-hello-timeout: egress control (REGISTRY_ONLY) did not get a whole TLS ClientHello within protocol.detectTimeoutMs, the connection matched as if it had no SNI, detect-timeout (direction inbound): a plaintext connection or a peer\'s CONNECT stream to a port not declared opaque sent the start of an HTTP request line or preface and nothing decisive within protocol.detectTimeoutMs, closed rather than spliced unparsed to the app)',
      labelNames: ['direction', 'limit'],
      registers,
    });
    // Per caller: the marker is set by a peer, so a peer marking requests that are not
    // probes (counted as requests all the same) shows here. Callers are mesh identities.
    this.inboundHealthCheckMarked = new Counter({
      name: 'wren_inbound_health_check_marked_total',
      help: 'Inbound requests and CONNECT streams carrying wren-health-check, by caller identity and whether they have a probe\'s shape (only those are counted apart from istio_requests_total)',
      labelNames: ['source_principal', 'probe_shape'],
      registers,
    });
    this.faultsInjected = new Counter({ name: 'wren_faults_injected_total', help: 'Faults injected into outbound requests (TrafficPolicy fault), by kind (delay, abort)', labelNames: ['kind'], registers });
    this.rateLimited = new Counter({
      name: 'wren_rate_limited_total',
      help: 'Inbound requests refused with 429 / RESOURCE_EXHAUSTED by a RateLimitPolicy, by the bucket that refused (total, route, identity, override)',
      labelNames: ['scope'],
      registers,
    });
    this.routeMirrors = new Counter({
      name: 'wren_route_mirror_requests_total',
      help: 'Requests copied by an HTTPRoute / GRPCRoute RequestMirror filter, by result (sent, failed, timeout, body-too-large, no-target, upgrade: not mirrored)',
      labelNames: ['result'],
      registers,
    });
    this.appProbes = new Counter({
      name: 'wren_app_probes_total',
      help: 'The app\'s kubelet probes run by the sidecar for GET /app-health/<container>/<kind> on the metrics port, by probe (<container>/<livez|readyz|startupz>) and result (success, failure, timeout)',
      labelNames: ['probe', 'result'],
      registers,
    });
    this.local.onPeerValuesLimit = () => this.limits.inc({ direction: 'inbound', limit: 'peer-metadata-values' });
    const outcomesLimit = { inbound: { direction: 'inbound', limit: 'request-series-per-peer' }, outbound: { direction: 'outbound', limit: 'request-series-per-peer' } } as const;
    this.local.onOutcomesLimit = (direction) => this.limits.inc(outcomesLimit[direction]);
    if (opts.defaultMetrics) this.stopProcessMetrics = registerProcessMetrics(this.registry);
  }

  /**
   * An opaque TCP connection is open (its upstream connected): counted in
   * istio_tcp_connections_opened_total, and its bytes (`bytes`, the splice's live counts)
   * reach the byte counters while it is open, at every read of them, not only when it
   * closes. Istio's stats filter reports a connection's bytes periodically
   * (tcp_reporting_duration) for the same reason: a connection that lives for hours (a
   * database pool, a message broker, a WebSocket-like stream) would otherwise show no
   * traffic at all until it closes, then its whole life's bytes in one scrape.
   */
  openTcpFlow(labels: TcpLabels, bytes: SplicedBytes): TcpFlow {
    this.tcpOpened.inc(labels);
    const f = new TcpFlow(this, labels, bytes);
    this.openTcp.add(f);
    return f;
  }

  /**
   * An opaque TCP connection that could not be opened (no route, no endpoint, connect
   * failure, the app's port closed...): counted opened and closed at once with its flag
   * (`response_flags`: NR, UH, UF, UO, URX...), as Istio's stats filter reports a connection
   * that closes before its peer is known (opened and closed at its end, with Envoy's flags),
   * so a TCP service whose endpoints all refuse shows its failures, not nothing.
   */
  tcpFailed(labels: TcpLabels, flags: string): void {
    const l = flags === labels.response_flags ? labels : { ...labels, response_flags: flags };
    this.tcpOpened.inc(l);
    this.tcpClosed.inc(l);
  }

  /** The connection has closed: its last bytes counted, istio_tcp_connections_closed_total. */
  closeTcpFlow(f: TcpFlow): void {
    if (!this.openTcp.delete(f)) return;
    f.report();
    this.tcpClosed.inc(f.labels);
  }

  /** Stops the process metrics' event-loop monitor and GC observer. */
  close(): void {
    this.stopProcessMetrics();
  }
}

/** One open opaque TCP connection's byte counts, and what of them the counters have. */
export class TcpFlow {
  private received = 0;
  private sent = 0;

  constructor(
    private readonly metrics: ProxyMetrics,
    readonly labels: TcpLabels,
    private readonly bytes: SplicedBytes,
  ) {}

  /** Adds the bytes carried since the last report (client to upstream: received; back: sent). */
  report(): void {
    const { aToB, bToA } = this.bytes;
    if (aToB > this.received) {
      this.metrics.tcpReceived.inc(this.labels, aToB - this.received);
      this.received = aToB;
    }
    if (bToA > this.sent) {
      this.metrics.tcpSent.inc(this.labels, bToA - this.sent);
      this.sent = bToA;
    }
  }
}
