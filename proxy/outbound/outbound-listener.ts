import { createServer as createNetServer, connect as netConnect, type Server, type Socket, type AddressInfo } from 'node:net';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import type { IncomingMessage, Server as H1Server } from 'node:http';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { endpointKey, type Endpoint } from '../../contract/model.js';
import type { HttpService } from '../http/exchange.js';
import { createH1Server } from '../http/h1-server.js';
import { attachH2Handler, H2_HEADER_HARD_CAP_FACTOR } from '../http/h2-server.js';
import { MESH } from '../http/headers.js';
import { detectProtocol } from '../net/detect-protocol.js';
import { originalDst, type OriginalDst } from '../net/original-dst.js';
import { splice } from '../net/tcp-tunnel.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { classify } from '../resilience/classify.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { RouteTable, Route } from './route-table.js';
import type { ClusterSet } from './cluster-set.js';
import type { PeerPool } from './peer-pool.js';
import { listen } from '../../common/listen.js';
import type { ProxyLimits } from '../config/proxy-config.js';
import { guardH2Session, type LimitName } from '../http/h2-session-guard.js';

export interface OutboundDeps {
  readonly address: string;
  readonly port: number;
  readonly detectTimeoutMs: number;
  readonly opaquePorts: ReadonlySet<number>;
  readonly maxHeaderBytes: number;
  /** Timeouts, the connection cap and the rapid-reset budget (docs/security.md). */
  readonly limits: ProxyLimits;
  readonly http: HttpService;
  readonly routes: () => RouteTable;
  readonly clusters: () => ClusterSet;
  readonly peers: PeerPool;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly originalDst?: (s: Socket) => OriginalDst | undefined;
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
  private readonly origDsts = new WeakMap<Socket, OriginalDst>();
  private readonly sockets = new Set<Socket>();

  constructor(private readonly d: OutboundDeps) {
    const origDstOf = (s: Socket) => this.origDsts.get(s);
    const L = d.limits;
    const onLimit = (limit: LimitName) => d.metrics.limits.inc({ direction: 'outbound', limit });
    this.h1 = createH1Server({
      service: d.http, maxHeaderBytes: d.maxHeaderBytes, clock: d.clock, origDstOf,
      headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs, onLimit,
      onUpgrade: (req, socket, head) => this.upgrade(req, socket, head),
    });
    this.h2 = createH2Server({ maxHeaderListPairs: 512, settings: { maxHeaderListSize: d.maxHeaderBytes * H2_HEADER_HARD_CAP_FACTOR, initialWindowSize: 1 << 20 } });
    this.h2.on('session', (s) => {
      s.on('connect', () => s.setLocalWindowSize(16 << 20));
      // The app is the untrusted side here: its connections carry the rapid-reset budget.
      guardH2Session(s, {
        clock: d.clock, onLimit, prematureResets: L.prematureResets,
        headersTimeoutMs: L.requestHeadersTimeoutMs, idleTimeoutMs: L.idleConnectionTimeoutMs, streamIdleTimeoutMs: L.streamIdleTimeoutMs,
      });
    });
    attachH2Handler(this.h2, { service: d.http, clock: d.clock, origDstOf, maxHeaderBytes: d.maxHeaderBytes });
    this.server = createNetServer({ noDelay: true }, (s) => void this.accept(s));
  }

  listen(): Promise<AddressInfo> {
    return listen(this.server, this.d.port, this.d.address);
  }

  private async accept(socket: Socket): Promise<void> {
    if (this.sockets.size >= this.d.limits.maxConnectionsPerListener) {
      this.d.metrics.limits.inc({ direction: 'outbound', limit: 'max-connections' });
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (e) => this.d.logger.debug('outbound client socket error', { error: e }));
    const dst = (this.d.originalDst ?? originalDst)(socket);
    if (dst) this.origDsts.set(socket, dst);
    const table = this.d.routes();
    const route = dst ? table.byAddress(dst.address, dst.port) : undefined;
    if (dst && !route) {
      this.d.metrics.passthrough.inc({ reason: 'unknown-destination' });
      this.passthrough(socket, dst);
      return;
    }
    if ((dst && this.d.opaquePorts.has(dst.port)) || route?.port.protocol === 'opaque') {
      this.d.metrics.detect.inc({ direction: 'outbound', result: 'opaque-port' });
      this.tcp(socket, route, dst);
      return;
    }
    const proto = route?.port.protocol;
    const detected = proto === 'http1' ? 'http1' : proto === 'http2' || proto === 'grpc' ? 'http2' : await detectProtocol(socket, this.d.detectTimeoutMs, this.d.clock);
    this.d.metrics.detect.inc({ direction: 'outbound', result: detected });
    if (detected === 'http1') {
      this.h1.emit('connection', socket);
      socket.resume();
    } else if (detected === 'http2') {
      this.h2.emit('connection', socket);
    } else {
      this.tcp(socket, route, dst);
    }
  }

