import { createServer as createNetServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { Duplex } from 'node:stream';
import type { HttpService, ProxyRequest } from '../http/exchange.js';
import { H1Server } from '../http/h1-server.js';
import { attachH2Handler, H2_HEADER_HARD_CAP_FACTOR, H2_SERVER_MAX_FIELDS, nodeMalformed, socketSource } from '../http/h2-server.js';
import { detectProtocol, detectProtocolTaking, type Detected } from '../net/detect-protocol.js';
import { putBack } from '../net/peek.js';
import { originalDst, type OriginalDst } from '../net/original-dst.js';
import { splice, type SpliceIdle } from '../net/tcp-tunnel.js';
import { CLIENT_CANCELLED_LABEL, responseFlag, toProxyError, type ProxyError } from '../errors/proxy-error.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { RouteTable, Route, Destination } from './route-table.js';
import { tcpRequest } from './tcp-request.js';
import { listenDualStack } from '../net/listen-dual-stack.js';
import type { ListenOptions } from '../../common/listen.js';
import type { ProxyLimits } from '../config/proxy-config.js';
import type { ListenerConnections } from '../net/shared-admission.js';
import { guardH2Session, type LimitName } from '../http/h2-session-guard.js';
import { H2ServerSession } from '../h2/h2-server-session.js';
import type { OpenPassthroughs } from '../egress/open-passthroughs.js';
import type { EgressPolicy, ExternalDestination } from '../egress/egress-policy.js';
import { peekSni } from '../egress/peek-sni.js';
import type { AccessLog } from '../access-log/access-log.js';
import { refusalReporters } from '../access-log/refusal-reporters.js';
import { endpointOf, tcpEntry, tcpFlagsOf, type TcpFacts } from '../access-log/entry.js';
import { stateOf } from '../layers/request-state.js';
import { TcpConnector } from '../net/connector.js';
import { endpointKey, type Endpoint, type Protocol } from '../../contract/model.js';
import { Cancel } from '../../common/cancel.js';
import { LiveSet } from '../../common/live-set.js';

/** Istio's mesh-wide connectTimeout, which its PassthroughCluster uses too. */
const DEFAULT_PASSTHROUGH_CONNECT_TIMEOUT_MS = 10_000;

export interface OutboundDeps {
  readonly address: string;
  /** Also bound for IPv6 on the same port when set (proxy/net/listen-dual-stack.ts). */
  readonly ipv6Address?: string;
  readonly port: number;
  readonly detectTimeoutMs: number;
  readonly opaquePorts: ReadonlySet<number>;
  readonly maxHeaderBytes: number;
  /** Timeouts, the connection cap and the rapid-reset budget (docs/security.md). */
  readonly limits: ProxyLimits;
  /** The server for detected h2c (protocol.outboundHttp2): the frame-level one (proxy/h2/, default) or node:http2. */
  readonly http2Server?: 'frames' | 'node';
  /** Its connections open for the sidecar (every listener worker's), against limits.maxConnectionsPerListener. */
  readonly connections: ListenerConnections;
  readonly http: HttpService;
  /** The opaque TCP pipeline (tcp-stack.ts): a connection in, its upstream byte stream out. */
  readonly tcp: HttpService;
  readonly routes: () => RouteTable;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly originalDst?: (s: Socket) => OriginalDst | undefined;
  /** Egress control (proxy/egress); absent: every unknown destination passes through (ALLOW_ANY). */
  readonly egress?: () => EgressPolicy;
  /** The connections egress control let through, judged again when the egress settings change. */
  readonly passthroughs?: OpenPassthroughs;
  /** For the line of a connection egress control refused. */
  readonly accessLog?: AccessLog;
  /** Connect timeout of a passed-through connection (config egress.connectTimeoutMs; default 10 s, Istio's connectTimeout). */
  readonly passthroughConnectTimeoutMs?: number;
}

/**
 * The outbound listener takes plaintext from the local app. Per connection:
 * original destination -> opaque port or detection -> HTTP/1 or HTTP/2 servers (whose
 * requests go through the outbound HTTP layers) or an opaque TCP tunnel. Connections
 * to destinations the mesh does not know pass through untouched to where they were going.
 */
export class OutboundListener {
  private readonly server: Server;
  private readonly h1: H1Server;
  private readonly h2: Http2Server;
  private readonly origDsts = new WeakMap<Socket, Destination>();
  /** Not Sets: a long-lived Set keeps the connections that left for the scavenger (common/live-set.ts). */
  private readonly sockets = new LiveSet<Socket>();
  /** Frame-level HTTP/2 sessions (http2Server 'frames'): told to drain (GOAWAY) on close. */
  private readonly h2Sessions = new LiveSet<H2ServerSession>();
  /** node:http2 sessions (http2Server 'node'): told to drain (GOAWAY) likewise. */
  private readonly nodeH2Sessions = new LiveSet<ServerHttp2Session>();
  private readonly onLimit: (limit: LimitName) => void;
  /** A ClientHello egress control waited for did not come whole within protocol.detectTimeoutMs. */
  private readonly onHelloTimeout = (): void => this.d.metrics.limits.inc({ direction: 'outbound', limit: 'client-hello-timeout' });
  /** Every tunnel's idle bound (limits.tcpIdleTimeoutMs), one object for all of them. */
  private readonly tcpIdle: SpliceIdle;
  /** A request its HTTP server answered before the layers (400/431/501): wren_proxy_errors_total{direction="outbound",code}. */
  /** An HTTP/2 request refused before the layers (h2-server.ts, h2-server-session.ts): counted and logged. */
  private readonly onClientError: (e: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst'], status?: number) => void;
  private h2Dst: Destination | undefined;
  /** Passed-through connections: a new socket each, with the connect timeout (net/connector.ts). */
  private readonly passthroughConnector: TcpConnector;
  /** Opaque tunnels and passthroughs open (connecting or spliced): the drain waits for them (drain()). */
  private tunnels = 0;

  constructor(private readonly d: OutboundDeps) {
    const origDstOf = (s: Socket) => this.origDsts.get(s);
    const L = d.limits;
    const onLimit = (limit: LimitName) => d.metrics.limits.inc({ direction: 'outbound', limit });
    this.onLimit = onLimit;
    this.tcpIdle = { ms: L.tcpIdleTimeoutMs, clock: d.clock, fired: onLimit };
    // A request refused before the layers (the HTTP/1.1 codec's 400/431/501, the HTTP/2
    // servers' 400/431 and malformed streams): counted and logged the same way for both.
    const refused = refusalReporters('outbound', d.metrics, d.accessLog);
    this.onClientError = refused.h2;
    // HTTP/1.1 upgrades (WebSocket) go through the outbound layers like any request (h1-upgrade-server.ts).
    this.h1 = new H1Server({
      service: d.http, maxHeaderBytes: d.maxHeaderBytes, clock: d.clock, origDstOf,
      headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs, onLimit,
      delayedCloseMs: L.delayedCloseTimeoutMs,
      // A request the codec refused (400/431/501 from the error table) never reaches the layers that count errors.
      onClientError: refused.h1,
      onHeadersTimeout: refused.headersTimeout,
      // An upgrade's tunnel after the 101 is bound as the opaque ones are.
      tunnelIdle: this.tcpIdle,
    });
    this.h2 = createH2Server({ maxHeaderListPairs: H2_SERVER_MAX_FIELDS, settings: { maxConcurrentStreams: L.maxConcurrentStreams, maxHeaderListSize: d.maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR, initialWindowSize: L.http2InitialStreamWindowBytes } });
    this.h2.on('session', (s) => {
      s.on('connect', () => s.setLocalWindowSize(L.http2InitialConnectionWindowBytes));
      const entry = this.nodeH2Sessions.add(s);
      s.once('close', () => this.nodeH2Sessions.delete(entry));
      // The app is the untrusted side here: its connections carry the rapid-reset budget.
      // Requests see the session's socket, a Proxy around the accepted one (node:http2), so
      // the destination is filed under it too; the session is created synchronously by
      // emit('connection') in serve(), which sets h2Dst for just that call.
      if (this.h2Dst) this.origDsts.set(s.socket as Socket, this.h2Dst);
      guardH2Session(s, {
        clock: d.clock, onLimit, prematureResets: L.prematureResets,
        headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs,
        maxConcurrentStreams: L.maxConcurrentStreams,
        // Malformed streams nghttp2 reset itself: counted and logged as the frame-level server's (h2-server-session.ts).
        onUnseenStreams: () => this.onClientError(nodeMalformed(), socketSource(s.socket, ''), this.origDsts.get(s.socket as Socket), 0),
      });
    });
    // Its 431s (limits.maxHeaderBytes) are answered before the layers: counted as the HTTP/1.1 server's are.
    attachH2Handler(this.h2, { service: d.http, clock: d.clock, origDstOf, maxHeaderBytes: d.maxHeaderBytes, onClientError: this.onClientError });
    // allowHalfOpen: a client's FIN must not end our side at once, or a TCP client that
    // half-closes after its request (`nc -N`, shutdown(SHUT_WR)) loses the reply; the
    // tunnel relays the FIN instead (splice), and the HTTP servers handle it themselves.
    this.server = createNetServer({ noDelay: true, allowHalfOpen: true }, (s) => void this.accept(s));
    this.passthroughConnector = new TcpConnector({ clock: d.clock });
  }

  /** `reusePort` when worker threads share the port (proxy/workers). */
  listen(opts: ListenOptions = {}): Promise<AddressInfo> {
    return listenDualStack(this.server, this.d.port, this.d.address, this.d.ipv6Address ?? '', this.d.logger, opts);
  }

  private async accept(socket: Socket): Promise<void> {
    if (!this.track(socket)) return;
    const dst = (this.d.originalDst ?? originalDst)(socket);
    if (dst) this.origDsts.set(socket, dst);
    const route = dst ? this.d.routes().byAddress(dst.address, dst.port) : undefined;
    if (dst && !route) {
      if (this.d.egress) return this.egress(socket, dst, this.d.egress());
      this.passthrough(socket, dst, undefined, this.d.clock.now(), undefined);
      return;
    }
    await this.serve(socket, route, dst, undefined);
  }

  /**
   * A connection to an upstream listener (proxy config `upstreams`, Consul's explicit
   * upstreams): handled exactly as if its original destination were the upstream's
   * service port, so detection, routing, mTLS and metrics are the redirected path's.
   * `protocol`, when the upstream declares one, overrides the service port's and the
   * opaque-port list.
   */
  async acceptUpstream(socket: Socket, upstream: Destination, protocol: Protocol | undefined): Promise<void> {
    if (!this.track(socket)) return;
    this.origDsts.set(socket, upstream);
    await this.serve(socket, this.d.routes().byDestination(upstream), upstream, protocol);
  }

  /**
   * Counts the connection against the listener's cap (Envoy's per-listener max
   * connections), for the sidecar: with listener workers, every worker's connections to
   * this listener (and to the explicit upstream listeners, which hand theirs to it) count.
   * False: refused and closed.
   */
  private track(socket: Socket): boolean {
    if (!this.d.connections.take()) {
      this.d.metrics.limits.inc({ direction: 'outbound', limit: 'max-connections' });
      socket.destroy();
      return false;
    }
    const entry = this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(entry);
      this.d.connections.release();
    });
    socket.on('error', (e) => this.d.logger.debug('outbound client socket error', { error: e }));
    return true;
  }

  /**
   * Opaque port (this proxy's list, or the destination pods' own declaration pushed with the
   * endpoints) or declared protocol, else detection; then the HTTP servers or a TCP tunnel.
   */
  private async serve(socket: Socket, route: Route | undefined, dst: Destination | undefined, declared: Protocol | undefined): Promise<void> {
    const proto = declared ?? route?.port.protocol;
    const opaque =
      proto === 'opaque' ||
      (declared === undefined && ((dst !== undefined && this.d.opaquePorts.has(dst.port)) || (route !== undefined && this.d.routes().opaqueByEndpoints(route))));
    if (opaque) {
      this.d.metrics.detect.inc({ direction: 'outbound', result: 'opaque-port' });
      this.tcp(socket, dst);
      return;
    }
    let detected: Detected;
    let head: Buffer | undefined;
    if (proto === 'http1') detected = 'http1';
    else if (proto === 'http2' || proto === 'grpc') detected = 'http2';
    else {
      // The bytes detection read go to the HTTP/1.1 connection as they are; anything else gets them put back.
      const p = await detectProtocolTaking(socket, this.d.detectTimeoutMs, this.d.clock);
      detected = p.result;
      head = p.head;
      if (detected !== 'http1') putBack(socket, head);
    }
    this.d.metrics.detect.inc({ direction: 'outbound', result: detected });
    if (detected === 'http1') {
      this.h1.serve(socket, head);
    } else if (detected === 'http2' && this.d.http2Server === 'frames') {
      this.serveFrames(socket);
    } else if (detected === 'http2') {
      this.h2Dst = dst;
      try {
        this.h2.emit('connection', socket);
      } finally {
        this.h2Dst = undefined;
      }
    } else {
      this.tcp(socket, dst);
    }
  }

  /** h2c on the frame-level server (proxy/h2/h2-server-session.ts), with the session guard's limits built in. */
  private serveFrames(socket: Socket): void {
    const d = this.d;
    const L = d.limits;
    const s = new H2ServerSession(socket, {
      service: d.http, clock: d.clock,
      maxConcurrentStreams: L.maxConcurrentStreams, streamWindowBytes: L.http2InitialStreamWindowBytes, connectionWindowBytes: L.http2InitialConnectionWindowBytes,
      maxHeaderBytes: d.maxHeaderBytes, hardCapBytes: d.maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR,
      headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs,
      // The app is the untrusted side here: its connections carry the rapid-reset budget.
      prematureResets: L.prematureResets,
      onLimit: this.onLimit,
      onClientError: this.onClientError,
      source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: '' },
      origDst: this.origDsts.get(socket),
    });
    const entry = this.h2Sessions.add(s);
    socket.once('close', () => this.h2Sessions.delete(entry));
  }

  /**
   * A connection to a destination the mesh does not know (docs/traffic-management.md,
   * Egress). When the policy says to look (REGISTRY_ONLY; ALLOW_ANY on a declared HTTP
   * port), detection decides: HTTP/1.x is served, each request then matched by its Host
   * (egress-http.ts); a TLS ClientHello is matched by its SNI against HTTPS/TLS ports;
   * anything else by its destination address against the ExternalServices' addresses.
   * Let through: spliced to the original destination as before. Refused (REGISTRY_ONLY):
   * closed, counted (wren_egress_refused_total, wren_proxy_errors_total) and logged.
   * HTTP/2 cleartext is matched like TCP (by address): its requests are not looked into.
   */
  private async egress(socket: Socket, dst: Destination, p: EgressPolicy): Promise<void> {
    const startedAt = this.d.clock.now();
    let sni: string | undefined;
    if (p.inspects(dst.port) && !this.d.opaquePorts.has(dst.port)) {
      const detected = await detectProtocol(socket, this.d.detectTimeoutMs, this.d.clock);
      this.d.metrics.detect.inc({ direction: 'outbound', result: detected });
      if (socket.destroyed) return;
      if (detected === 'http1') {
        this.origDsts.set(socket, { address: dst.address, port: dst.port, egress: true });
        this.h1.serve(socket);
        return;
      }
      // The ClientHello has protocol.detectTimeoutMs of its own; the timer firing is counted (limit="client-hello-timeout").
      if (detected === 'opaque' && p.mode === 'REGISTRY_ONLY') sni = await peekSni(socket, this.d.detectTimeoutMs, this.d.clock, this.onHelloTimeout);
      if (socket.destroyed) return;
    }
    const allowed = (sni !== undefined ? p.bySni(sni, dst.port) : undefined) ?? p.byAddress(dst.address, dst.port);
    if (allowed !== undefined || p.mode === 'ALLOW_ANY') {
      this.passthrough(socket, dst, allowed, startedAt, sni);
      this.d.passthroughs?.add(socket, dst, sni);
      return;
    }
    const protocol = sni !== undefined ? 'tls' : 'tcp';
    this.d.metrics.egressRefused.inc({ protocol });
    this.d.metrics.proxyErrors.inc({ direction: 'outbound', code: 'egress-refused' });
    // In istio_tcp_* as Istio counts a connection to its BlackHoleCluster: opened and closed, with the flag of the access log's line.
    this.d.metrics.tcpFailed(this.d.metrics.local.forEgress('BlackHoleCluster').tcp, tcpFlagsOf('egress-refused', 0));
    this.d.logger.info('egress refused: no ExternalService declares the destination', { dst, sni, protocol, mode: p.mode });
    const log = this.d.accessLog;
    if (log?.sampled()) {
      log.write(tcpEntry({
        direction: 'outbound', startedAt, endedAt: this.d.clock.now(),
        downstream: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: '' },
        downstreamLocal: dst, upstreamHost: null, upstreamCluster: 'BlackHoleCluster', upstreamIdentity: null, upstreamLocal: null,
        proxyError: 'egress-refused', attempts: 0, bytesReceived: 0, bytesSent: 0,
        terminationDetails: 'egress refused', ...(sni !== undefined ? { requestedServerName: sni } : {}),
      }));
    }
    socket.destroy();
  }

  /**
   * Spliced to where it was going, through the TCP connector like every other upstream:
   * the client's bytes wait in its socket until the upstream is connected. A connect that
   * fails or times out closes the client and counts wren_proxy_errors_total{code}.
   * `external`: the ExternalService host that declares the destination (by SNI or address),
   * which istio_tcp_* name as Istio names a ServiceEntry's traffic; undefined: an unknown
   * destination let through (ALLOW_ANY), Istio's PassthroughCluster.
   */
  private passthrough(socket: Socket, dst: Destination, external: ExternalDestination | undefined, startedAt: number, sni: string | undefined): void {
    this.d.metrics.passthrough.inc({ reason: external !== undefined ? 'external-service' : 'unknown-destination' });
    // Logged as Envoy's TCP proxy logs its PassthroughCluster (or ServiceEntry cluster)
    // connections: one draw per connection, nothing more when off or not sampled.
    // The addresses are read now: a socket that has closed no longer has them.
    const logged = this.d.accessLog?.sampled() === true ? { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, identity: '' } : null;
    this.tunnels++;
    const ep: Endpoint = { address: dst.address, port: dst.port, proxyPort: null, identity: '', weight: 1, zone: '', ready: true };
    // istio_tcp_* as Istio counts a ServiceEntry's cluster or its PassthroughCluster (workload-labels.ts forExternal, forEgress): the bytes of traffic leaving the mesh too.
    const labels = (external !== undefined ? this.d.metrics.local.forExternal(external) : this.d.metrics.local.forEgress('PassthroughCluster')).tcp;
    this.passthroughConnector.connect(ep, this.d.passthroughConnectTimeoutMs ?? DEFAULT_PASSTHROUGH_CONNECT_TIMEOUT_MS).then(
      (up) => {
        if (socket.destroyed) {
          this.tunnels--;
          return void up.socket.destroy();
        }
        const upLocal = logged !== null && up.socket.localAddress ? `${up.socket.localAddress}:${up.socket.localPort}` : null;
        const flow = this.d.metrics.openTcpFlow(
          labels,
          splice(socket, up.socket, (bytes) => {
            this.tunnels--;
            this.d.metrics.closeTcpFlow(flow);
            if (logged !== null) this.logPassthrough(logged, dst, external, startedAt, sni, undefined, bytes.aToB, bytes.bToA, upLocal);
          }, this.tcpIdle),
        );
      },
      (err: unknown) => {
        this.tunnels--;
        const e = toProxyError(err, 'CONNECT_FAILED');
        if (logged !== null) this.logPassthrough(logged, dst, external, startedAt, sni, e.label, 0, 0, null);
        this.d.metrics.proxyErrors.inc({ direction: 'outbound', code: e.label });
        this.d.metrics.tcpFailed(labels, tcpFlagsOf(e.label, 1));
        this.d.logger.debug('passthrough connect failed', { dst, code: e.code, detail: e.message });
        socket.destroy();
      },
    );
  }

  /**
   * The line of a connection let out of the mesh (docs/observability.md, Access logs):
   * `upstream_cluster` the ExternalService's `outbound|PORT||HOST` or `PassthroughCluster`,
   * the bytes both ways as istio_tcp_* count them, `UF` (or the connect error's flag) when
   * the destination could not be reached.
   */
  private logPassthrough(
    downstream: TcpFacts['downstream'], dst: Destination, external: ExternalDestination | undefined, startedAt: number, sni: string | undefined,
    proxyError: string | undefined, bytesReceived: number, bytesSent: number, upstreamLocal: string | null,
  ): void {
    this.d.accessLog!.write(tcpEntry({
      direction: 'outbound', startedAt, endedAt: this.d.clock.now(),
      downstream, downstreamLocal: dst, upstreamHost: endpointKey(dst), upstreamCluster: external?.cluster ?? 'PassthroughCluster', upstreamIdentity: null, upstreamLocal,
      proxyError, attempts: 1, bytesReceived, bytesSent,
      ...(sni !== undefined ? { requestedServerName: sni } : {}),
    }));
  }

  /**
   * Opaque TCP to a mesh service: the connection becomes a CONNECT-like request
   * (tcp-request.ts) through the outbound TCP stack (route → admission → retry → pick,
   * tcp-stack.ts), so it is balanced per connection (or pinned to the addressed pod),
   * admitted against the cluster's max_connections, retried on another endpoint after a
   * connect failure, and bounded by the connect timeout exactly as a request is. The
   * answer is the upstream byte stream (an HTTP/2 CONNECT stream over the peer's mTLS
   * session, or a socket to an unmeshed endpoint), spliced to the client. A failure is
   * counted by its code (wren_proxy_errors_total, the error table's label) and closes the
   * connection: TCP has no way to say more.
   */
  private tcp(socket: Socket, dst: Destination | undefined): void {
    if (socket.destroyed) {
      // The client left (a reset) while detection read its first bytes: its 'close' has
      // fired already, so the abort below never would, and the stack would connect an
      // upstream (and retry the connect) for nobody. Counted as a client that left a
      // request: wren_proxy_errors_total{code="client-cancelled"}.
      this.d.metrics.proxyErrors.inc({ direction: 'outbound', code: CLIENT_CANCELLED_LABEL });
      return;
    }
    const ac = new Cancel();
    const onClose = () => ac.abort();
    socket.once('close', onClose);
    const req = tcpRequest(socket, dst, ac.signal, this.d.clock.now());
    this.tunnels++;
    this.d.tcp(req).then(
      (res) => {
        socket.removeListener('close', onClose);
        const up = res.body as Duplex;
        if (socket.destroyed) {
          this.tunnels--;
          return void up.destroy();
        }
        // reporter="source": the routed service and the endpoint pick-endpoint connected (its workload from the control plane).
        // The endpoint connected last: after a retried connect, not the first attempt's (still on `req`).
        const labels = this.d.metrics.local.forOutbound(req.route, endpointOf(req)).tcp;
        const flow = this.d.metrics.openTcpFlow(
          labels,
          splice(socket, up, () => {
            this.tunnels--;
            this.d.metrics.closeTcpFlow(flow);
          }, this.tcpIdle),
        );
      },
      (err: unknown) => {
        this.tunnels--;
        socket.removeListener('close', onClose);
        const e = toProxyError(err, 'INTERNAL');
        // Counted like an HTTP error response (record-metrics), a client that left (client-cancelled) too.
        this.d.metrics.proxyErrors.inc({ direction: 'outbound', code: e.label });
        this.d.metrics.tcpFailed(this.d.metrics.local.forOutbound(req.route, endpointOf(req)).tcp, tcpFlagsOf(e.label, stateOf(req)?.tried.size ?? 0));
        const fields = { code: e.code, flag: responseFlag(e.label), service: req.route ? serviceName(req) : undefined, dst, detail: e.message };
        if (e.code === 'NO_ROUTE') this.d.logger.info('closing opaque connection with no destination', fields);
        else if (!socket.destroyed) this.d.logger.warn('opaque connection failed', fields);
        socket.destroy();
      },
    );
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Opaque tunnels and passthroughs in flight (HTTP requests are counted by record-metrics: ProxyMetrics.inFlight). */
  get tunnelsInFlight(): number {
    return this.tunnels;
  }

  /**
   * The sidecar is draining: the listener keeps accepting and serving (the app still needs
   * the mesh during its own shutdown: Istio keeps the outbound listeners up for
   * terminationDrainDuration, draining the inbound only), new connections included; but
   * the HTTP/1.1 connections open now close when idle (after their request in flight, its
   * response saying `connection: close`), and HTTP/2 sessions get GOAWAY, so idle
   * keep-alive connections neither hold the drain nor wait to be reset by the close.
   */
  drain(): void {
    this.h1.closeOpenIdle();
    this.goAwayAll();
  }

  /** GOAWAY to every HTTP/2 session (RFC 9113 section 6.8): streams in flight finish, no new one is taken. */
  private goAwayAll(): void {
    for (const s of this.h2Sessions) {
      s.close();
      s.flush();
    }
    for (const s of this.nodeH2Sessions) s.close();
  }

  /** Stop accepting and drop every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.h1.close();
    // GOAWAY first (RFC 9113 section 6.8), so the app knows no stream past it was processed.
    this.goAwayAll();
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

const serviceName = (req: ProxyRequest): string => `${req.route!.service.name}.${req.route!.service.namespace}.svc.cluster.local`;
