import { connect, Socket, type OnReadOpts } from 'node:net';
import type { Agent } from 'node:http';
import { LeanBody } from './lean-body.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { isSettled, type BodyStream, type ProxyRequest, type ProxyResponse, type SettledBody } from './exchange.js';
import { MESH, type Headers } from './headers.js';
import { H1Parser, type H1Handler } from '../h1/parser.js';
import { Body, fieldsToHeaders, type H1Head } from '../h1/head.js';
import type { H1Error } from '../h1/h1-error.js';
import { DEFAULT_H1_LIMITS, type H1Limits as CodecLimits } from '../h1/limits.js';
import { headJoinsChunk, lastChunk, requestHead, writeChunk, writeMessage } from '../h1/serialize.js';
import { setDirectReads } from '../net/direct-reads.js';
import { keepable, lentCopy, SocketReleases } from '../net/body-buffers.js';
import { inTurn } from '../../common/deferred.js';
import { IDEMPOTENT } from './idempotent.js';
import { systemClock, type Clock, type Timer } from '../../common/clock.js';
import { objectArray } from '../../common/object-array.js';

export interface H1PoolOptions {
  /** Connections per origin (host:port); requests beyond it wait for one to be free. */
  readonly maxSockets?: number;
  /**
   * Idle connections close after this long; a server's `Keep-Alive: timeout=N` hint replaces
   * it for that connection, less 1 s of margin, up to maxIdleTimeoutMs.
   */
  readonly idleTimeoutMs?: number;
  /**
   * The longest a server's keep-alive hint may keep an idle connection (undici's
   * keepAliveMaxTimeout). Default: idleTimeoutMs, so a hint only shortens it.
   */
  readonly maxIdleTimeoutMs?: number;
  /** The idle timeout's time (default: the system clock). */
  readonly clock?: Clock;
  readonly maxHeaderBytes?: number;
  /** Fields in a response head or trailer section (default: the codec's, 100). */
  readonly maxHeaderCount?: number;
  /**
   * A request body up to this many bytes is kept, as sent, until its response starts or the
   * connection shows the peer took it (a mux stream's `accepted`), so a request whose
   * virtual connection the peer refused (proxy/mux: over its stream limit, never processed)
   * goes again whole, body included (default 0: only bodyless ones go again).
   */
  readonly refusedReplayBytes?: number;
  /**
   * The requests are HTTP/2 ones carried to a peer sidecar (protocol.meshHttp2 mux). In
   * HTTP/2 a content-length is the sender's to give (END_STREAM frames the message); here
   * the head's frames the HTTP/1.1 message, and the sender's own, if any, travels in
   * `wren-content-length` both ways. So a request with a body goes chunked, and its
   * trailers can follow (HTTP/1.1 has them only in a chunked body).
   */
  readonly meshH2?: boolean;
  /**
   * Opens a connection (default: plain TCP). The mesh pool passes a TLS connect that
   * verifies the peer sidecar's SPIFFE ID (outbound/mesh-h1-pool.ts); `secure` says the
   * socket is a TLSSocket, ready at 'secureConnect'. It should pass `onread` on to
   * net.connect / tls.connect (the pool then reads into its own buffer, without 'data'
   * events); a socket that emits 'data' instead works too. `timeoutMs` is the connection's
   * connect timeout (the mesh multiplexer bounds its session's handshake by it).
   */
  readonly connect?: (host: string, port: number, peer: string, onread?: OnReadOpts, timeoutMs?: number) => Socket;
  /**
   * Whether the transport takes another connection to host:port now (default: always, up to
   * maxSockets). The mesh multiplexer says no once the peer's stream limit is learnt and
   * reached: the request waits for one of the origin's connections, as at maxSockets.
   */
  readonly room?: (host: string, port: number, peer: string) => boolean;
  readonly secure?: boolean;
  /** Connect timeout (0: none); a request's `waitMs` (the cluster's connect timeout) overrides it. */
  readonly connectTimeoutMs?: number;
  /** A connection was established (the peer-connection metric). */
  readonly onConnection?: () => void;
  /** A request found `maxSockets` connections busy and waits for one (the bound's metric). */
  readonly onQueued?: () => void;
  /** An idle connection was closed by the idle timeout (its metric). */
  readonly onIdleTimeout?: () => void;
  /** destroy() was called: whatever carries the connections (the mesh multiplexer's sessions) closes too. */
  readonly onDestroy?: () => void;
  /** drain() was called for an origin: what carries its connections (a multiplexer session) drains too. */
  readonly onDrain?: (host: string, port: number, peer: string) => void;
  /**
   * Cluster limits as the mesh's HTTP/2 sessions apply them (outbound/mesh-h1-pool.ts): a
   * new connection needs a connection slot (no first connection beyond the limit), and a
   * request waiting for its new connection to come up is a pending request (Envoy counts
   * a request pending until a connection is ready for it).
   */
  readonly strictLimits?: boolean;
  /**
   * The connections are streams of a session to the peer (the mesh multiplexer carrying
   * HTTP/2): a request's cluster limits take no connection slot for them, and a request
   * waiting for one is not pending (it waits as an HTTP/2 stream waits in its session). It
   * is pending only while the session it needs is being established (`connecting`: a new
   * connection now would wait for a session's handshake), as a request waiting for a peer
   * session is (docs/resilience.md, "Connection limits").
   */
  readonly sessionStreams?: { connecting(host: string, port: number, peer: string): boolean };
}

/** A slot of a limit, given back once (proxy/resilience/concurrency-limits.ts Admission). */
interface Slot {
  release(): void;
}

