import { createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { HttpService } from '../http/exchange.js';
import { H1Server } from '../http/h1-server.js';
import { attachH2Handler, H2_HEADER_HARD_CAP_FACTOR, H2_SERVER_MAX_FIELDS, nodeMalformed, socketSource } from '../http/h2-server.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { OriginalDst } from '../net/original-dst.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import type { OpenTunnels } from '../policy/open-tunnels.js';
import type { PolicyTelemetry } from '../policy/policy-telemetry.js';
import { tunnelToApp } from './app-tunnel.js';
import { inboundTunnelLine } from '../access-log/tunnel-log.js';
import type { AccessLog } from '../access-log/access-log.js';
import { parseTargetPort } from './target-port.js';
import type { ProxyLimits } from '../config/proxy-config.js';
import { guardH2Session, type LimitName } from '../http/h2-session-guard.js';
import { LiveSet } from '../../common/live-set.js';
import { CLIENT_CANCELLED_LABEL } from '../errors/proxy-error.js';
import { refusalReporters } from '../access-log/refusal-reporters.js';
import type { SpliceIdle } from '../net/tcp-tunnel.js';
import type { Duplex } from 'node:stream';
import { firstSpeaker } from '../net/first-speaker.js';
import { detectProtocol, STALL_APART } from '../net/detect-protocol.js';

export interface PlaintextInboundDeps {
  readonly appAddress: string;
  readonly reservedPorts: ReadonlySet<number>;
  readonly maxHeaderBytes: number;
  readonly maxConcurrentStreams: number;
  readonly limits: ProxyLimits;
  /** The plaintext inbound stack (inboundStack with `plaintext: true`). */
  readonly http: HttpService;
  readonly policy: () => CompiledInboundPolicy;
  readonly policyTelemetry: PolicyTelemetry;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  /** A request or tunnel started (+1) or ended (-1), for graceful drain. */
  readonly track: (delta: 1 | -1) => void;
  readonly accessLog?: AccessLog;
  /** The listener's open tunnels: opaque splices join them, re-authorized on each policy change (policy/open-tunnels.ts). */
  readonly tunnels: OpenTunnels;
  /** The listener's idle bound for its tunnels (limits.tcpIdleTimeoutMs): opaque splices and upgrades after their 101. */
  readonly tunnelIdle: SpliceIdle;
  /** protocol.detectTimeoutMs: a client silent through detection whose first bytes come later is given it again (afterSilence()). */
  readonly detectTimeoutMs: number;
}

/**
 * The plaintext half of a PERMISSIVE inbound port: connections that did not start with
 * a TLS handshake. HTTP/1.1 and h2c (prior knowledge) go through the plaintext inbound
 * stack (authorized as unauthenticated callers); anything else is opaque TCP to the
 * app's port after a TCP authorization check (denied: the connection is closed).
 * The target port is always the connection's original destination, never a header.
 *
 * A second instance, over the mTLS stack, decodes the bytes of a peer's CONNECT stream
 * to a port that is not opaque (peer-connect.ts): `handle` is then given the peer's
 * identity, which the requests carry (XFCC, authorization) as if sent over the session.
 */
export class PlaintextInbound {
  private readonly h1: H1Server;
  private readonly h2: Http2Server;
  private readonly dsts = new WeakMap<object, OriginalDst | undefined>();
  /** Peer identity per connection (a CONNECT stream's session peer); plaintext: none. */
  private readonly ids = new WeakMap<object, string>();
  /** LiveSets, not Sets: a long-lived Set keeps the connections that left for the scavenger (common/live-set.ts). */
  private readonly sessions = new LiveSet<ServerHttp2Session>();
  private readonly sockets = new LiveSet<Socket>();
  private pendingDst: OriginalDst | undefined;
  private pendingId = '';

  constructor(private readonly d: PlaintextInboundDeps) {
    const origDstOf = (s: object) => this.dsts.get(s);
    // HTTP/1.1 upgrades go through the plaintext inbound layers like any request (h1-upgrade-server.ts).
    const L = d.limits;
    const onLimit = (limit: LimitName) => d.metrics.limits.inc({ direction: 'inbound', limit });
    // A request the HTTP/1.1 codec or the HTTP/2 handler answered before the layers (400/431/501), or a 408.
    const refused = refusalReporters('inbound', d.metrics, d.accessLog);
    this.h1 = new H1Server({
      service: d.http, maxHeaderBytes: d.maxHeaderBytes, clock: d.clock, origDstOf, identityOf: (s) => this.ids.get(s) ?? '',
      headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs, onLimit,
      delayedCloseMs: L.delayedCloseTimeoutMs,
      onClientError: refused.h1,
      onHeadersTimeout: refused.headersTimeout,
      onExchange: d.track,
      // An upgrade's tunnel after the 101 is bound as an opaque one is (limits.tcpIdleTimeoutMs).
      tunnelIdle: d.tunnelIdle,
    });
    this.h2 = createH2Server({
      maxHeaderListPairs: H2_SERVER_MAX_FIELDS,
      settings: { maxConcurrentStreams: d.maxConcurrentStreams, maxHeaderListSize: d.maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR, initialWindowSize: d.limits.http2InitialStreamWindowBytes },
    });
    this.h2.on('session', (s) => {
      s.on('connect', () => s.setLocalWindowSize(d.limits.http2InitialConnectionWindowBytes));
      // The session's `socket` is a stable proxy object: key the original destination by it.
      this.dsts.set(s.socket, this.pendingDst);
      this.ids.set(s.socket, this.pendingId);
      const entry = this.sessions.add(s);
      s.on('close', () => this.sessions.delete(entry));
      s.on('error', (e) => d.logger.debug('plaintext inbound session error', { error: e }));
      // Unauthenticated callers: the same rapid-reset budget as the outbound listener's.
      guardH2Session(s, {
        clock: d.clock, onLimit, prematureResets: L.prematureResets,
        headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs,
        maxConcurrentStreams: d.maxConcurrentStreams,
        // Malformed streams nghttp2 reset itself: counted and logged as the frame-level server's.
        onUnseenStreams: () => refused.h2(nodeMalformed(), socketSource(s.socket, this.ids.get(s.socket) ?? ''), this.dsts.get(s.socket), 0),
      });
    });
    const untrack = (): void => d.track(-1);
    this.h2.on('stream', (stream) => {
      d.track(1);
      stream.on('close', untrack); // fires once per stream: one shared handler, no once() wrapper
    });
    attachH2Handler(this.h2, {
      maxHeaderBytes: d.maxHeaderBytes,
      onClientError: refused.h2,
      service: d.http,
      clock: d.clock,
      origDstOf,
      identityOf: (stream) => (stream.session ? this.ids.get(stream.session.socket) : undefined) ?? '',
      // Opaque tunnels are for peer sidecars over mTLS only: refused, counted and logged as
      // the handler's other refusals (it answered through refuseTunnel, counted nowhere).
      connectRefusal: 'a CONNECT tunnel needs an mTLS peer',
    });
  }

  /**
   * Take over a connection (its first bytes were put back by sniff): a plaintext socket,
   * or a peer's CONNECT stream with the peer's `identity`.
   */
  handle(socket: Socket, kind: 'http1' | 'http2' | 'opaque' | 'timeout', dst: OriginalDst | undefined, identity = ''): void {
    const entry = this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(entry));
    if (kind === 'http1') {
      this.dsts.set(socket, dst);
      this.ids.set(socket, identity);
      this.h1.serve(socket);
    } else if (kind === 'http2') {
      this.pendingDst = dst;
      this.pendingId = identity;
      this.h2.emit('connection', socket);
      this.pendingDst = undefined;
      this.pendingId = '';
    } else {
      this.tcp(socket, dst, kind === 'timeout');
    }
  }

  private targetOf(dst: OriginalDst | undefined): number | null {
    const port = parseTargetPort(dst ? String(dst.port) : undefined, this.d.reservedPorts);
    return port instanceof Error ? null : port;
  }

  private tcp(socket: Socket, dst: OriginalDst | undefined, silent = false): void {
    // Reset during the sniff: nothing to dial the app for, counted as a client that left (as the outbound's tcp()).
    if (socket.destroyed) return void this.d.metrics.proxyErrors.inc({ direction: 'inbound', code: CLIENT_CANCELLED_LABEL });
    const port = this.targetOf(dst);
    if (port === null) {
      this.d.logger.info('closing plaintext connection with no target port', { code: 'BAD_REQUEST' });
      socket.destroy();
      return;
    }
    const { authorizer } = this.d.policy();
    if (authorizer.active) {
      const dec = authorizer.authorize({ principal: '', port, http: null });
      this.d.policyTelemetry.decision(dec, { kind: 'tcp', principal: '', port });
      if (!dec.allow) {
        inboundTunnelLine(this.d.accessLog, socket, this.d.appAddress, port)?.denied(dec.reason);
        socket.destroy();
        return;
      }
    }
    this.d.track(1);
    socket.once('close', () => this.d.track(-1));
    // Judged again by every later policy (mTLS mode, authorization) for as long as it is open.
    const untrack = this.d.tunnels.add({ kind: 'tcp', authz: { principal: '', port, http: null }, plaintext: true, peer: socket.remoteAddress, end: socket });
    // Bytes the caller already sent stay buffered (the socket is paused) until the splice pipes them.
    const beforeSplice = silent ? (up: Duplex, go: () => void) => void this.afterSilence(socket, up, dst, go, untrack) : undefined;
    tunnelToApp(this.d, port, socket, { failed: () => socket.destroy(), ...(beforeSplice ? { beforeSplice } : {}) }, this.d.metrics.local.forInbound('', undefined, false).tcp);
  }

  /**
   * A client that said nothing through protocol detection (a server-speaks-first protocol,
   * or a client that connected early and waits) is dialled through to the app, but nothing
   * is spliced before the first byte from either side. The app speaking first is the
   * server-first protocol: spliced. The client speaking first had bytes detection never saw:
   * judged now as first bytes are, so an HTTP request sent after the timer goes through the
   * HTTP layers (header rules, per-request authorization) instead of reaching the app
   * unparsed with a forged XFCC, and the start of one that stalls again is closed
   * (docs/security.md). Opaque bytes are spliced, as before.
   */
  private async afterSilence(socket: Socket, up: Duplex, dst: OriginalDst | undefined, go: () => void, untrack: () => void): Promise<void> {
    const who = await firstSpeaker(socket, up, this.d.tunnelIdle);
    if (who === 'idle') {
      this.d.tunnelIdle.fired('tcp-idle-timeout');
      socket.destroy();
      up.destroy();
      return;
    }
    // Gone before either spoke (a reset, the app closing): the splice would never see its close.
    if (who === 'end' && (socket.destroyed || up.destroyed)) {
      socket.destroy();
      up.destroy();
      return;
    }
    if (who !== 'client') return go();
    const judged = detectProtocol(socket, this.d.detectTimeoutMs, this.d.clock, STALL_APART);
    // firstSpeaker() left it paused with its first bytes put back: let them flow to the peek.
    socket.resume();
    const kind = await judged;
    if (socket.destroyed) return void up.destroy();
    this.d.metrics.detect.inc({ direction: 'inbound', result: kind === 'stalled' ? 'timeout' : kind });
    if (kind === 'opaque' || kind === 'timeout') return go();
    // Not a byte of it went to the app: its connection is dropped unused.
    up.destroy();
    if (kind === 'stalled') {
      this.d.metrics.limits.inc({ direction: 'inbound', limit: 'detect-timeout' });
      socket.destroy();
      return;
    }
    // No longer a tunnel: out of the open tunnels, as a plaintext connection found HTTP at
    // once never joins them. Its requests are authorized one by one (and a port made STRICT
    // refuses them, closing the connection), so a push that denies TCP to the port (an
    // ALLOW of HTTP-only rules) must not close it as an opaque splice it is not.
    untrack();
    // The HTTP servers handle a FIN themselves (inbound-listener.ts accept()).
    socket.allowHalfOpen = false;
    this.handle(socket, kind, dst, this.ids.get(socket) ?? '');
  }

  /** GOAWAY to h2c sessions and close idle HTTP/1.1 connections. */
  drain(): void {
    for (const s of this.sessions) s.close();
    this.h1.closeIdle();
  }

  close(): void {
    this.h1.close();
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }
}