  private passthrough(socket: Socket, dst: OriginalDst): void {
    const up = netConnect({ host: dst.address, port: dst.port });
    splice(socket, up);
  }

  /** Opaque TCP to a mesh service: balanced per connection, tunnelled over the peer's mTLS session. */
  private tcp(socket: Socket, route: Route | undefined, dst: OriginalDst | undefined): void {
    if (!route) {
      this.d.logger.info('closing opaque connection with no destination', { code: 'NO_ROUTE' });
      socket.destroy();
      return;
    }
    const svc = `${route.service.name}.${route.service.namespace}.svc.cluster.local`;
    const cluster = this.d.clusters().get(route.service, route.port);
    if (!cluster) {
      this.d.logger.warn('opaque connection failed', { code: 'NO_ENDPOINTS', service: svc });
      socket.destroy();
      return;
    }
    // Balanced per connection; the connection counts as in flight until it closes. A
    // connect failure is a local-origin failure and, since nothing was sent, is tried on
    // another endpoint (up to 3 endpoints).
    const tried = new Set<string>();
    const attempt = (n: number): void => {
      const ep = cluster.pick({ hashKey: socket.remoteAddress, exclude: tried });
      if (ep instanceof ProxyError) {
        this.d.logger.warn('opaque connection failed', { code: ep.code, service: svc });
        socket.destroy();
        return;
      }
      tried.add(endpointKey(ep));
      const started = this.d.clock.now();
      const done = cluster.start(ep);
      void this.openTunnel(ep, Buffer.alloc(0)).then(
        (up) => {
          const connectMs = this.d.clock.now() - started;
          let upError: unknown;
          up.once('error', (e) => (upError = e));
          this.d.metrics.tcpOpened.inc({ direction: 'outbound', destination_service: svc });
          splice(socket, up, (b) => {
            const failed = upError !== undefined && b.bToA === 0;
            done(failed ? classify({ type: 'error', error: toProxyError(upError, 'CONNECT_FAILED') }) : classify({ type: 'response', status: 200 }), connectMs);
            this.d.metrics.tcpClosed.inc({ direction: 'outbound', destination_service: svc });
            this.d.metrics.tcpReceived.inc({ direction: 'outbound', destination_service: svc }, b.aToB);
            this.d.metrics.tcpSent.inc({ direction: 'outbound', destination_service: svc }, b.bToA);
          });
        },
        (err) => {
          const e = toProxyError(err, 'CONNECT_FAILED');
          const outcome = classify({ type: 'error', error: e });
          done(outcome, this.d.clock.now() - started);
          if (outcome.retryable.alwaysSafe && n < 3 && !socket.destroyed) return attempt(n + 1);
          this.d.logger.warn('opaque connection failed', { code: e.code, service: svc, dst });
          socket.destroy();
        },
      );
    };
    attempt(1);
  }

  /** A byte stream to the endpoint's app port: an HTTP/2 CONNECT stream over mTLS when meshed. */
  private async openTunnel(ep: Endpoint, first: Buffer): Promise<import('node:stream').Duplex> {
    if (ep.proxyPort === null) {
      const up = netConnect({ host: ep.address, port: ep.port });
      if (first.length) up.write(first);
      return up;
    }
    const session = await this.d.peers.get(ep);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `${ep.address}:${ep.port}`, [MESH.targetPort]: String(ep.port) });
    if (first.length) stream.write(first);
    return stream;
  }

  /** WebSocket and other HTTP/1.1 upgrades: the request head is replayed into an opaque tunnel. */
  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const dst = this.origDsts.get(socket);
    const table = this.d.routes();
    const route = table.byAuthority(req.headers.host ?? '') ?? (dst ? table.byAddress(dst.address, dst.port) : undefined);
    const cluster = route ? this.d.clusters().get(route.service, route.port) : undefined;
    const ep = cluster ? cluster.pick({ hashKey: socket.remoteAddress }) : new ProxyError('NO_ROUTE', req.headers.host);
    if (ep instanceof ProxyError) {
      socket.end(`HTTP/1.1 ${ep.httpStatus} Proxy Error\r\nwren-proxy-error: ${ep.label}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      return;
    }
    const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    const replay = Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), head]);
    const started = this.d.clock.now();
    const done = cluster!.start(ep);
    this.openTunnel(ep, replay).then(
      (up) => {
        const connectMs = this.d.clock.now() - started;
        splice(socket, up, () => done(classify({ type: 'response', status: 101 }), connectMs));
      },
      (err: ProxyError) => {
        done(classify({ type: 'error', error: toProxyError(err, 'CONNECT_FAILED') }), this.d.clock.now() - started);
        socket.end(`HTTP/1.1 ${err.httpStatus ?? 502} Proxy Error\r\nwren-proxy-error: ${err.label ?? 'connect-failed'}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      },
    );
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stop accepting and drop every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
