import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { firstSpeaker } from '../net/first-speaker.js';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { MESH } from '../http/headers.js';
import { detectProtocol, STALL_APART } from '../net/detect-protocol.js';
import { StreamSocket } from '../net/stream-socket.js';
import { peerSpiffeId } from '../tls/peer-identity.js';
import { AUTHZ_REASON_HEADER } from '../layers/authorize.js';
import type { TcpLabels } from '../metrics/workload-labels.js';
import { inboundTunnelLine } from '../access-log/tunnel-log.js';
import { ProxyError } from '../errors/proxy-error.js';
import { probeApp, tunnelToApp } from './app-tunnel.js';
import { refuseTunnel } from './refuse-tunnel.js';
import { PlaintextInbound, type PlaintextInboundDeps } from './plaintext-inbound.js';
import { plaintextRequest } from './plaintext-request.js';
import { parseTargetPort } from './target-port.js';

export interface PeerConnectDeps extends Omit<PlaintextInboundDeps, 'http'> {
  /** The mTLS inbound stack: HTTP found inside a CONNECT stream goes through it, as the session's peer. */
  readonly http: PlaintextInboundDeps['http'];
  /** How long a CONNECT stream to a port not declared opaque may stay silent before it is spliced. */
  readonly detectTimeoutMs: number;
  /** Server-speaks-first ports (static protocol.opaquePorts): spliced unparsed, as are those the control plane pushes (policy().opaquePorts). */
  readonly opaquePorts: ReadonlySet<number>;
}

/**
 * Peers' CONNECT streams on the mTLS sessions (the inbound listener hands them here): the
 * target port named by `wren-target-port`, the tunnel authorized as TCP for the session's
 * peer, then spliced to the app's port (opaque ports) or its bytes sniffed and HTTP
 * decoded through the mTLS stack. An admitted tunnel joins the open tunnels
 * (policy/open-tunnels.ts), judged again by every later policy.
 */
export class PeerConnect {
  /** HTTP found inside peers' CONNECT streams, through the mTLS stack (see decodeOrSplice()). */
  private readonly tunnelled: PlaintextInbound;

  constructor(private readonly d: PeerConnectDeps) {
    // The bytes in a CONNECT stream are the peer app's, not its sidecar's: mesh headers in
    // them are dropped as from a plaintext caller (the CONNECT names the port), but the
    // caller is the session's authenticated peer (mutual_tls, XFCC, authorization).
    this.tunnelled = new PlaintextInbound({ ...d, http: plaintextRequest()(d.http) });
  }

