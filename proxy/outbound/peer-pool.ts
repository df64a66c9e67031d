import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { isIPv6, connect as netConnect, type Socket } from 'node:net';
import type { Endpoint } from '../../contract/model.js';
import type { TlsIdentity } from '../tls/tls-identity.js';
import { connectPeer } from '../tls/connect-peer.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { Logger } from '../../common/logger.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import { nodeTimerMs, systemClock, type Clock, type Timer } from '../../common/clock.js';
import { markFromApp, setLimitCounter, setResetBudget } from '../http/session-resets.js';

export interface PeerPoolOptions {
  readonly tls: TlsIdentity;
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
  readonly onConnection?: (kind: 'mtls' | 'plaintext') => void;
  /** HTTP/2 PING every intervalMs; a session that does not answer within timeoutMs is destroyed (0: off). */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
  /** A keepalive timeout fired. */
  readonly onKeepaliveTimeout?: () => void;
  /** How long close() lets in-flight streams finish before destroying the sessions (default 1 s). */
  readonly closeGraceMs?: number;
  /**
   * Resets a session may see before it is retired (0: never; http/session-resets.ts).
   * The app session pool sets it below the app's own rapid-reset limit.
   */
  readonly resetBudget?: number;
  /** A session was retired for its reset budget. */
  readonly onResetBudget?: () => void;
  /** A session's upstream broke a per-stream limit (more 1xx than MAX_INTERIM_RESPONSES: http/h2-call.ts). */
  readonly onLimit?: (limit: 'interim-responses') => void;
  /** The sessions reach the local app (the app session pool): their responses' trailers lose the fields only a sidecar writes. */
  readonly fromApp?: boolean;
  readonly clock?: Clock;
  /** Receive windows of the sessions (limits.http2Initial*WindowBytes); default 1 MiB per stream, 16 MiB per session. */
  readonly windows?: { readonly streamBytes: number; readonly connectionBytes: number };
}

/**
 * Meshed endpoints are immutable objects from the mesh config, the same for every request:
 * their pool key is built once, not per request. Others (the inbound's app endpoint is
 * made per request) get theirs built each time, so the cache never grows per request.
 */
/**
 * What a response's header section (and its trailer section) may hold on the HTTP/2
 * sessions PeerPool opens, to peer sidecars and to the app: node:http2's defaults (128
 * field lines, SETTINGS_MAX_HEADER_LIST_SIZE 65535), named so that HTTP/2 carried as
 * HTTP/1.1 between the sidecars (protocol.meshHttp2 mux, proxy.ts) takes the same responses.
 */
export const PEER_SESSION_HEADERS = { maxFields: 128, maxBytes: 65535 } as const;

const KEYS = new WeakMap<Endpoint, string>();