/**
 * The connection limits of the cluster a request goes to (its ClusterHandle): Envoy's
 * max_connections bounds an HTTP/1.1 pool's connections, max_pending_requests the requests
 * waiting for one. `waitMs` bounds that wait (the cluster's connect timeout).
 */
export interface H1Limits {
  admitConnection(kind: 'connections' | 'pending'): Slot | Error;
}

const tcpConnect = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket => connect({ host, port, onread });

/**
 * Read buffer sizes per connection (net.Socket's `onread`). A TLS socket hands over at most
 * one record's plaintext (16 KiB) per callback; 64 KiB is what node reads from TCP by
 * default. Pages never written stay out of RSS, so an idle connection costs little.
 */
const TCP_READ_BUFFER = 64 * 1024;
const TLS_READ_BUFFER = 16 * 1024;

/** Taken off a server's keep-alive hint: a request sent as the hinted time runs out would meet a closing connection. */
const KEEP_ALIVE_MARGIN_MS = 1000;

/** The body length a request head declares: its Content-Length, or -1 (chunked) without a usable one. */
function declaredLength(v: string | string[] | undefined): number {
  if (v === undefined) return -1;
  const n = Number(Array.isArray(v) ? v[0] : v);
  return Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

const POOLS = new WeakMap<Agent, H1Pool>();

/**
 * How long an app's (or an unmeshed endpoint's) keep-alive hint may keep an idle connection
 * open: undici's keepAliveMaxTimeout, 10 minutes. Without a hint the pool's 4 s stand
 * (below node's default server keepAliveTimeout of 5 s, so the app never closes a
 * connection the pool is about to reuse: istio/istio#55138); an app that says it keeps
 * connections longer (node's `Keep-Alive: timeout=60`) keeps its connections through quiet
 * spells of up to a minute instead of being connected to again after each.
 */
const APP_MAX_IDLE_MS = 600_000;

/**
 * A keep-alive HTTP/1.1 client: the proxy's way to send requests to a local app (and to
 * unmeshed HTTP/1.1 endpoints). It replaces node's ClientRequest/Agent, whose
 * per-request machinery (OutgoingMessage, IncomingMessage, agent bookkeeping, abort
 * signal plumbing) was about 40 % of the inbound sidecar's CPU per request on the
 * data-path benchmark; responses are parsed by H1ResponseParser.
 *
 * Per origin: idle connections are reused most-recently-used first; at `maxSockets`
 * requests queue. A connection is reused only after a complete, well-framed response
 * to a completely sent request; anything else closes it. A bodyless request that fails
 * on a reused connection before any response byte (the server closed it while idle)
 * is sent once more on a new connection. Request bodies stream with backpressure,
 * chunked (with trailers) unless the request has a Content-Length.
 */
export class H1Pool {
  private readonly origins = new Map<string, Origin>();
  readonly maxSockets: number;
  readonly idleTimeoutMs: number;
  readonly maxIdleTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly limits: CodecLimits;
  readonly connectFn: (host: string, port: number, peer: string, onread?: OnReadOpts, timeoutMs?: number) => Socket;
  readonly room: ((host: string, port: number, peer: string) => boolean) | undefined;
  readonly secure: boolean;
  readonly connectTimeoutMs: number;
  readonly onConnection: (() => void) | undefined;
  readonly onQueued: (() => void) | undefined;
  readonly onIdleTimeout: (() => void) | undefined;
  readonly strictLimits: boolean;
  readonly sessionStreams: H1PoolOptions['sessionStreams'];
  private readonly onDestroy: (() => void) | undefined;
  private readonly onDrain: H1PoolOptions['onDrain'];
  readonly refusedReplayBytes: number;
  readonly meshH2: boolean;
  readonly clock: Clock;

  constructor(opts: H1PoolOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.maxSockets = opts.maxSockets ?? Infinity;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 4000;
    this.maxIdleTimeoutMs = Math.max(this.idleTimeoutMs, opts.maxIdleTimeoutMs ?? 0);
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 16 * 1024;
    this.limits = { ...DEFAULT_H1_LIMITS, maxHeadBytes: this.maxHeaderBytes, maxHeaderCount: opts.maxHeaderCount ?? DEFAULT_H1_LIMITS.maxHeaderCount };
    this.connectFn = opts.connect ?? tcpConnect;
    this.room = opts.room;
    this.secure = opts.secure ?? false;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 0;
    this.onConnection = opts.onConnection;
    this.onQueued = opts.onQueued;
    this.onIdleTimeout = opts.onIdleTimeout;
    this.strictLimits = opts.strictLimits ?? false;
    this.sessionStreams = opts.sessionStreams;
    this.onDestroy = opts.onDestroy;
    this.onDrain = opts.onDrain;
    this.refusedReplayBytes = opts.refusedReplayBytes ?? 0;
    this.meshH2 = opts.meshH2 ?? false;
  }

  /**
   * The pool that rides on an http.Agent the caller owns: maxSockets is the agent's,
   * and `agent.destroy()` closes the pool's connections too.
   */
  static of(agent: Agent): H1Pool {
    let pool = POOLS.get(agent);
    if (!pool) {
      const p = new H1Pool({ maxSockets: agent.maxSockets, maxIdleTimeoutMs: APP_MAX_IDLE_MS });
      const destroy = agent.destroy.bind(agent);
      agent.destroy = () => {
        p.destroy();
        destroy();
      };
      POOLS.set(agent, (pool = p));
    }
    return pool;
  }

  /**
   * `limits`: the cluster's connection limits (unmeshed endpoints, peer sidecars); none for
   * local delivery. `peer`: the identity the connection must present (part of the origin:
   * connections to the same address for different identities are never shared). `extra`:
   * field lines added to the head as they are (the mesh headers, built by the caller).
   */
  request(host: string, port: number, req: ProxyRequest, head: Headers, limits?: H1Limits, waitMs = 0, peer = '', extra = ''): Promise<ProxyResponse> {
    return new Promise((resolve, reject) => {
      const declared = declaredLength(head['content-length']);
      let bodyLength = req.body === null ? 0 : declared;
      if (this.meshH2) {
        // The head's content-length is the framing's alone; the client's own, if it gave one, travels apart.
        if (declared >= 0) extra += `${MESH.contentLength}: ${declared}\r\n`;
        if (req.body !== null && bodyLength >= 0) bodyLength = -1;
      }
      let text: string;
      try {
        text = requestHead(req.method, req.path, req.authority, head, bodyLength, extra);
      } catch (e) {
        return reject(e);
      }
      if (req.signal.aborted) return reject(new ProxyError('CLIENT_CANCELLED'));
      const origin = this.origin(host, port, peer);
      const ex = new Exchange(req, text, bodyLength < 0, resolve, reject, origin);
      if (limits) ex.limit(limits, waitMs);
      else ex.waitMs = waitMs;
      origin.acquire(ex);
    });
  }

  /**
   * The same origins by peer, host and port: a request finds its origin with three look-ups
   * of strings it already has (their hashes are cached in them), where the key string
   * (`host:port|peer`, some 80 characters) was built and hashed anew per request.
   */
  private readonly byPeer = new Map<string, Map<string, Map<number, Origin>>>();

  /** The origin for host:port (and peer identity), created on first use. */
  origin(host: string, port: number, peer = ''): Origin {
    const known = this.byPeer.get(peer)?.get(host)?.get(port);
    if (known !== undefined) return known;
    const key = peer === '' ? `${host}:${port}` : `${host}:${port}|${peer}`;
    let origin = this.origins.get(key);
    if (!origin) this.origins.set(key, (origin = new Origin(this, host, port, peer, key)));
    let hosts = this.byPeer.get(peer);
    if (!hosts) this.byPeer.set(peer, (hosts = new Map()));
    let ports = hosts.get(host);
    if (!ports) hosts.set(host, (ports = new Map()));
    ports.set(port, origin);
    return origin;
  }

  /** Connections open to host:port (tests and the mesh pool's bound). */
  connections(host: string, port: number, peer = ''): number {
    return this.origins.get(peer === '' ? `${host}:${port}` : `${host}:${port}|${peer}`)?.conns.size ?? 0;
  }

  /** Drop an origin that has no connection and no queued request. */
  forget(origin: Origin): void {
    if (this.origins.get(origin.key) === origin) this.origins.delete(origin.key);
    const hosts = this.byPeer.get(origin.peer);
    const ports = hosts?.get(origin.host);
    if (ports?.get(origin.port) !== origin) return;
    ports.delete(origin.port);
    if (ports.size === 0) hosts!.delete(origin.host);
    if (hosts!.size === 0) this.byPeer.delete(origin.peer);
  }

  /** Bumped by retire(): a connection of an older generation is not reused. */
  generation = 0;

  /**
   * No new request on the connections open now (certificate rotation): idle ones close at
   * once, busy ones once their exchange ends; in-flight exchanges are not disturbed.
   */
  retire(): void {
    this.generation++;
    for (const o of this.origins.values()) for (const c of o.idle.slice()) c.close(null);
  }

  /**
   * host:port (and peer) is no longer an endpoint of any cluster (outbound/endpoint-drain.ts):
   * its idle connections close now and its busy ones once their exchange ends, giving back
   * their cluster connection slots, as Envoy drains the connection pools of a host removed
   * from discovery. Until then an idle keep-alive connection to an app that is gone held a
   * maxConnections slot for as long as its keep-alive hint (up to APP_MAX_IDLE_MS). The
   * origin is forgotten at once: a request there later (the endpoint back) starts afresh.
   */
  drain(host: string, port: number, peer = ''): void {
    const origin = this.origins.get(peer === '' ? `${host}:${port}` : `${host}:${port}|${peer}`);
    if (origin !== undefined) {
      this.forget(origin);
      origin.drain();
    }
    this.onDrain?.(host, port, peer);
  }

  /** Close every connection (in-flight exchanges fail). The pool stays usable. */
  destroy(): void {
    for (const o of this.origins.values()) o.destroy();
    this.origins.clear();
    this.byPeer.clear();
    this.onDestroy?.();
  }
}

class Origin {
  // Born in the elements kind of what they hold: an origin made again after a quiet spell
  // must not deoptimise the pool's functions optimised on older origins (object-array.ts).
  readonly idle: Conn[] = objectArray();
  readonly conns = new Set<Conn>();
  private readonly waiting: Exchange[] = objectArray();
  /** drain(): no connection is reused; requests still queued here move to the live origin as connections close (acquire()). */
  draining = false;

  constructor(
    readonly pool: H1Pool,
    readonly host: string,
    readonly port: number,
    readonly peer: string,
    readonly key: string,
  ) {}

  acquire(ex: Exchange, fresh = false): void {
    // A retry may come back to an origin the pool has forgotten meanwhile.
    const live = this.pool.origin(this.host, this.port, this.peer);
    if (live !== this) {
      ex.origin = live;
      return live.acquire(ex, fresh);
    }
    if (!fresh) {
      const conn = this.idle.pop();
      if (conn) return conn.start(ex);
    }
    const room = this.pool.room;
    if (this.conns.size < this.pool.maxSockets && (room === undefined || this.conns.size === 0 || room(this.host, this.port, this.peer))) {
      const streams = this.pool.sessionStreams;
      const slot = streams === undefined ? this.connectionSlot(ex) : null;
      if (slot instanceof Error) return ex.fail(slot);
      if (slot !== undefined) {
        const pending = streams === undefined ? this.pool.strictLimits : streams.connecting(this.host, this.port, this.peer);
        if (pending && ex.limits !== null && !ex.holdPending()) return slot?.release();
        const conn = new Conn(this, slot, this.pool.connectTimeoutMs > 0 ? ex.waitMs || this.pool.connectTimeoutMs : 0);
        this.conns.add(conn);
        return conn.start(ex);
      }
    } else this.pool.onQueued?.();
    if (this.pool.sessionStreams === undefined && !ex.wait()) return;
    this.waiting.push(ex);
    ex.queued = true;
  }

  /**
   * The cluster's connection slot for a new connection (null: none to take), or undefined
   * at the limit: then the request waits for one of this origin's connections. As Envoy's
   * pool does (conn_pool_base.cc tryCreateNewConnection), an origin with no connection at
   * all opens one anyway: its requests could otherwise wait for ever on slots held by
   * other endpoints' connections.
   */
  private connectionSlot(ex: Exchange): Slot | null | undefined | ProxyError {
    if (ex.limits === null) return null;
    const slot = ex.limits.admitConnection('connections');
    if (!(slot instanceof Error)) return slot;
    if (this.conns.size > 0) return undefined;
    // strictLimits: nothing to wait for and no slot to open one: overflow, as for a peer session.
    return this.pool.strictLimits ? (slot instanceof ProxyError ? slot : toProxyError(slot)) : null;
  }

  private next(): Exchange | undefined {
    const ex = this.waiting.shift();
    ex?.unwait();
    return ex;
  }

  unqueue(ex: Exchange): void {
    const i = this.waiting.indexOf(ex);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  release(conn: Conn): void {
    const next = this.next();
    if (next) return conn.start(next);
    this.idle.push(conn);
    conn.idle();
  }

  /** A connection closed: forget it, and let a queued request open a new one. */
  closed(conn: Conn): void {
    this.conns.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    const next = this.next();
    if (next) this.acquire(next);
    // Endpoints come and go (pod IPs): an origin with nothing open is forgotten.
    else if (this.conns.size === 0) this.pool.forget(this);
  }

  drain(): void {
    this.draining = true;
    for (const c of this.idle.slice()) c.close(null);
  }

  destroy(): void {
    for (const ex of this.waiting.splice(0)) {
      ex.unwait();
      ex.fail(new ProxyError('DRAINING'));
    }
    for (const c of [...this.conns]) c.close(new ProxyError('DRAINING'));
  }
}

class Conn implements H1Handler {
  readonly socket: Socket;
  private readonly parser: H1Parser;
  ex: Exchange | null = null;
  private head: H1Head | null = null;
  private reused = false;
  private dead = false;
  /** The transport (TCP, or TLS with the peer verified) is up: the connect timeout no longer applies. */
  private connected = false;
  /** Response bytes arrived for the exchange in flight (a stale connection sends none). */
  private gotBytes = false;
  /** The parser ended the response in flight (it pauses there, so later bytes stay unread). */
  private ended = false;
  private idleMs: number;
  /** When the connection last became idle (the pool's clock). */
  private idleSince = 0;
  /** The idle timer, armed while the connection is (or lately was) idle, and when it is due. */
  private idleTimer: Timer | null = null;
  private idleDue = 0;
  private readonly connectTimeoutMs: number;
  /** The bytes being parsed are a view of the read buffer (onread): body chunks must be copied. */
  private inBuffer = false;
  /** Every read is a view of a shared read buffer (a mux stream's payloads, setDirectReads): body chunks must be copied. */
  private readonly viewReads: boolean;
  /** Lent request body buffers written to a node socket (TCP or TLS), until it has written them (null: a mux stream's session hands them back). */
  readonly releases: SocketReleases | null;
  private readonly generation: number;

  constructor(
    readonly origin: Origin,
    private readonly slot: Slot | null,
    connectTimeoutMs: number,
  ) {
    const pool = origin.pool;
    this.idleMs = pool.idleTimeoutMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.generation = pool.generation;
    this.parser = new H1Parser(this, true, pool.limits);
    // Reads land in this connection's own buffer and go straight to the parser (net.Socket
    // onread): no Buffer allocated per read, no Readable push / 'data' event per response.
    // The parser copies what it keeps across reads; body chunks are copied in onBody.
    const onread: OnReadOpts = {
      buffer: Buffer.allocUnsafeSlow(pool.secure ? TLS_READ_BUFFER : TCP_READ_BUFFER),
      callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer), // true: pausing is onBody's
    };
    const s = (this.socket = pool.connectFn(origin.host, origin.port, origin.peer, onread, connectTimeoutMs));
    s.setNoDelay(true);
    // The connect timeout: until the transport is up, socket inactivity is the connect taking too long.
    if (connectTimeoutMs > 0) s.setTimeout(connectTimeoutMs);
    s.once(pool.secure ? 'secureConnect' : 'connect', () => this.onConnect());
    // A connect function that ignored onread; a mesh multiplexer stream hands its payloads
    // straight to onSocketData (setDirectReads): views of its session's read buffer when the
    // session reads into the shared one, copied in onBody as onread's are.
    const onData = (d: Buffer): void => this.onSocketData(d);
    s.on('data', onData);
    this.viewReads = setDirectReads(s, onData);
    this.releases = s instanceof Socket ? new SocketReleases(s) : null;
    s.on('drain', () => {
      this.releases?.settle();
      this.ex?.onDrain();
    });
    s.on('end', () => this.onSocketEnd());
    s.on('error', (e) => this.close(e));
    s.on('close', () => this.close(null));
    s.on('timeout', () => this.onConnectTimeout());
  }

  private onConnect(): void {
    this.connected = true;
    // The socket's own inactivity timer was the connect timeout only: node re-arms it on
    // every read and write (1.2 % of an inbound sidecar at HTTP/1.1 saturation, for the app's
    // connections), and the idle timeout needs none of that (idle()).
    if (this.connectTimeoutMs > 0) this.socket.setTimeout(0);
    this.ex?.unwait(); // strictLimits, sessionStreams: no longer pending
    this.origin.pool.onConnection?.();
    if (this.sendOnConnect) {
      this.sendOnConnect = false;
      this.ex?.send(this.socket);
    }
  }

  private onConnectTimeout(): void {
    const o = this.origin;
    if (!this.connected) this.close(new ProxyError('CONNECT_TIMEOUT', `${o.host}:${o.port} after ${this.connectTimeoutMs} ms`));
  }

  /**
   * The idle timeout: the connection closes `idleMs` after it last became idle. One timer,
   * not re-armed per request: when it fires it looks at how long the connection has been
   * idle and waits for the rest, or lets a busy connection be (the next idle() arms it
   * again). So a request costs one clock read here, where the socket's own timer was
   * re-armed by node on every read and write.
   */
  private armIdle(due: number, now: number): void {
    const clock = this.origin.pool.clock;
    if (this.idleTimer !== null) clock.clearTimeout(this.idleTimer);
    this.idleDue = due;
    this.idleTimer = clock.setTimeout(this.onIdleTimer, due - now);
    this.idleTimer.unref?.();
  }

  private readonly onIdleTimer = (): void => {
    this.idleTimer = null;
    if (this.dead || this.ex !== null) return;
    const now = this.origin.pool.clock.now();
    const due = this.idleSince + this.idleMs;
    if (now < due) return this.armIdle(due, now);
    this.origin.pool.onIdleTimeout?.();
    this.close(null);
  };

  private onRead(n: number, buf: Buffer): boolean {
    this.inBuffer = true;
    try {
      this.onSocketData(buf.subarray(0, n));
    } finally {
      this.inBuffer = false;
    }
    return true;
  }

  start(ex: Exchange): void {
    this.ex = ex;
    ex.conn = this;
    ex.reused = this.reused;
    this.head = null;
    this.gotBytes = false;
    this.ended = false;
    this.parser.setRequestMethod(ex.req.method);
    this.parser.resume();
    this.socket.resume();
    // A request body is read only once the connection is up: a connect that fails
    // (refused, timed out, the peer's identity wrong) has then consumed none of it, and the
    // retry layer can send the request to another endpoint (Envoy retries connect-failure
    // whatever the body). A bodyless head can wait in the socket's buffer.
    if (this.connected || ex.req.body === null) ex.send(this.socket);
    else this.sendOnConnect = true;
  }

  /** The exchange started before the connection was up, and its request waits for it (start()). */
  private sendOnConnect = false;

  idle(): void {
    this.reused = true;
    const now = this.origin.pool.clock.approxNow();
    this.idleSince = now;
    const due = now + this.idleMs;
    // Armed already for no later than this idle period ends: it re-checks when it fires.
    if (this.idleTimer === null || this.idleDue > due) this.armIdle(due, now);
  }

  // H1Handler: the parser reports to the exchange in flight; the connection decides about reuse once it returns.
  onHead(head: H1Head): void {
    const st = head.status;
    if (st < 200 && st !== 101) return; // interim (100 Continue, 103 Early Hints): the final response follows
    // Never asked to switch protocols (upgrades take h1-upgrade.ts): a 101 here is a broken server.
    if (st === 101 || head.upgrade) return this.close(new ProxyError('UPSTREAM_PROTOCOL', 'unexpected 101 Switching Protocols'));
    this.head = head;
    // The server's hint for this connection (as undici takes it: less a margin for the time
    // the next request takes to reach it), else the pool's own idle timeout.
    const hint = head.keepAliveTimeoutMs;
    const pool = this.origin.pool;
    this.idleMs = hint >= 0 ? Math.max(0, Math.min(pool.maxIdleTimeoutMs, hint - KEEP_ALIVE_MARGIN_MS)) : pool.idleTimeoutMs;
    this.ex!.onHead(head);
  }

  onBody(chunk: Buffer): void {
    // A view of the read buffer, which the next read overwrites, is copied: into a block the
    // response's last holder hands back (body-buffers.ts), as a response body is passed on
    // whole and never kept for a replay.
    if (!this.ex!.push(this.inBuffer || this.viewReads ? lentCopy(chunk) : chunk)) this.socket.pause();
  }

  onTrailers(fields: string[]): void {
    const t = fieldsToHeaders(fields, true);
    for (const _ in t) return void (this.ex!.trailers = t);
  }

  onEnd(): void {
    this.ended = true;
    this.parser.pause();
  }

  onUpgrade(): void {
    // Not reached: a 101 (or a 2xx to CONNECT, never sent here) closes the connection in onHead.
  }

  onError(err: H1Error): void {
    this.close(err);
  }

  private onSocketData(d: Buffer): void {
    inTurn(this.read, this, d);
  }

  private read(d: Buffer): void {
    const ex = this.ex;
    // Bytes from the server while no request is outstanding: the connection is unusable.
    if (ex === null || this.ended) return this.close(null);
    this.gotBytes = true;
    const used = this.parser.execute(d);
    if (!this.ended || this.ex !== ex) return;
    // Bytes after the response's end, before the next request was sent: the connection cannot be reused.
    this.complete(ex, used === d.length);
  }

  private onSocketEnd(): void {
    const ex = this.ex;
    if (ex === null || this.ended) return;
    this.parser.finish(); // ends a close-delimited body; a cut-short response goes to onError
    if (this.ended && this.ex === ex) return this.complete(ex, false);
    // Nothing of a response arrived (finish() says nothing for an idle parser).
    if (this.ex === ex) this.close(new ProxyError('UPSTREAM_RESET', 'connection closed before a response'));
  }

  /** The response ended: reuse the connection if it is clean, else close it. */
  private complete(ex: Exchange, clean: boolean): void {
    ex.end();
    // An HTTP/2 request (meshH2) may get its whole response before its body has gone out
    // (RFC 9113 section 8.1: a gRPC call answered before the client's half-close, a server
    // that answers and reads on): the upload goes on, as on an HTTP/2 stream, until the
    // body's end (uploaded()) or the caller's cancel (fail(): the connection is reset). Not
    // when the response says the connection closes: that server reads no more (RFC 9112
    // section 9.6), so the upload stops there, as HTTP/1.1's.
    if (clean && !ex.sent && ex.req.body !== null && this.origin.pool.meshH2 && this.head?.keepAlive === true && !this.dead) return;
    this.exchangeDone(ex, clean);
  }

  /** The request body of an exchange whose response had ended has gone out whole: both directions ended. */
  uploaded(ex: Exchange): void {
    if (this.ex === ex && this.ended) this.exchangeDone(ex, true);
  }

  private exchangeDone(ex: Exchange, clean: boolean): void {
    this.ex = null;
    ex.conn = null;
    ex.detach();
    // idleMs 0: the server's keep-alive hint leaves no safe time to reuse the connection.
    if (!clean || this.head?.keepAlive !== true || !ex.sent || this.idleMs <= 0 || this.dead || this.socket.destroyed || this.generation !== this.origin.pool.generation || this.origin.draining) return this.close(null);
    this.origin.release(this);
  }

  /** Close the connection; the exchange on it (if any) fails with `err`. */
  close(err: unknown): void {
    if (this.dead) return;
    this.dead = true;
    if (this.idleTimer !== null) this.origin.pool.clock.clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.slot?.release();
    const ex = this.ex;
    // Closing in the middle of sending a request body: reset (RST), not FIN. A FIN queues
    // behind request bytes the kernel still holds for an app that stopped reading, so the
    // app's end would stay ESTABLISHED, its request never cancelled, until TCP gives up
    // (issue 11, item 3).
    if (ex !== null && !ex.sent && ex.req.body !== null && !this.socket.destroyed && !this.socket.connecting && !this.origin.pool.secure) this.socket.resetAndDestroy();
    else this.socket.destroy();
    this.ex = null;
    this.origin.closed(this);
    if (!ex) return;
    ex.conn = null;
    ex.unwait();
    ex.onConnectionLost(err, this.gotBytes);
  }
}

class Exchange {
  conn: Conn | null = null;
  queued = false;
  reused = false;
  sent = false;
  private responded = false;
  finished = false;
  private retried = false;
  /** Refused virtual connections this request was sent on again (onConnectionLost). */
  private refusals = 0;
  private body: ResponseBody | null = null;
  trailers: Headers | undefined;
  limits: H1Limits | null = null;
  waitMs = 0;
  private pending: Slot | null = null;
  private waitTimer: NodeJS.Timeout | null = null;
  readonly isHead: boolean;

  constructor(
    readonly req: ProxyRequest,
    private readonly text: string,
    private readonly chunked: boolean,
    private readonly resolve: (r: ProxyResponse) => void,
    private readonly reject: (e: unknown) => void,
    public origin: Origin,
  ) {
    this.isHead = req.method === 'HEAD';
    // It runs once (fail() removes it).
    req.signal.addEventListener('abort', this.onAbort);
  }

  /**
   * The request's abort listener: a function, not this object with a handleEvent. node's
   * EventTarget keeps an object listener in a way the scavenger cannot free: the signal and
   * the listener, and all the request they reach, survived every scavenge and were promoted
   * (about 6 KB a request, freed only by mark-compact: docs/benchmarks.md, "Promoted by an
   * object listener"). One small closure that dies young costs far less.
   */
  private readonly onAbort = (): void => this.fail(new ProxyError('CLIENT_CANCELLED'));

  limit(limits: H1Limits, waitMs: number): void {
    this.limits = limits;
    this.waitMs = waitMs;
  }

  /**
   * About to wait for a connection: under cluster limits that takes a pending slot (Envoy
   * max_pending_requests; false and OVERFLOW when none is left) for at most waitMs, then
   * OVERFLOW (never sent, so not the endpoint's fault). Rare path: the timer is justified.
   */
  wait(): boolean {
    if (this.limits === null) return true;
    const p = this.limits.admitConnection('pending');
    if (p instanceof Error) {
      this.fail(p instanceof ProxyError ? p : toProxyError(p));
      return false;
    }
    this.pending = p;
    this.waitTimer = setTimeout(() => this.fail(new ProxyError('OVERFLOW', `no connection to the endpoint was free within ${this.waitMs} ms`)), this.waitMs);
    return true;
  }

  /**
   * strictLimits (or sessionStreams, a new session): a pending slot held while this request's new connection comes up (the
   * connect timeout bounds it). False, and the request failed with OVERFLOW, when none is left.
   */
  holdPending(): boolean {
    const p = this.limits!.admitConnection('pending');
    if (p instanceof Error) {
      this.fail(p instanceof ProxyError ? p : toProxyError(p));
      return false;
    }
    this.pending = p;
    return true;
  }

  /** Out of the wait queue (given a connection, re-queued, failed): the pending slot goes back. */
  unwait(): void {
    this.pending?.release();
    this.pending = null;
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
  }

  send(socket: Socket): void {
    const body = this.req.body;
    if (body === null) {
      writeMessage(socket, this.text, null);
      this.sent = true;
      return;
    }
    const again = this.kept;
    if (again === undefined) this.kept = this.origin.pool.refusedReplayBytes > 0 ? [] : null;
    if (again === undefined && isSettled(body)) {
      // All of the body and its end are here (exchange.ts): head, body and end in one write.
      const data = body.read() as Buffer | null;
      body.resume();
      socket.cork();
      socket.write(this.text, 'latin1');
      this.held = socket;
      if (data !== null) this.onBodyData(body, data);
      this.onBodyEnd();
      return;
    }
    // The head waits (corked) for the body's first bytes, so a small body leaves with it in
    // one write (one TLS record to a peer sidecar): they come a few ticks later through the
    // layers' streams (the retry layer's replayable body). If none has come by the end of
    // this turn of the event loop (setImmediate), the head goes alone: a slow body must not
    // hold it back.
    socket.cork();
    socket.write(this.text, 'latin1');
    this.held = socket;
    setImmediate(flushHeld, this);
    // Sent again after a refusal (onConnectionLost): what the refused attempt had sent goes first.
    if (again !== undefined && again !== null) {
      for (const c of again) {
        if (this.chunked) writeChunk(socket, c);
        else socket.write(c);
      }
      if (this.bodyEnded) return this.sendTail(socket);
    }
    // Shared listeners that find the exchange on the body (no closures per request); each
    // event fires once, so `on` suffices.
    (body as SentBody)[SENDING] = this;
    body.on('data', onSentData);
    body.on('end', onSentEnd);
    body.on('error', onSentError);
    // Resumed after a refusal (paused while a new connection came).
    if (again !== undefined && !body.readableEnded) body.resume();
  }

  onBodyData(body: BodyStream, c: Buffer): void {
    const s = this.conn?.socket;
    if (!s) return;
    const kept = this.kept;
    if (kept) {
      // A peer refuses a virtual connection before it grants window or answers on it: once
      // it has (`accepted`), no refusal can come and nothing need be kept.
      if ((s as { accepted?: boolean }).accepted === true) this.kept = null;
      else {
        this.keptBytes += c.length;
        if (this.keptBytes > this.origin.pool.refusedReplayBytes) this.kept = null;
        else kept.push(keepable(c));
      }
    }
    const releases = this.conn!.releases;
    releases?.settle();
    // A long first chunk does not join the held head on a socket whose turn's writes leave
    // together anyway (a mux stream): uncorked, the head goes as its own frame, not as a copy
    // of head and chunk (serialize.ts H1Sink). A short one still shares the head's frame.
    if (this.held !== null && !headJoinsChunk(s, c.length)) this.flushHead();
    const ok = this.chunked ? writeChunk(s, c) : s.write(c);
    // Chunked: the last chunk usually follows in the same turn (a body that came whole), so
    // the head waits for it or for the turn's end; a declared length is complete here as a rule.
    if (!this.chunked) this.flushHead();
    // A lent buffer (the request body's, body-buffers.ts) goes back once node has written it.
    releases?.wrote(c);
    if (!ok) body.pause();
  }

  onBodyEnd(): void {
    const s = this.conn?.socket;
    if (!s) return;
    this.bodyEnded = true;
    this.sendTail(s);
  }

  /** The end of a request body: the last chunk and the trailers (chunked), the held head let go. */
  private sendTail(s: Socket): void {
    if (this.chunked) {
      let tail: Buffer | string;
      try {
        tail = lastChunk(this.req.trailers(), false);
      } catch (e) {
        return this.conn?.close(e);
      }
      s.write(tail as string, 'latin1');
    }
    this.flushHead();
    this.sent = true;
    // The response had ended first (meshH2): the connection is free now.
    if (this.finished) this.conn?.uploaded(this);
  }

  /** The body's relay listeners off (false: none were on); its source may still fail, never uncaught. */
  private unhookBody(): boolean {
    const body = this.req.body as SentBody | null;
    if (body === null || body[SENDING] !== this) return false;
    body[SENDING] = undefined;
    body.removeListener('data', onSentData);
    body.removeListener('end', onSentEnd);
    body.removeListener('error', onSentError);
    body.on('error', ignore);
    return true;
  }

  /**
   * The body's listeners off, and what is left of it drained: no other attempt will send it.
   * Nothing for a body never hooked (its connection never came up: the retry layer may send
   * it elsewhere), nor for one a refusal left paused.
   */
  private stopBody(): void {
    this.kept = null;
    if (!this.unhookBody()) return;
    this.flushHead();
    const body = this.req.body;
    if (body !== null && !body.readableEnded) body.resume();
  }

  /**
   * The body as sent, while it may have to be sent again (refusedReplayBytes): undefined
   * before the first send(), null when none is kept (too large, not asked for, or the response started).
   */
  private kept: Buffer[] | null | undefined = undefined;
  private keptBytes = 0;
  /** The request body's end was read (its tail may have to be sent again). */
  private bodyEnded = false;

  /** The socket whose cork holds the request head until the body's first bytes (send()). */
  private held: Socket | null = null;

  /** Lets a held head (and what was written after it) go, once. */
  flushHead(): void {
    const s = this.held;
    this.held = null;
    s?.uncork();
  }

  onDrain(): void {
    const b = this.req.body;
    if (b && !this.sent) b.resume();
  }

  onHead(head: H1Head): void {
    this.responded = true;
    this.kept = null;
    if (head.body !== Body.None) this.body = new ResponseBody(this);
    // meshH2: the head's content-length frames the HTTP/1.1 message; the app's own is wren-content-length.
    const headers = fieldsToHeaders(head.fields, false, this.origin.pool.meshH2 ? 'from-mesh' : 'as-is');
    this.resolve({ status: head.status, headers, body: this.body, trailers: this.getTrailers });
  }

  private readonly getTrailers = (): Headers | undefined => this.trailers;

  push(chunk: Buffer): boolean {
    return this.body ? this.body.push(chunk) : true;
  }

  end(): void {
    this.finished = true;
    this.body?.push(null);
  }

  /** The consumer wants more body: let the socket flow again. */
  read(): void {
    if (this.conn && !this.finished) this.conn.socket.resume();
  }

  /** The consumer dropped the body before its end: the connection cannot finish the response. */
  bodyDestroyed(): void {
    if (!this.finished) this.conn?.close(new ProxyError('CLIENT_CANCELLED'));
  }

  detach(): void {
    this.req.signal.removeEventListener('abort', this.onAbort);
    if (!this.sent) this.stopBody();
  }

  onConnectionLost(err: unknown, gotBytes: boolean): void {
    // A reused connection the server had closed while idle (reset, or closed before any
    // response byte): likely nothing was processed, so a bodyless request goes again on a
    // new one. Likely only: a server that took the request and died (or cut it) before
    // answering looks the same, so only an idempotent one (RFC 9110 section 9.2.2: a proxy
    // MUST NOT retry a non-idempotent request automatically).
    const stale = !(err instanceof ProxyError) || (err.code === 'UPSTREAM_RESET' && !gotBytes);
    if (stale && !this.responded && this.reused && !this.retried && !gotBytes && this.req.body === null && IDEMPOTENT.has(this.req.method) && !this.req.signal.aborted) {
      this.retried = true;
      this.sent = false;
      this.origin.acquire(this, true);
      return;
    }
    // A virtual connection the peer refused (proxy/mux: over its stream limit, never
    // processed; RFC 9113 section 8.7): a bodyless request waits for another, as it would
    // have waited for a connection on h1. The session has learnt the peer's limit, so the
    // next one is on a new connection; a few refusals in a row are the most that can race.
    // A body goes again only if all of it that was sent is kept (refusedReplayBytes); it is
    // paused, its listeners off, until the next connection's send() writes what was kept.
    const body = this.req.body;
    if ((err as { refusedStream?: boolean } | null)?.refusedStream === true && this.refusals < 3 && !gotBytes && (body === null || (this.kept !== null && this.kept !== undefined)) && !this.req.signal.aborted) {
      this.refusals++;
      this.sent = false;
      if (body !== null) {
        this.flushHead();
        this.unhookBody();
        body.pause();
      }
      this.origin.acquire(this, true);
      return;
    }
    this.detach();
    const e = err ?? Object.assign(new Error('connection closed'), { code: 'ECONNRESET' });
    if (!this.responded) this.reject(toProxyError(e));
    else if (!this.finished) this.body?.fail(toProxyError(e));
  }

  /** Abort (client cancelled) or pool shut down. */
  fail(err: ProxyError): void {
    this.unwait();
    if (this.queued && !this.conn) this.origin.unqueue(this);
    if (this.conn) return this.conn.close(err);
    this.detach();
    if (!this.responded) this.reject(err);
    else if (!this.finished) this.body?.fail(err);
  }
}

class ResponseBody extends LeanBody implements SettledBody {
  constructor(private readonly ex: Exchange) {
    super();
    // A reset before the reader attaches its own listener must not be an uncaught error (fail() holds it for the reader).
    this.on('error', ignore);
  }
  /** The parser has seen the end: everything is buffered here (see SettledBody). */
  get settled(): boolean {
    return this.ex.finished;
  }
  override _read(): void {
    this.ex.read();
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.ex.bodyDestroyed();
    cb(err);
  }
}

const flushHeld = (ex: Exchange): void => ex.flushHead();

/** The exchange a request body is being sent for, on the body (send()). */
const SENDING = Symbol('wren.h1PoolSending');
type SentBody = BodyStream & { [SENDING]?: Exchange };

function onSentData(this: SentBody, c: Buffer): void {
  this[SENDING]?.onBodyData(this, c);
}

function onSentEnd(this: SentBody): void {
  const ex = this[SENDING];
  this[SENDING] = undefined;
  ex?.onBodyEnd();
}

function onSentError(this: SentBody, e: Error): void {
  const ex = this[SENDING];
  this[SENDING] = undefined;
  ex?.conn?.close(e);
}

const ignore = (): void => undefined;