  /** A plain CONNECT stream on a peer's HTTP/2 session (an extended CONNECT, with :protocol, is an upgrade: the stack serves it). */
  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const port = parseTargetPort(headers[MESH.targetPort], this.d.reservedPorts);
    if (port instanceof Error) {
      refuseTunnel(stream, new ProxyError('BAD_REQUEST', port.message));
      return;
    }
    // A stream whose session is already gone (node can still emit it) is a reset: nothing to serve.
    if (!stream.session || stream.destroyed) return void stream.destroy();
    const principal = sessionPeer(stream);
    const { authorizer } = this.d.policy();
    if (authorizer.active) {
      const dec = authorizer.authorize({ principal, port, http: null });
      this.d.policyTelemetry.decision(dec, { kind: 'tcp', principal, port });
      if (!dec.allow) {
        inboundTunnelLine(this.d.accessLog, stream, this.d.appAddress, port)?.denied(dec.reason);
        refuseTunnel(stream, new ProxyError('FORBIDDEN', dec.reason), { [AUTHZ_REASON_HEADER]: dec.reason });
        return;
      }
    }
    if (headers[MESH.healthCheck] !== undefined) {
      // A TCP health check from the peer sidecar: 200 once the app's port accepts a
      // connection, which is then closed; counted apart from the istio_tcp_* metrics
      // (nothing of the peer's reaches the app, so a forged one hides no traffic).
      this.d.metrics.inboundHealthCheckMarked.inc({ source_principal: principal, probe_shape: 'true' });
      const cancel = probeApp(this.d, port, (ok) => {
        this.d.metrics.inboundHealthChecks.inc({ kind: 'tcp', response_code: ok ? '200' : '502' });
        if (stream.destroyed || stream.closed) return;
        if (ok) stream.respond({ ':status': 200 }, { endStream: true });
        else refuseTunnel(stream, new ProxyError('CONNECT_REFUSED', `app port ${port}`));
      });
      stream.once('close', cancel);
      return;
    }
    // Admitted as {principal, port}: judged again with it by every later policy, closed at once if one denies it
    // (whether its bytes are then spliced or decoded as HTTP, whose requests are also authorized one by one).
    this.d.tunnels.add({ kind: 'tcp', authz: { principal, port, http: null }, plaintext: false, peer: stream.session.socket?.remoteAddress, end: stream });
    // reporter="destination": the caller's workload from the CONNECT stream's peer metadata (metrics/peer-metadata.ts).
    const peer = headers[MESH.peer];
    const labels = this.d.metrics.local.forInbound(principal, typeof peer === 'string' ? peer : undefined, principal !== '').tcp;
    // Opaque by this workload's own config or its Services' declaration as the control plane
    // pushed it (Istio's inbound takes each port's protocol from the Services that select the
    // pod): a server-first app (MySQL, SMTP) greets at once instead of after the detection timeout.
    if (this.d.opaquePorts.has(port) || this.d.policy().opaquePorts.has(port)) this.spliceToApp(stream, port, labels);
    else this.decodeOrSplice(stream, port, principal, labels);
  }

  /**
   * A CONNECT stream to a port this workload has not declared opaque: its bytes are
   * sniffed like a plaintext connection's, and HTTP goes through the mTLS inbound stack
   * (authorization, request id, XFCC from the session's peer), as Istio and Linkerd parse
   * traffic to a non-opaque port whatever the peer claims. Otherwise a peer could write
   * raw HTTP with a forged X-Forwarded-Client-Cert and the app would get it unparsed.
   * Anything else (or silence until the detection timeout) is spliced as before.
   */
  private decodeOrSplice(stream: ServerHttp2Stream, port: number, principal: string, labels: TcpLabels): void {
    stream.on('error', ignore);
    void detectProtocol(stream as unknown as Socket, this.d.detectTimeoutMs, this.d.clock, STALL_APART).then((kind) => {
      this.d.metrics.detect.inc({ direction: 'inbound', result: kind === 'stalled' ? 'timeout' : kind });
      if (stream.destroyed || stream.closed) return;
      if (kind === 'stalled') {
        // The start of an HTTP request line or preface, then nothing until the timer: spliced,
        // the rest of it would reach the app unparsed (a forged XFCC from the peer's app). Refused
        // as the plaintext inbound closes it (docs/security.md), counted the same way.
        this.d.metrics.limits.inc({ direction: 'inbound', limit: 'detect-timeout' });
        refuseTunnel(stream, new ProxyError('BAD_REQUEST', 'the start of an HTTP request, then nothing within protocol.detectTimeoutMs'));
        return;
      }
      if (kind === 'http1' || kind === 'http2') {
        stream.respond({ ':status': 200 });
        this.decode(stream, kind, port, principal);
      } else {
        this.spliceToApp(stream, port, labels, kind === 'timeout' ? principal : undefined);
      }
    });
  }

  /** HTTP in a CONNECT stream, through the mTLS stack as the session's peer (the stream answered 200 already). */
  private decode(stream: ServerHttp2Stream, kind: 'http1' | 'http2', port: number, principal: string): void {
    const peer = stream.session?.socket;
    this.tunnelled.handle(new StreamSocket(stream, peer?.remoteAddress, peer?.remotePort) as unknown as Socket, kind, { address: this.d.appAddress, port }, principal);
  }

  /**
   * A CONNECT stream silent through detection: the app is dialled (and the stream answered
   * 200), but its first bytes, if they come before the app's, are judged as first bytes
   * are (plaintext-inbound.ts afterSilence()): HTTP goes through the mTLS stack, the start
   * of a request that stalls again is closed, anything else is spliced.
   */
  private async afterSilence(stream: ServerHttp2Stream, up: Duplex, port: number, principal: string, go: () => void): Promise<void> {
    const who = await firstSpeaker(stream, up, this.d.tunnelIdle);
    if (who === 'idle') {
      this.d.tunnelIdle.fired('tcp-idle-timeout');
      stream.destroy();
      up.destroy();
      return;
    }
    // Gone before either spoke (a reset, the app closing): the splice would never see its close.
    if (who === 'end' && (stream.destroyed || up.destroyed)) {
      stream.destroy();
      up.destroy();
      return;
    }
    if (who !== 'client') return go();
    const judged = detectProtocol(stream as unknown as Socket, this.d.detectTimeoutMs, this.d.clock, STALL_APART);
    stream.resume();
    const kind = await judged;
    if (stream.destroyed || stream.closed) return void up.destroy();
    this.d.metrics.detect.inc({ direction: 'inbound', result: kind === 'stalled' ? 'timeout' : kind });
    if (kind === 'opaque' || kind === 'timeout') return go();
    up.destroy();
    if (kind === 'stalled') {
      this.d.metrics.limits.inc({ direction: 'inbound', limit: 'detect-timeout' });
      stream.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    this.decode(stream, kind, port, principal);
  }

  /** `silentPrincipal`: the stream said nothing through detection (afterSilence()); its peer. */
  private spliceToApp(stream: ServerHttp2Stream, port: number, labels: TcpLabels, silentPrincipal?: string): void {
    const beforeSplice = silentPrincipal !== undefined ? (up: Duplex, go: () => void) => void this.afterSilence(stream, up, port, silentPrincipal, go) : undefined;
    tunnelToApp(this.d, port, stream, {
      ...(beforeSplice ? { beforeSplice } : {}),
      connected: () => {
        if (!stream.destroyed && !stream.closed) stream.respond({ ':status': 200 });
      },
      failed: (e) => {
        // The peer may have reset the stream while the app connect was pending.
        if (stream.destroyed || stream.closed) return;
        if (!stream.headersSent) refuseTunnel(stream, e);
        else stream.destroy();
      },
    }, labels);
  }
  /** GOAWAY to the sessions decoded from CONNECT streams, close their idle HTTP/1.1 connections. */
  drain(): void {
    this.tunnelled.drain();
  }

  close(): void {
    this.tunnelled.close();
  }
}

const ignore = (): void => undefined;

/** The mTLS peer of a stream's session; '' once the session is gone (node may still emit its streams). */
export function sessionPeer(stream: ServerHttp2Stream): string {
  const socket = stream.session?.socket;
  return socket ? peerSpiffeId(socket as TLSSocket) : '';
}
