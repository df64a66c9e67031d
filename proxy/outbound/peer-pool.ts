import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { isIPv6, connect as netConnect, type Socket } from 'node:net';
import { X509Certificate } from 'node:crypto';
import type { Endpoint } from '../../contract/model.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import { spiffeIdOf } from '../tls/peer-identity.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { Logger } from '../../common/logger.js';
import type { Admission } from '../resilience/concurrency-limits.js';

export interface PeerPoolOptions {
  readonly tls: TlsIdentity;
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
  readonly onConnection?: (kind: 'mtls' | 'plaintext') => void;
}

/**
 * One multiplexed HTTP/2 session per peer sidecar, over mutual TLS with ALPN h2 (as
 * Linkerd does): every request and tunnel to that pod is a stream on it. The peer
 * must present the SPIFFE ID the endpoint advertises, or the session is refused.
 * Unmeshed endpoints get plaintext h2c sessions the same way.
 */
export class PeerPool {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  /** The session each pooled promise resolved to, so the hot path can skip awaiting it. */
  private readonly resolved = new WeakMap<Promise<ClientHttp2Session>, ClientHttp2Session>();
  private closed = false;

  constructor(private readonly opts: PeerPoolOptions) {
    // After a certificate rotation new requests must present the new certificate: retire
    // the pooled sessions gracefully (GOAWAY; their in-flight streams finish on the old
    // one) so the next request opens a session with the new context.
    opts.tls.onRotate(() => this.retireAll());
  }

  /** Stop handing out the current sessions; each closes once its in-flight streams are done. */
  retireAll(): void {
    const old = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of old) s.then((x) => x.close(), () => undefined);
  }

  /**
   * Session to the endpoint's sidecar (mTLS) or, when unmeshed, to the app itself (h2c).
   * `connectTimeoutMs` (the service policy's) overrides the pool default when this call
   * opens the session; a session already being opened keeps its own timeout.
   * `connection` is the caller's cluster's connection slot (max_connections): kept until
   * the session closes when this call opens it, given back at once otherwise.
   */
  get(ep: Endpoint, connectTimeoutMs?: number, connection?: Admission): Promise<ClientHttp2Session> {
    if (this.closed) {
      connection?.release();
      return Promise.reject(new ProxyError('DRAINING'));
    }
    const meshed = ep.proxyPort !== null;
    const port = meshed ? ep.proxyPort! : ep.port;
    const key = `${ep.address}|${port}|${ep.identity}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = this.connect(ep.address, port, meshed ? ep.identity : null, connectTimeoutMs ?? this.opts.connectTimeoutMs);
      this.sessions.set(key, s);
      s.then(
        (sess) => {
          this.resolved.set(s!, sess);
          const drop = () => {
            if (this.sessions.get(key) === s) this.sessions.delete(key);
          };
          sess.on('close', drop);
          sess.on('goaway', drop);
          sess.on('error', drop);
        },
        () => {
          if (this.sessions.get(key) === s) this.sessions.delete(key);
        },
      );
      if (connection) s.then((sess) => sess.once('close', connection.release), connection.release);
    } else connection?.release();
    return s;
  }

  /** Whether a session to the endpoint's peer is pooled, open or being opened (then get() opens nothing). */
  has(ep: Endpoint): boolean {
    const port = ep.proxyPort !== null ? ep.proxyPort : ep.port;
    return !this.closed && this.sessions.has(`${ep.address}|${port}|${ep.identity}`);
  }

  /**
   * The session an active health check to a meshed endpoint uses: the same pooled mTLS
   * session as user requests to that sidecar (peer SPIFFE ID verified), so a probe checks
   * the path traffic takes (resilience/mesh-probes.ts).
   */
  probeSession(t: { readonly address: string; readonly port: number; readonly proxyPort: number; readonly identity: string }, connectTimeoutMs: number): Promise<ClientHttp2Session> {
    return this.get({ address: t.address, port: t.port, proxyPort: t.proxyPort, identity: t.identity, weight: 1, zone: '', ready: true }, connectTimeoutMs);
  }

  /**
   * The pooled session to the endpoint if it is already open and usable, else undefined
   * (then call get()). Lets a request skip a promise round trip per hop.
   */
  ready(ep: Endpoint): ClientHttp2Session | undefined {
    if (this.closed) return undefined;
    const port = ep.proxyPort !== null ? ep.proxyPort : ep.port;
    const p = this.sessions.get(`${ep.address}|${port}|${ep.identity}`);
    const sess = p && this.resolved.get(p);
    return sess && !sess.closed && !sess.destroyed ? sess : undefined;
  }

  private connect(host: string, port: number, identity: string | null, timeoutMs: number): Promise<ClientHttp2Session> {
    return new Promise((resolve, reject) => {
      let socket: Socket;
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket?.destroy();
        reject(err instanceof ProxyError ? err : toProxyError(err, 'CONNECT_FAILED'));
      };
      const timer = setTimeout(() => fail(new ProxyError('CONNECT_TIMEOUT', `${host}:${port} after ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      if (identity !== null) {
        socket = tlsConnect({
          host,
          port,
          secureContext: this.opts.tls.secureContext,
          ALPNProtocols: ['h2'],
          rejectUnauthorized: true,
          // Identity is the SPIFFE URI SAN, not a DNS name: check it instead of the hostname.
          checkServerIdentity: (_h: string, cert: PeerCertificate) => {
            const got = spiffeIdOf(cert.raw ? new X509Certificate(cert.raw) : undefined);
            if (identity !== '' && got !== identity) return new ProxyError('PEER_IDENTITY', `expected ${identity}, got ${got || 'none'}`);
            return undefined;
          },
        });
        socket.once('secureConnect', () => ready('mtls'));
      } else {
        socket = netConnect({ host, port });
        socket.once('connect', () => ready('plaintext'));
      }
      socket.once('error', fail);
      const ready = (kind: 'mtls' | 'plaintext') => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.removeListener('error', fail);
        socket.setNoDelay(true);
        this.opts.onConnection?.(kind);
        // An IPv6 literal goes in brackets in a URL (RFC 3986 section 3.2.2).
        const session = h2connect(`${identity !== null ? 'https' : 'http'}://${isIPv6(host) ? `[${host}]` : host}:${port}`, {
          createConnection: () => socket,
          settings: { enablePush: false, initialWindowSize: 1 << 20 },
        });
        session.on('error', (e) => this.opts.logger.debug('peer session error', { peer: `${host}:${port}`, error: e }));
        // A bigger connection window keeps many parallel streams from starving each other.
        session.on('connect', () => session.setLocalWindowSize(16 << 20));
        session.unref();
        resolve(session);
      };
    });
  }

  /** Graceful: GOAWAY to every peer; in-flight streams finish. */
  close(): void {
    this.closed = true;
    this.retireAll();
  }

  get size(): number {
    return this.sessions.size;
  }
}
