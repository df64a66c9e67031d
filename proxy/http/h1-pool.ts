/**
 * The HTTP/1.1 client pool and its origins (one per host:port and peer identity): where a
 * request is framed, queued and given a connection. The connection itself (h1-pool-conn.ts)
 * and the request/response it carries (h1-pool-exchange.ts) are in files of their own, the
 * options in h1-pool-options.ts; they name the pool and origin only by the shapes they use,
 * so none imports this file (no cycle, types included).
 */

import { connect, type OnReadOpts, type Socket } from 'node:net';
import type { Agent } from 'node:http';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import { MESH, type Headers } from './headers.js';
import { DEFAULT_H1_LIMITS, type H1Limits as CodecLimits } from '../h1/limits.js';
import { requestHead } from '../h1/serialize.js';
import { systemClock, type Clock } from '../../common/clock.js';
import { objectArray } from '../../common/object-array.js';
import type { ConnectionWait, H1Limits, H1PoolOptions, Slot } from './h1-pool-options.js';
import { Conn } from './h1-pool-conn.js';
import { Exchange } from './h1-pool-exchange.js';

const tcpConnect = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket => connect({ host, port, onread });

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
  onLimit: ((limit: 'interim-responses') => void) | undefined;
  /**
   * The servers are the local app (the inbound's pool, set by AppConnector): the trailers
   * of a response lose the fields only a sidecar writes (headers.ts dropNotFromApp).
   */
  fromApp = false;
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
    this.onLimit = opts.onLimit;
    this.strictLimits = opts.strictLimits ?? false;
    this.sessionStreams = opts.sessionStreams;
    this.onDestroy = opts.onDestroy;
    this.onDrain = opts.onDrain;
    this.refusedReplayBytes = opts.refusedReplayBytes ?? 0;
    this.meshH2 = opts.meshH2 ?? false;
  }

  /**
   * The pool that rides on an http.Agent the caller owns: maxSockets is the agent's,
   * and `agent.destroy()` closes the pool's connections too. `onLimit` counts its limits
   * (the first caller that gives one sets it: the proxy, for the app's and the outbound's agents).
   */
  static of(agent: Agent, onLimit?: H1PoolOptions['onLimit']): H1Pool {
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
    if (onLimit !== undefined && pool.onLimit === undefined) pool.onLimit = onLimit;
    return pool;
  }

  /**
   * `limits`: the cluster's connection limits (unmeshed endpoints, peer sidecars); none for
   * local delivery. `peer`: the identity the connection must present (part of the origin:
   * connections to the same address for different identities are never shared). `extra`:
   * field lines added to the head as they are (the mesh headers, built by the caller).
   * `wait`: told when the request waits for a connection and when it has one (the attempt's
   * per-try timers stop meanwhile: layers/request-state.ts TryTimer).
   */
  request(host: string, port: number, req: ProxyRequest, head: Headers, limits?: H1Limits, waitMs = 0, peer = '', extra = '', wait?: ConnectionWait): Promise<ProxyResponse> {
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
      if (wait !== undefined) ex.connWait = wait;
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
    ex.waitsForConnection();
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
    if (ex === undefined) return undefined;
    ex.unwait();
    // It waited for a connection: its latency for the balancer starts now (Exchange.sentAt).
    ex.sentAt = this.pool.clock.approxNow();
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
