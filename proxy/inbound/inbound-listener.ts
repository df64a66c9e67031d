import { createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect, type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { HttpService } from '../http/exchange.js';
import { attachH2Handler } from '../http/h2-server.js';
import { MESH } from '../http/headers.js';
import { splice } from '../net/tcp-tunnel.js';
import { peerSpiffeId } from '../tls/peer-identity.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import { parseTargetPort } from './target-port.js';

export interface InboundDeps {
  readonly address: string;
  readonly port: number;
  readonly appAddress: string;
  readonly reservedPorts: ReadonlySet<number>;
  readonly maxHeaderBytes: number;
  readonly maxConcurrentStreams: number;
  readonly tls: TlsIdentity;
  readonly http: HttpService;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * The inbound listener terminates mutual TLS (STRICT: a client certificate chaining to
 * the trust bundle is required; plaintext and foreign CAs fail the handshake), speaks
 * HTTP/2 with the peer sidecar, and hands each stream to the inbound layers, or, for
 * CONNECT streams, splices an opaque TCP connection to the app's port.
 */
export class InboundListener {
  private readonly server: Http2SecureServer;
  private readonly sessions = new Set<ServerHttp2Session>();
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly d: InboundDeps) {
    this.server = createSecureServer({
      ...d.tls.contextOptions,
      requestCert: true,
      rejectUnauthorized: true,
      // Small HTTP/2 frames must not wait for Nagle (with delayed ACKs that is up to 40 ms).
      noDelay: true,
      ALPNProtocols: ['h2'],
      allowHTTP1: false,
      maxHeaderListPairs: 512,
      settings: { maxConcurrentStreams: d.maxConcurrentStreams, maxHeaderListSize: d.maxHeaderBytes, initialWindowSize: 1 << 20 },
    });
    d.tls.onRotate(() => this.server.setSecureContext(d.tls.contextOptions));
    this.server.on('session', (s) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
      s.on('error', (e) => d.logger.debug('inbound session error', { error: e }));
      s.on('connect', () => s.setLocalWindowSize(16 << 20));
    });
    this.server.on('tlsClientError', (err) => {
      d.metrics.proxyErrors.inc({ direction: 'inbound', code: 'tls-handshake' });
      d.logger.info('inbound TLS handshake refused', { code: 'TLS_HANDSHAKE', error: err.message });
    });
    this.server.on('stream', (stream) => {
      this.inflight++;
      stream.once('close', () => {
        if (--this.inflight === 0) this.idleWaiters.splice(0).forEach((w) => w());
      });
    });
    attachH2Handler(this.server, {
      service: d.http,
      clock: d.clock,
      identityOf: (stream) => peerSpiffeId(stream.session!.socket as TLSSocket),
      onConnect: (stream, headers) => this.tunnel(stream, headers),
    });
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.d.port, this.d.address, () => resolve(this.server.address() as AddressInfo));
    });
  }

  private tunnel(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const port = parseTargetPort(headers[MESH.targetPort], this.d.reservedPorts);
    if (port instanceof Error) {
      stream.respond({ ':status': 400, 'wren-proxy-error': 'bad-request' }, { endStream: true });
      return;
    }
    const up = netConnect({ host: this.d.appAddress, port });
    up.once('connect', () => {
      stream.respond({ ':status': 200 });
      this.d.metrics.tcpOpened.inc({ direction: 'inbound', destination_service: String(port) });
      splice(stream, up, (b) => {
        this.d.metrics.tcpClosed.inc({ direction: 'inbound', destination_service: String(port) });
        this.d.metrics.tcpReceived.inc({ direction: 'inbound', destination_service: String(port) }, b.aToB);
        this.d.metrics.tcpSent.inc({ direction: 'inbound', destination_service: String(port) }, b.bToA);
      });
    });
    up.once('error', (err) => {
      if (!stream.headersSent) stream.respond({ ':status': 502, 'wren-proxy-error': 'connect-refused' }, { endStream: true });
      else stream.destroy();
      this.d.logger.warn('inbound tunnel to app failed', { code: 'CONNECT_REFUSED', port, error: err.message });
    });
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
  }
}