function keyOf(ep: Endpoint): string {
  if (ep.proxyPort === null) return `${ep.address}|${ep.port}|${ep.identity}`;
  let k = KEYS.get(ep);
  if (k === undefined) {
    k = `${ep.address}|${ep.proxyPort}|${ep.identity}`;
    KEYS.set(ep, k);
  }
  return k;
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
  private readonly clock: Clock;

  constructor(private readonly opts: PeerPoolOptions) {
    this.clock = opts.clock ?? systemClock;
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
    const key = keyOf(ep);
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
          // Never keep a session marked open with no socket behind it (issue 11, item 1):
          // Node only closes the streams of a session whose socket closed, with RST_STREAM
          // frames that can never be written, so it would stay "open" with its queue.
          sess.socket.once('close', () => {
            drop();
            if (!sess.destroyed) sess.destroy();
          });
          this.keepalive(sess, drop);
          if (this.opts.onLimit !== undefined) setLimitCounter(sess, this.opts.onLimit);
          if (this.opts.fromApp === true) markFromApp(sess);
          setResetBudget(sess, this.opts.resetBudget ?? 0, () => {
            this.opts.onResetBudget?.();
            drop();
            sess.close();
          });
        },
        () => {
          if (this.sessions.get(key) === s) this.sessions.delete(key);
        },
      );
      if (connection) s.then((sess) => sess.once('close', () => connection.release()), () => connection.release());
    } else connection?.release();
    return s;
  }

  /**
   * The endpoint's peer (or, unmeshed, the endpoint) is no longer in any cluster
   * (outbound/endpoint-drain.ts): its session takes no new stream (GOAWAY), closes once its
   * streams are done and then gives back the connection slot it holds, as Envoy drains the
   * pools of a host removed from discovery. Without it, nothing ever closed that session.
   */
  drain(ep: Endpoint): void {
    const key = keyOf(ep);
    const s = this.sessions.get(key);
    if (s === undefined) return;
    this.sessions.delete(key);
    s.then((x) => x.close(), () => undefined);
  }

  /** Whether a session to the endpoint's peer is pooled, open or being opened (then get() opens nothing). */
  has(ep: Endpoint): boolean {
    return !this.closed && this.sessions.has(keyOf(ep));
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
   * HTTP/2 PING on an interval (Linkerd and gRPC keepalive): a peer that stops answering
   * (a silently dropped connection, a wedged peer) is found within interval + timeout,
   * and its session destroyed so the next request opens a new one.
   */
  private keepalive(sess: ClientHttp2Session, drop: () => void): void {
    const ka = this.opts.keepalive;
    if (!ka || ka.intervalMs <= 0 || ka.timeoutMs <= 0) return;
    let timer: Timer | null = null;
    const schedule = () => {
      timer = this.clock.setTimeout(ping, ka.intervalMs);
      timer.unref?.();
    };
    const ping = () => {
      if (sess.destroyed || sess.closed) return;
      let answered = false;
      const deadline = this.clock.setTimeout(() => {
        if (answered || sess.destroyed) return;
        this.opts.onKeepaliveTimeout?.();
        this.opts.logger.warn('peer session did not answer a PING; closing it', { code: 'PEER_KEEPALIVE_TIMEOUT', timeoutMs: ka.timeoutMs });
        drop();
        sess.destroy();
      }, ka.timeoutMs);
      deadline.unref?.();
      const sent = sess.ping((err) => {
        answered = true;
        this.clock.clearTimeout(deadline);
        if (!err) schedule();
      });
      if (!sent) this.clock.clearTimeout(deadline);
    };
    sess.once('close', () => timer && this.clock.clearTimeout(timer));
    schedule();
  }

  /**
   * The pooled session to the endpoint if it is already open and usable, else undefined
   * (then call get()). Lets a request skip a promise round trip per hop.
   */
  ready(ep: Endpoint): ClientHttp2Session | undefined {
    if (this.closed) return undefined;
    const p = this.sessions.get(keyOf(ep));
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
      // nodeTimerMs: a policy's "720h" connect timeout must not become Node's 1 ms.
      const timer = setTimeout(() => fail(new ProxyError('CONNECT_TIMEOUT', `${host}:${port} after ${timeoutMs} ms`)), nodeTimerMs(timeoutMs));
      timer.unref();
      if (identity !== null) {
        socket = connectPeer(this.opts.tls, host, port, identity, 'h2');
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
          maxHeaderListPairs: PEER_SESSION_HEADERS.maxFields,
          settings: { enablePush: false, initialWindowSize: this.opts.windows?.streamBytes ?? 1 << 20, maxHeaderListSize: PEER_SESSION_HEADERS.maxBytes },
        });
        session.on('error', (e) => this.opts.logger.debug('peer session error', { peer: `${host}:${port}`, error: e }));
        // A bigger connection window keeps many parallel streams from starving each other.
        session.on('connect', () => session.setLocalWindowSize(this.opts.windows?.connectionBytes ?? 16 << 20));
        session.unref();
        resolve(session);
      };
    });
  }

  /**
   * GOAWAY to every peer; in-flight streams get closeGraceMs to finish, then every session
   * is destroyed, so shutdown never waits on (or spins flushing) a wedged session.
   */
  close(): void {
    this.closed = true;
    const all = [...this.sessions.values()];
    this.retireAll();
    const t = this.clock.setTimeout(() => {
      for (const s of all) s.then((x) => x.destroyed || x.destroy(), () => undefined);
    }, this.opts.closeGraceMs ?? 1000);
    t.unref?.();
  }

  get size(): number {
    return this.sessions.size;
  }
}
