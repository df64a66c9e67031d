import { connect as netConnect, type Socket } from 'node:net';
import type { ClientHttp2Session } from 'node:http2';
import type { Endpoint } from '../../contract/model.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import type { Clock } from '../../common/clock.js';
import type { H1Pool } from '../http/h1-pool.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';

const ignore = (): void => undefined;
/**
 * Opaque TCP only (a tunnel's upstream): allowHalfOpen, so an upstream's FIN is relayed to
 * the client (splice) and the client may go on sending, rather than Node ending our side
 * at once and turning a half-close into a full one (RFC 9293 section 3.6).
 */
const dialTcp = (host: string, port: number): Socket => netConnect({ host, port, allowHalfOpen: true });

/**
 * What a connector hands back: the thing a request, an upgrade or a tunnel is then sent
 * on. The union is open by design: a new transport (HTTP/1.1 pooled over mTLS between
 * sidecars, say) is one more member with its own `kind`, and its connector.
 */
export type Upstream = H2Upstream | H1Upstream | TcpUpstream;

/** An HTTP/2 session: to a peer sidecar (mTLS, ALPN h2), or h2c to the local app or an unmeshed endpoint. */
export interface H2Upstream {
  readonly kind: 'h2';
  readonly session: ClientHttp2Session;
}

/** An HTTP/1.1 keep-alive pool to one origin: it opens and reuses connections per exchange itself. */
export interface H1Upstream {
  readonly kind: 'h1';
  readonly pool: H1Pool;
  readonly address: string;
  readonly port: number;
}

/** A connected TCP socket (opaque TCP to an unmeshed endpoint or to the local app). */
export interface TcpUpstream {
  readonly kind: 'tcp';
  readonly socket: Socket;
}

/**
 * `connect(endpoint, timeout) → upstream`, the one way the data path reaches anything:
 * the outbound stack's peers (pick-endpoint), delivery to the local app and opaque TCP.
 * pick-endpoint owns the policy around it (connect timeout, max_pending_requests,
 * max_connections, the attempt's outcome); a connector only knows how to connect.
 */
export interface Connector<U extends Upstream = Upstream> {
  /**
   * The upstream when it is open already, else undefined. The hot path: a request to a
   * peer whose session is up takes it synchronously, with no promise round trip.
   */
  ready(ep: Endpoint): U | undefined;
  /** Whether a connection to the endpoint is open or being opened (waiting for it opens none). */
  opening(ep: Endpoint): boolean;
  /**
   * Opens (or joins the opening of) the upstream within `timeoutMs` (CONNECT_TIMEOUT
   * after it). `connection` is the cluster's connection slot (max_connections): held for
   * the connection's life when this call opens one, given back at once otherwise.
   */
  connect(ep: Endpoint, timeoutMs: number, connection?: Admission): Promise<U>;
}

/** The surface of PeerPool a session connector needs (proxy/outbound/peer-pool.ts). */
export interface SessionPool {
  ready(ep: Endpoint): ClientHttp2Session | undefined;
  has(ep: Endpoint): boolean;
  get(ep: Endpoint, connectTimeoutMs?: number, connection?: Admission): Promise<ClientHttp2Session>;
}

/**
 * HTTP/2 sessions from a pool (one per peer sidecar, or per app port for h2c delivery).
 * The wrapper of a session is made once per session, not per request.
 */
export class SessionConnector implements Connector<H2Upstream> {
  private readonly wrapped = new WeakMap<ClientHttp2Session, H2Upstream>();
  private readonly wrap = (session: ClientHttp2Session): H2Upstream => {
    let u = this.wrapped.get(session);
    if (!u) this.wrapped.set(session, (u = { kind: 'h2', session }));
    return u;
  };

  constructor(private readonly pool: SessionPool) {}

  ready(ep: Endpoint): H2Upstream | undefined {
    const s = this.pool.ready(ep);
    return s && this.wrap(s);
  }

  opening(ep: Endpoint): boolean {
    return this.pool.has(ep);
  }

  connect(ep: Endpoint, timeoutMs: number, connection?: Admission): Promise<H2Upstream> {
    return this.pool.get(ep, timeoutMs, connection).then(this.wrap);
  }
}

/**
 * HTTP/1.1 to an origin through a keep-alive pool: always "ready" (the pool connects per
 * exchange and applies its own connection limits and wait), so it never costs a promise.
 * Endpoints are long-lived objects (cluster entries, the app's per-port endpoint), so the
 * upstream is cached per endpoint object.
 */
export class H1Connector implements Connector<H1Upstream> {
  private readonly byEndpoint = new WeakMap<Endpoint, H1Upstream>();

  constructor(private readonly pool: H1Pool) {}

  ready(ep: Endpoint): H1Upstream {
    let u = this.byEndpoint.get(ep);
    if (!u) this.byEndpoint.set(ep, (u = { kind: 'h1', pool: this.pool, address: ep.address, port: ep.port }));
    return u;
  }

  opening(): boolean {
    return true;
  }

  connect(ep: Endpoint, _timeoutMs: number, connection?: Admission): Promise<H1Upstream> {
    connection?.release();
    return Promise.resolve(this.ready(ep));
  }
}

export interface TcpConnectorOptions {
  readonly clock: Clock;
  /** Opens the socket (tests pass a fake); node's net.connect by default. */
  readonly dial?: (host: string, port: number) => Socket;
}

/**
 * A new TCP connection per call to the endpoint's own address and port (an unmeshed
 * endpoint, or the local app): nothing to reuse, so never ready. Fails with
 * CONNECT_TIMEOUT after `timeoutMs` (the socket is destroyed), or with the socket error
 * mapped by toProxyError (ECONNREFUSED: CONNECT_REFUSED...). The connection slot, if
 * any, is held until the socket closes.
 */
export class TcpConnector implements Connector<TcpUpstream> {
  private readonly dial: (host: string, port: number) => Socket;

  constructor(private readonly opts: TcpConnectorOptions) {
    this.dial = opts.dial ?? dialTcp;
  }

  ready(): undefined {
    return undefined;
  }

  opening(): boolean {
    return false;
  }

  connect(ep: Endpoint, timeoutMs: number, connection?: Admission): Promise<TcpUpstream> {
    return new Promise((resolve, reject) => {
      const { clock } = this.opts;
      const socket = this.dial(ep.address, ep.port);
      if (connection) socket.once('close', () => connection.release());
      const fail = (err: unknown) => {
        clock.clearTimeout(timer);
        socket.removeListener('connect', ok);
        socket.destroy();
        reject(err instanceof ProxyError ? err : toProxyError(err, 'CONNECT_FAILED'));
      };
      const ok = () => {
        clock.clearTimeout(timer);
        socket.removeListener('error', fail);
        // Whoever takes the socket adds its own handler; none may be missing in between.
        socket.on('error', ignore);
        socket.setNoDelay(true);
        resolve({ kind: 'tcp', socket });
      };
      const timer = clock.setTimeout(() => fail(new ProxyError('CONNECT_TIMEOUT', `${ep.address}:${ep.port} after ${timeoutMs} ms`)), timeoutMs);
      timer.unref?.();
      socket.once('connect', ok);
      socket.once('error', fail);
    });
  }
}
