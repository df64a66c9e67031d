import { createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { nodeTimerMs, type Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { HttpService } from '../http/exchange.js';
import { attachH2Handler, H2_HEADER_HARD_CAP_FACTOR, H2_SERVER_MAX_FIELDS, nodeMalformed, socketSource } from '../http/h2-server.js';
import { originalDst as kernelOriginalDst, type OriginalDst } from '../net/original-dst.js';
import { printable } from '../../common/printable.js';
import { peerSpiffeId, trustDomainOf } from '../tls/peer-identity.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import type { PolicyTelemetry } from '../policy/policy-telemetry.js';
import type { OpenTunnels } from '../policy/open-tunnels.js';
import type { AccessLog } from '../access-log/access-log.js';
import { PlaintextInbound } from './plaintext-inbound.js';
import { PeerConnect, sessionPeer } from './peer-connect.js';
import { sniff, type Sniffed } from './sniff.js';
import { listenDualStack } from '../net/listen-dual-stack.js';
import type { ListenOptions } from '../../common/listen.js';
import type { ProxyLimits } from '../config/proxy-config.js';
import type { ListenerConnections } from '../net/shared-admission.js';
import { guardH2Session, type LimitName } from '../http/h2-session-guard.js';
import type { SpliceIdle } from '../net/tcp-tunnel.js';
import { H1Server, MESH_HEAD_HEADROOM } from '../http/h1-server.js';
import { isMuxAlpn, MuxSession, MUX_ALPN_2, MUX_ALPNS } from '../mux/mux-session.js';
import { MuxStream } from '../mux/mux-stream.js';
import { LiveSet } from '../../common/live-set.js';
import { refusalReporters } from '../access-log/refusal-reporters.js';

/**
 * wren_protocol_detect_total's labels for what the inbound port's sniff decided: one object
 * each, not one per connection. 'stalled' (bytes, then silence until detectTimeoutMs) is
 * the timer firing as 'timeout' is, counted under it as the outbound and CONNECT streams count it.
 */
const INBOUND_DETECT: Readonly<Record<Sniffed | 'opaque-port', { readonly direction: 'inbound'; readonly result: string }>> = Object.freeze(
  Object.fromEntries(
    (['tls', 'http1', 'http2', 'opaque', 'timeout', 'stalled', 'closed', 'opaque-port'] as const).map((r) => [r, Object.freeze({ direction: 'inbound', result: r === 'stalled' ? 'timeout' : r })]),
  ) as Record<Sniffed | 'opaque-port', { direction: 'inbound'; result: string }>,
);

/** wren_limit_exceeded_total's labels for a connection closed after a stalled start of HTTP: one object, not one per connection. */
const DETECT_TIMEOUT_CLOSED = Object.freeze({ direction: 'inbound', limit: 'detect-timeout' } as const);

/**
 * nghttp2 ends a server session with INTERNAL_ERROR once its peer resets more than 1000
 * streams in a burst or 33 a second after it (its CVE-2023-44487 guard). A peer sidecar
 * relays the cancellations of every caller in its pod on one session, so at nghttp2's
 * defaults ordinary gRPC cancellations, or one abusive app, would cost every caller that
 * shared session. The outbound side enforces the premature-reset budget per app
 * connection; here the session-wide guard is kept only as a far looser backstop.
 */
const PEER_RESET_BURST = 20_000;
const PEER_RESET_RATE = 2_000;

export interface InboundDeps {
  readonly address: string;
  /** Also bound for IPv6 on the same port when set (proxy/net/listen-dual-stack.ts). */
  readonly ipv6Address?: string;
  readonly port: number;
  readonly appAddress: string;
  readonly reservedPorts: ReadonlySet<number>;
  readonly maxHeaderBytes: number;
  readonly maxConcurrentStreams: number;
  /** Timeouts and the connection cap (docs/security.md). */
  readonly limits: ProxyLimits;
  /** Its connections open for the sidecar (every listener worker's), against limits.maxConnectionsPerListener. */
  readonly connections: ListenerConnections;
  readonly tls: TlsIdentity;
  /** Inbound stack for mTLS requests. */
  readonly http: HttpService;
  /** Inbound stack for plaintext requests on PERMISSIVE ports (inboundStack with `plaintext: true`). */
  readonly plaintextHttp: HttpService;
  readonly policy: () => CompiledInboundPolicy;
  readonly policyTelemetry: PolicyTelemetry;
  /** How long a connection may stay silent before it is judged (protocol.detectTimeoutMs). */
  readonly detectTimeoutMs: number;
  /** Server-speaks-first ports (static; with policy().opaquePorts, the pushed ones): on a PERMISSIVE port plaintext is assumed at once. */
  readonly opaquePorts: ReadonlySet<number>;
  /** Where a redirected connection was going (SO_ORIGINAL_DST by default; tests stand in for iptables). */
  readonly originalDst?: (s: Socket) => OriginalDst | undefined;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Lines for opaque connections (app-tunnel.ts) and for those authorization refuses. */
  readonly accessLog?: AccessLog;
  /** The open tunnels (CONNECT streams, opaque splices, switched upgrades), re-authorized on each policy change. */
  readonly tunnels: OpenTunnels;
}

/**
 * The inbound listener. Each connection's first byte decides: a TLS handshake goes to
 * the mutual-TLS server (a client certificate chaining to the trust bundle is required;
 * foreign CAs fail the handshake), which speaks HTTP/2 with the peer sidecar and hands
 * each stream to the inbound layers, or for CONNECT streams splices an opaque TCP
 * connection to the app's port after authorizing it. Anything else is plaintext: refused
 * (closed and counted) when the target port is STRICT, the default; on a PERMISSIVE
 * port handed to the plaintext handler (HTTP/1.1, h2c or opaque TCP, no caller identity).
 * A port that becomes STRICT later refuses each plaintext request on the connections
 * already open (layers/strict-mtls.ts); byte tunnels (CONNECT streams, opaque splices,
 * switched upgrades) are judged again by each new policy (policy/open-tunnels.ts).
 *
 * The target port of a plaintext connection is its original destination (iptables
 * REDIRECT; SO_ORIGINAL_DST). mTLS peers name it per request (`wren-target-port`).
 */
export class InboundListener {
  private readonly server: Server;
  /** The mutual-TLS handshake; ALPN picks the server a connection goes to (secureConnection()). */
  private readonly tlsServer: TlsServer;
  /** HTTP/2 over the verified TLS connections (ALPN h2). */
  private readonly secure: Http2Server;
  private readonly plaintext: PlaintextInbound;
  /** Peers' CONNECT streams (peer-connect.ts). */
  private readonly connects: PeerConnect;
  private readonly sessions = new LiveSet<ServerHttp2Session>();
  /** HTTP/1.1 from peer sidecars: ALPN http/1.1 (protocol.meshHttp1 'h1') and the virtual connections of ALPN wren-mux/2 or /1 ('mux'), through the mTLS stack. */
  private readonly meshH1: H1Server;
  private readonly muxSessions = new Set<MuxSession>();
  /** LiveSets, not Sets: a long-lived Set keeps the connections that left for the scavenger (common/live-set.ts). */
  private readonly sockets = new LiveSet<Socket>();
  private inflight = 0;
  private draining = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly d: InboundDeps) {
    // ALPN h2: HTTP/2 (every peer offers it); http/1.1: peers whose HTTP/1.1 goes over
    // pooled mTLS connections (protocol.meshHttp1 'h1'); wren-mux/2 and /1: the mesh
    // multiplexer, /2 (with PING) first, as the server's order picks, and /1 for a caller of
    // an older release. A client certificate chaining to the trust bundle is required either way.
    //
    // The handshake must end within limits.requestHeadersTimeoutMs, as a first request head
    // or HTTP/2 stream must after it: Node's TLS server gives it 120 s by default, and a
    // client that starts a ClientHello and stalls (or says nothing on a STRICT port) kept a
    // connection of maxConnectionsPerListener that long, so 35 connections a second held
    // the listener full. 0 (no bound on heads) keeps Node's 120 s for the handshake.
    const handshakeMs = d.limits.requestHeadersTimeoutMs;
    this.tlsServer = createTlsServer(
      { ...d.tls.contextOptions, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2', 'http/1.1', ...MUX_ALPNS], ...(handshakeMs > 0 ? { handshakeTimeout: nodeTimerMs(handshakeMs) } : {}) },
      (s) => this.secureConnection(s),
    );
    this.secure = createH2Server({
      // A peer's request: what its outbound took (H2_SERVER_MAX_FIELDS) and the fields its sidecar added (h1-server.ts MESH_HEAD_HEADROOM).
      maxHeaderListPairs: H2_SERVER_MAX_FIELDS + MESH_HEAD_HEADROOM.fields,
      // enableConnectProtocol: HTTP/1.1 upgrades arrive as extended CONNECT streams (RFC 8441).
      settings: { maxConcurrentStreams: d.maxConcurrentStreams, maxHeaderListSize: d.maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR, initialWindowSize: d.limits.http2InitialStreamWindowBytes, enableConnectProtocol: true },
      streamResetBurst: PEER_RESET_BURST,
      streamResetRate: PEER_RESET_RATE,
    });
    d.tls.onRotate(() => this.tlsServer.setSecureContext(d.tls.contextOptions));
    const L = d.limits;
    const onLimit = (limit: LimitName) => d.metrics.limits.inc({ direction: 'inbound', limit });
    // Every tunnel of the listener (a peer's CONNECT or extended CONNECT, an upgrade on a mesh
    // or plaintext HTTP/1.1 connection, plaintext opaque TCP) has this idle bound: one object for all of them.
    const tunnelIdle: SpliceIdle = { ms: L.tcpIdleTimeoutMs, clock: d.clock, fired: onLimit };
    // A request the HTTP/1.1 codec or the HTTP/2 handler answered before the layers (400/431/501), or a 408.
    const refused = refusalReporters('inbound', d.metrics, d.accessLog);
    this.secure.on('session', (s) => {
      const entry = this.sessions.add(s);
      s.on('close', () => this.sessions.delete(entry));
      s.on('error', (e) => d.logger.debug('inbound session error', { error: e }));
      s.on('connect', () => s.setLocalWindowSize(L.http2InitialConnectionWindowBytes));
      guardH2Session(s, {
        clock: d.clock, onLimit, prematureResets: null,
        headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs,
        maxConcurrentStreams: d.maxConcurrentStreams,
        // Malformed streams nghttp2 reset itself: counted and logged as the frame-level server's.
        onUnseenStreams: () => refused.h2(nodeMalformed(), socketSource(s.socket, peerSpiffeId(s.socket as TLSSocket)), undefined, 0),
      });
    });
    this.tlsServer.on('tlsClientError', (err, socket) => {
      if ((err as NodeJS.ErrnoException).code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
        // A limit, not a refused peer: counted as the other timeouts of the listener are.
        onLimit('tls-handshake-timeout');
        d.logger.debug('inbound TLS handshake timed out', { timeoutMs: handshakeMs, peer: socket.remoteAddress });
        return void socket.destroy();
      }
      d.metrics.proxyErrors.inc({ direction: 'inbound', code: 'tls-handshake' });
      d.logger.info('inbound TLS handshake refused', { code: 'TLS_HANDSHAKE', error: err.message });
    });
    this.secure.on('stream', (stream) => {
      this.track(1);
      // 'close' fires once per stream: a shared handler added with on() (no once() wrapper, no closure per stream).
      stream.on('close', this.untrack);
    });
    attachH2Handler(this.secure, {
      // A peer sidecar's request head is one its outbound accepted within maxHeaderBytes, plus
      // the fields that sidecar added (x-request-id, traceparent, wren-target-port, ...): the
      // room the mesh HTTP/1.1 server leaves for them too (h1-server.ts meshLimits).
      maxHeaderBytes: d.maxHeaderBytes + MESH_HEAD_HEADROOM.bytes,
      onClientError: refused.h2,
      service: d.http,
      clock: d.clock,
      identityOf: (stream) => sessionPeer(stream),
      upgrades: true,
      tunnelIdle,
      onConnect: (stream, headers) => this.connects.handle(stream, headers),
    });
    // HTTP/1.1 from a peer sidecar: the same mTLS stack, the peer's SPIFFE ID from its handshake.
    // Drain is H1Server.closeIdle(): the HTTP/1.1 counterpart of GOAWAY (no further request on a connection, RFC 9112 section 9.6).
    // The same server for the virtual connections of a multiplexed mTLS connection (ALPN
    // wren-mux/2 or /1): their caller is the session's verified peer.
    this.meshH1 = new H1Server({
      service: d.http, maxHeaderBytes: d.maxHeaderBytes, meshHeadroom: true, meshOrigProto: true, clock: d.clock,
      identityOf: (s) => (s instanceof MuxStream ? s.peer : peerSpiffeId(s as TLSSocket)),
      // A mux stream's FIN ends only the peer's half (it resets a stream to go away): its
      // requests are answered. On the TLS connections a FIN is the caller gone.
      halfCloseOf: (s) => s instanceof MuxStream,
      headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs, onLimit,
      delayedCloseMs: L.delayedCloseTimeoutMs,
      onClientError: refused.h1,
      onHeadersTimeout: refused.headersTimeout,
      onExchange: (n) => this.track(n),
      tunnelIdle,
    });
    this.plaintext = new PlaintextInbound({ ...d, http: d.plaintextHttp, track: (n) => this.track(n), tunnelIdle });
    this.connects = new PeerConnect({ ...d, track: (n) => this.track(n), tunnelIdle });
    // Small HTTP/2 frames must not wait for Nagle (with delayed ACKs that is up to 40 ms).
    this.server = createNetServer({ noDelay: true }, (s) => void this.accept(s));
  }

  private readonly untrack = (): void => this.track(-1);

  private track(delta: 1 | -1): void {
    this.inflight += delta;
    if (this.inflight === 0) this.idleWaiters.splice(0).forEach((w) => w());
  }

  /** `reusePort` when worker threads share the port (proxy/workers). */
  listen(opts: ListenOptions = {}): Promise<AddressInfo> {
    return listenDualStack(this.server, this.d.port, this.d.address, this.d.ipv6Address ?? '', this.d.logger, opts);
  }

  private async accept(socket: Socket): Promise<void> {
    // The listener's cap counts every listener worker's connections (Envoy's per-listener limit).
    if (!this.d.connections.take()) {
      this.d.metrics.limits.inc({ direction: 'inbound', limit: 'max-connections' });
      socket.destroy();
      return;
    }
    const entry = this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(entry);
      this.d.connections.release();
    });
    socket.on('error', (e) => this.d.logger.debug('inbound socket error', { error: e }));
    const dst = (this.d.originalDst ?? kernelOriginalDst)(socket);
    const policy = this.d.policy();
    // Opaque by the static list or the Services' declaration the control plane pushed (peer-connect.ts handle()).
    const opaque = dst !== undefined && (this.d.opaquePorts.has(dst.port) || policy.opaquePorts.has(dst.port)) && policy.modeFor(dst.port) === 'PERMISSIVE';
    // Half-open until the sniff decides: a plaintext client's FIN (its request sent, `nc -N`,
    // shutdown(SHUT_WR)) must reach the app through the splice with our side still open for
    // the reply, not end our side at once (the listener's default) and close the connection
    // before the app was even dialled. TLS and HTTP take the socket back as before (below).
    socket.allowHalfOpen = true;
    const kind = opaque ? 'opaque' : await sniff(socket, this.d.detectTimeoutMs, this.d.clock);
    // Counted as the outbound's detection and the CONNECT streams' are (protocol.detectTimeoutMs firing is result="timeout").
    this.d.metrics.detect.inc(opaque ? INBOUND_DETECT['opaque-port'] : INBOUND_DETECT[kind]);
    if (kind === 'closed') return void socket.destroy();
    // Read after the sniff: a push during it (up to detectTimeoutMs) judges this connection.
    const mode = this.d.policy().modeFor(dst?.port);
    if (kind === 'tls' || (kind === 'timeout' && mode === 'STRICT')) {
      // A silent client on a STRICT port may be a slow TLS client: the TLS server's own handshake timeout judges it.
      // Not half-open: the TLS socket takes the setting over (node:tls), and a FIN there is the peer gone.
      socket.allowHalfOpen = false;
      this.d.policyTelemetry.connection(true, 'accepted');
      this.tlsServer.emit('connection', socket);
      return;
    }
    if (mode === 'STRICT') {
      this.d.policyTelemetry.connection(false, 'refused');
      this.d.metrics.proxyErrors.inc({ direction: 'inbound', code: 'plaintext-refused' });
      this.d.logger.info('plaintext connection refused (mTLS STRICT)', { code: 'UNAUTHENTICATED', port: dst?.port ?? null, peer: socket.remoteAddress });
      socket.destroy();
      return;
    }
    if (kind === 'stalled') {
      // The start of a request line or of the h2 preface (`G`, `GET /x HT`), then nothing
      // until the timer: spliced as opaque TCP, the rest of that request would reach the
      // app unparsed (a forged x-forwarded-client-cert, no per-request authorization).
      // Istio and Linkerd fall back to TCP here; Wren closes it (docs/security.md, "A
      // detection timeout after the start of HTTP is closed"). Only bytes that could still
      // be HTTP get here: anything else was decided opaque at its first byte.
      this.d.metrics.limits.inc(DETECT_TIMEOUT_CLOSED);
      this.d.logger.debug('plaintext connection closed: the start of an HTTP request, then nothing within protocol.detectTimeoutMs', { port: dst?.port ?? null, peer: socket.remoteAddress });
      socket.destroy();
      return;
    }
    this.d.policyTelemetry.connection(false, 'accepted');
    // The HTTP servers handle a FIN themselves, as before; opaque plaintext stays half-open for the splice.
    if (kind === 'http1' || kind === 'http2') socket.allowHalfOpen = false;
    this.plaintext.handle(socket, kind, dst);
  }

  /**
   * A verified mTLS connection (the TLS server required a client certificate chaining to
   * the trust bundle). ALPN h2: an HTTP/2 session (node:http2 runs it over the TLS socket
   * as its secure server would); http/1.1: HTTP/1.1 through the same mTLS stack, the peer's
   * SPIFFE ID (peerSpiffeId) the caller of every request on it, as for a session. No ALPN
   * at all is refused, as before: a peer sidecar always offers one.
   */
  private secureConnection(socket: TLSSocket): void {
    if (!socket.authorized) return void socket.destroy();
    // A peer of another trust domain is no peer of this mesh, whatever CA in the bundle
    // signed it (a bundle shared across meshes, an old anchor kept for rotation): Istio's
    // sidecars validate the peer's trust domain (the local one and its aliases) for every
    // inbound mTLS connection, and a policy principal names a service account only within
    // one (docs/policy.md, "Trust domains"). A certificate without a SPIFFE ID has none.
    const peerDomain = trustDomainOf(peerSpiffeId(socket));
    const ownDomain = trustDomainOf(this.d.tls.spiffeId);
    if (peerDomain === '' || peerDomain !== ownDomain) {
      this.d.metrics.proxyErrors.inc({ direction: 'inbound', code: 'foreign-trust-domain' });
      this.d.logger.info('mTLS connection refused: the peer is not of this trust domain', { code: 'UNAUTHENTICATED', peerTrustDomain: printable(peerDomain), trustDomain: ownDomain });
      return void socket.destroy();
    }
    if (socket.alpnProtocol === 'h2') this.secure.emit('connection', socket);
    else if (socket.alpnProtocol === 'http/1.1') this.serveMeshH1(socket);
    else if (isMuxAlpn(socket.alpnProtocol)) this.serveMux(socket);
    else socket.destroy();
  }

  /** A multiplexed connection: each virtual connection is served like an HTTP/1.1 connection of that peer. */
  private serveMux(socket: TLSSocket): void {
    const peer = peerSpiffeId(socket);
    const session: MuxSession = new MuxSession(socket, {
      client: false,
      peer,
      windowBytes: this.d.limits.http2InitialStreamWindowBytes,
      connectionWindowBytes: this.d.limits.http2InitialConnectionWindowBytes,
      maxStreams: this.d.maxConcurrentStreams,
      idleTimeoutMs: this.d.limits.idleConnectionTimeoutMs,
      firstStreamTimeoutMs: this.d.limits.requestHeadersTimeoutMs,
      // The peer's time to end its half after ours (0: no bound), as the HTTP/1.1 connections'.
      closeTimeoutMs: this.d.limits.delayedCloseTimeoutMs,
      resetBudget: { burst: PEER_RESET_BURST, perSecond: PEER_RESET_RATE },
      clock: this.d.clock,
      onLimit: (limit) => this.d.metrics.limits.inc({ direction: 'inbound', limit }),
      onStream: (s) => this.meshH1.serve(s as unknown as Socket),
      onClose: (why) => {
        this.muxSessions.delete(session);
        if (why !== null) this.d.logger.debug('inbound mux session closed', { reason: why });
      },
    });
    // wren-mux/2: the caller's PINGs are answered (on /1 they would be malformed, as for the release before it).
    if (socket.alpnProtocol === MUX_ALPN_2) session.usePing();
    this.muxSessions.add(session);
    if (this.draining) session.goAway();
  }

  /** The one place the HTTP/1.1 server takes a connection (h1-listen's `serve(socket)` at merge). */
  private serveMeshH1(socket: TLSSocket): void {
    this.meshH1.serve(socket);
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  get streamsInFlight(): number {
    return this.inflight;
  }

  /**
   * Graceful drain: stop accepting connections, send GOAWAY so peers open no new
   * streams here, and resolve when in-flight streams have finished (or the grace ends).
   */
  async drain(graceMs: number): Promise<boolean> {
    this.server.close();
    for (const s of this.sessions) s.close();
    this.draining = true;
    this.meshH1.closeIdle();
    for (const s of this.muxSessions) s.goAway();
    this.plaintext.drain();
    this.connects.drain();
    if (this.inflight === 0) return true;
    return new Promise<boolean>((resolve) => {
      const t = this.d.clock.setTimeout(() => resolve(false), graceMs);
      this.idleWaiters.push(() => {
        this.d.clock.clearTimeout(t);
        resolve(true);
      });
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.sessions) s.destroy();
    this.meshH1.close();
    for (const s of this.muxSessions) s.destroy();
    this.plaintext.close();
    this.connects.close();
    for (const s of this.sockets) s.destroy();
  }
}
