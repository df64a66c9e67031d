import { Counter, Gauge, Histogram, Registry } from './prom.js';
import { registerProcessMetrics } from './process-metrics.js';

export type Direction = 'inbound' | 'outbound';

/**
 * The proxy's metrics, one registry per proxy instance. Names follow Istio's standard
 * metrics where the meaning matches (istio_requests_total, istio_request_duration_milliseconds,
 * istio_tcp_*), so existing dashboards work; Wren-specific ones are prefixed wren_.
 * `defaultMetrics` adds the process metrics (process-metrics.ts).
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'direction' | 'destination_service' | 'response_code' | 'grpc_response_status' | 'response_flags' | 'connection_security_policy'>;
  readonly duration: Histogram<'direction' | 'destination_service' | 'response_code'>;
  readonly activeStreams: Gauge<'direction'>;
  readonly tcpOpened: Counter<'direction' | 'destination_service'>;
  readonly tcpClosed: Counter<'direction' | 'destination_service'>;
  readonly tcpSent: Counter<'direction' | 'destination_service'>;
  readonly tcpReceived: Counter<'direction' | 'destination_service'>;
  readonly detect: Counter<'direction' | 'result'>;
  readonly passthrough: Counter<'reason'>;
  readonly proxyErrors: Counter<'direction' | 'code'>;
  readonly peerConnections: Counter<'kind'>;
  readonly inboundHealthChecks: Counter<'kind' | 'response_code'>;
  /** A connection or stream limit fired (docs/security.md): timeouts, caps, rapid-reset budget, peer keepalive. */
  readonly limits: Counter<'direction' | 'limit'>;
  readonly inboundHealthCheckMarked: Counter<'source_principal' | 'probe_shape'>;
  private stopProcessMetrics: () => void = () => undefined;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'istio_requests_total',
      help: 'HTTP/gRPC requests handled, by direction, destination service and response code',
      labelNames: ['direction', 'destination_service', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'],
      registers,
    });
    this.duration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Time from request start to response headers (ms)',
      labelNames: ['direction', 'destination_service', 'response_code'],
      buckets: [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000],
      registers,
    });
    this.activeStreams = new Gauge({ name: 'wren_active_streams', help: 'HTTP requests/streams in flight', labelNames: ['direction'], registers });
    this.tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Opaque TCP connections opened', labelNames: ['direction', 'destination_service'], registers });
    this.tcpClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'Opaque TCP connections closed', labelNames: ['direction', 'destination_service'], registers });
    this.tcpSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent to the client side of opaque TCP connections', labelNames: ['direction', 'destination_service'], registers });
    this.tcpReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client side of opaque TCP connections', labelNames: ['direction', 'destination_service'], registers });
    this.detect = new Counter({ name: 'wren_protocol_detect_total', help: 'Protocol detection results (http1, http2, opaque, timeout, opaque-port)', labelNames: ['direction', 'result'], registers });
    this.passthrough = new Counter({ name: 'wren_passthrough_connections_total', help: 'Connections to unknown destinations passed through as plain TCP', labelNames: ['reason'], registers });
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
      help: 'Connections and streams closed by a limit (request-headers-timeout, idle-connection-timeout, stream-idle-timeout, max-connections, premature-resets, max-streams-per-caller, peer-keepalive-timeout)',
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
    if (opts.defaultMetrics) this.stopProcessMetrics = registerProcessMetrics(this.registry);
  }

  /** Stops the process metrics' event-loop monitor and GC observer. */
  close(): void {
    this.stopProcessMetrics();
  }
}
