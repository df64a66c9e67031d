import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { Agent } from 'node:http';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest, ProxyResponse, SettledBody } from './exchange.js';
import type { Headers } from './headers.js';
import { H1ResponseParser, type H1ResponseHead, type H1ResponseHandler } from './h1-response-parser.js';

export interface H1PoolOptions {
  /** Connections per origin (host:port); requests beyond it wait for one to be free. */
  readonly maxSockets?: number;
  /** Idle connections close after this long, or 1 s before the server's `keep-alive: timeout` hint if sooner. */
  readonly idleTimeoutMs?: number;
  readonly maxHeaderBytes?: number;
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

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** As node's http.request: request-target characters outside \x21-\xff are refused. */
const BAD_PATH = /[^\u0021-\u00ff]/;
/** Methods whose requests carry `content-length: 0` when they have no body (node's useChunkedEncodingByDefault). */
const BODYLESS_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const CRLF = '\r\n';
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

const POOLS = new WeakMap<Agent, H1Pool>();

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
  readonly maxHeaderBytes: number;

  constructor(opts: H1PoolOptions = {}) {
    this.maxSockets = opts.maxSockets ?? Infinity;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 4000;
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 16 * 1024;
  }

  /**
   * The pool that rides on an http.Agent the caller owns: maxSockets is the agent's,
   * and `agent.destroy()` closes the pool's connections too.
   */
  static of(agent: Agent): H1Pool {
    let pool = POOLS.get(agent);
    if (!pool) {
      const p = new H1Pool({ maxSockets: agent.maxSockets });
      const destroy = agent.destroy.bind(agent);
      agent.destroy = () => {
        p.destroy();
        destroy();
      };
      POOLS.set(agent, (pool = p));
    }
    return pool;
  }

  /** `limits`: the cluster's connection limits (unmeshed endpoints); none for local delivery. */
  request(host: string, port: number, req: ProxyRequest, head: Headers, limits?: H1Limits, waitMs = 0): Promise<ProxyResponse> {
    return new Promise((resolve, reject) => {
      let text: string;
      try {
        text = requestHead(req, head);
      } catch (e) {
        return reject(e);
      }
      if (req.signal.aborted) return reject(new ProxyError('CLIENT_CANCELLED'));
      const origin = this.origin(host, port);
      const ex = new Exchange(req, text, head['content-length'] === undefined, resolve, reject, origin);
      if (limits) ex.limit(limits, waitMs);
      origin.acquire(ex);
    });
  }

  /** The origin for host:port (created on first use). */
  origin(host: string, port: number): Origin {
    const key = `${host}:${port}`;
    let origin = this.origins.get(key);
    if (!origin) this.origins.set(key, (origin = new Origin(this, host, port)));
    return origin;
  }

  /** Drop an origin that has no connection and no queued request. */
  forget(origin: { readonly host: string; readonly port: number }): void {
    const key = `${origin.host}:${origin.port}`;
    if (this.origins.get(key) === origin) this.origins.delete(key);
  }

  /** Close every connection (in-flight exchanges fail). The pool stays usable. */
  destroy(): void {
    for (const o of this.origins.values()) o.destroy();
    this.origins.clear();
  }
}

class Origin {
  readonly idle: Conn[] = [];
  readonly conns = new Set<Conn>();
  private readonly waiting: Exchange[] = [];

  constructor(
    readonly pool: H1Pool,
    readonly host: string,
    readonly port: number,
  ) {}

  acquire(ex: Exchange, fresh = false): void {
    // A retry may come back to an origin the pool has forgotten meanwhile.
    const live = this.pool.origin(this.host, this.port);
    if (live !== this) {
      ex.origin = live;
      return live.acquire(ex, fresh);
    }
    if (!fresh) {
      const conn = this.idle.pop();
      if (conn) return conn.start(ex);
    }
    if (this.conns.size < this.pool.maxSockets) {
      const slot = this.connectionSlot(ex);
      if (slot !== undefined) {
        const conn = new Conn(this, slot);
        this.conns.add(conn);
        return conn.start(ex);
      }
    }
    if (!ex.wait()) return;
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
  private connectionSlot(ex: Exchange): Slot | null | undefined {
    if (ex.limits === null) return null;
    const slot = ex.limits.admitConnection('connections');
    if (!(slot instanceof Error)) return slot;
    return this.conns.size === 0 ? null : undefined;
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

  destroy(): void {
    for (const ex of this.waiting.splice(0)) {
      ex.unwait();
      ex.fail(new ProxyError('DRAINING'));
    }
    for (const c of [...this.conns]) c.close(new ProxyError('DRAINING'));
  }
}

class Conn {
  readonly socket: Socket;
  private readonly parser: H1ResponseParser;
  ex: Exchange | null = null;
  private head: H1ResponseHead | null = null;
  private reused = false;
  private dead = false;
  private idleMs: number;

  constructor(
    readonly origin: Origin,
    private readonly slot: Slot | null,
  ) {
    this.idleMs = origin.pool.idleTimeoutMs;
    // The parser reports to the exchange in flight; the connection decides about reuse once it returns.
    const handler: H1ResponseHandler = {
      onHead: (head) => {
        this.head = head;
        const hint = head.keepAliveTimeoutMs;
        if (hint !== undefined) this.idleMs = Math.max(0, Math.min(origin.pool.idleTimeoutMs, hint - 1000));
        this.ex!.onHead(head);
      },
      onData: (chunk) => {
        if (!this.ex!.push(chunk)) this.socket.pause();
      },
      onEnd: (trailers) => this.ex!.end(trailers),
    };
    this.parser = new H1ResponseParser(handler, origin.pool.maxHeaderBytes);
    const s = (this.socket = connect({ host: origin.host, port: origin.port }));
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => this.onSocketData(d));
    s.on('drain', () => this.ex?.onDrain());
    s.on('end', () => this.onSocketEnd());
    s.on('error', (e) => this.close(e));
    s.on('close', () => this.close(null));
    s.on('timeout', () => this.close(null));
  }

  start(ex: Exchange): void {
    this.ex = ex;
    ex.conn = this;
    ex.reused = this.reused;
    this.head = null;
    this.parser.reset();
    this.socket.setTimeout(0);
    this.socket.resume();
    ex.send(this.socket);
  }

  idle(): void {
    this.reused = true;
    this.socket.setTimeout(this.idleMs);
  }

  private onSocketData(d: Buffer): void {
    const ex = this.ex;
    // Bytes from the server while no request is outstanding: the connection is unusable.
    if (ex === null) return this.close(null);
    try {
      this.parser.execute(d, ex.isHead);
    } catch (e) {
      return this.close(e);
    }
    if (this.parser.done && this.ex === ex) this.complete(ex);
  }

  private onSocketEnd(): void {
    const ex = this.ex;
    if (ex === null || this.parser.done) return;
    try {
      this.parser.finish(); // ends a close-delimited body, throws for anything unfinished
    } catch (e) {
      return this.close(e);
    }
    this.complete(ex);
  }

  /** The response ended: reuse the connection if it is clean, else close it. */
  private complete(ex: Exchange): void {
    this.ex = null;
    ex.conn = null;
    ex.detach();
    // idleMs 0: the server's keep-alive hint leaves no safe time to reuse the connection.
    const clean = this.head?.keepAlive === true && !this.parser.extraData && ex.sent && this.idleMs > 0 && !this.dead && !this.socket.destroyed;
    if (!clean) return this.close(null);
    this.origin.release(this);
  }

  /** Close the connection; the exchange on it (if any) fails with `err`. */
  close(err: unknown): void {
    if (this.dead) return;
    this.dead = true;
    this.slot?.release();
    const ex = this.ex;
    // Closing in the middle of sending a request body: reset (RST), not FIN. A FIN queues
    // behind request bytes the kernel still holds for an app that stopped reading, so the
    // app's end would stay ESTABLISHED, its request never cancelled, until TCP gives up
    // (issue 11, item 3).
    if (ex !== null && !ex.sent && ex.req.body !== null && !this.socket.destroyed && !this.socket.connecting) this.socket.resetAndDestroy();
    else this.socket.destroy();
    this.ex = null;
    this.origin.closed(this);
    if (!ex) return;
    ex.conn = null;
    ex.onConnectionLost(err, this.parser.started);
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
  private body: ResponseBody | null = null;
  private trailers: Headers | undefined;
  private readonly onAbort = () => this.fail(new ProxyError('CLIENT_CANCELLED'));
  limits: H1Limits | null = null;
  private waitMs = 0;
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
    req.signal.addEventListener('abort', this.onAbort, { once: true });
  }

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
      socket.write(this.text, 'latin1');
      this.sent = true;
      return;
    }
    socket.cork();
    socket.write(this.text, 'latin1');
    process.nextTick(() => socket.uncork());
    const chunked = this.chunked;
    const onData = (c: Buffer) => {
      const s = this.conn?.socket;
      if (!s) return;
      let ok: boolean;
      if (chunked) {
        if (c.length === 0) return;
        s.cork();
        s.write(`${c.length.toString(16)}\r\n`, 'latin1');
        s.write(c);
        ok = s.write(CRLF, 'latin1');
        s.uncork();
      } else ok = s.write(c);
      if (!ok) body.pause();
    };
    const onEnd = () => {
      const s = this.conn?.socket;
      if (!s) return;
      if (chunked) {
        const t = this.req.trailers();
        if (t) {
          let tail = '0\r\n';
          try {
            for (const k in t) tail += fieldLines(k, t[k]);
          } catch (e) {
            return this.conn?.close(e);
          }
          s.write(tail + CRLF, 'latin1');
        } else s.write(LAST_CHUNK);
      }
      this.sent = true;
    };
    const onError = (e: Error) => this.conn?.close(e);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    this.stopBody = () => {
      body.removeListener('data', onData);
      body.removeListener('end', onEnd);
      body.removeListener('error', onError);
      if (!body.readableEnded) body.resume();
    };
  }

  private stopBody: (() => void) | null = null;

  onDrain(): void {
    const b = this.req.body;
    if (b && !this.sent) b.resume();
  }

  onHead(head: H1ResponseHead): void {
    this.responded = true;
    if (head.hasBody) this.body = new ResponseBody(this);
    this.resolve({ status: head.status, headers: head.headers, body: this.body, trailers: () => this.trailers });
  }

  push(chunk: Buffer): boolean {
    return this.body ? this.body.push(chunk) : true;
  }

  end(trailers: Headers | undefined): void {
    this.finished = true;
    this.trailers = trailers;
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
    if (!this.sent) this.stopBody?.();
  }

  onConnectionLost(err: unknown, gotBytes: boolean): void {
    // A reused connection the server had closed while idle (reset, or closed before any
    // response byte): nothing was processed, so a bodyless request goes again on a new one.
    const stale = !(err instanceof ProxyError) || (err.code === 'UPSTREAM_RESET' && !gotBytes);
    if (stale && !this.responded && this.reused && !this.retried && !gotBytes && this.req.body === null && !this.req.signal.aborted) {
      this.retried = true;
      this.sent = false;
      this.origin.acquire(this, true);
      return;
    }
    this.detach();
    const e = err ?? Object.assign(new Error('connection closed'), { code: 'ECONNRESET' });
    if (!this.responded) this.reject(toProxyError(e));
    else if (!this.finished) this.body?.destroy(toProxyError(e));
  }

  /** Abort (client cancelled) or pool shut down. */
  fail(err: ProxyError): void {
    this.unwait();
    if (this.queued && !this.conn) this.origin.unqueue(this);
    if (this.conn) return this.conn.close(err);
    this.detach();
    if (!this.responded) this.reject(err);
    else if (!this.finished) this.body?.destroy(err);
  }
}

class ResponseBody extends Readable implements SettledBody {
  constructor(private readonly ex: Exchange) {
    super();
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

export function requestHead(req: ProxyRequest, head: Headers): string {
  const method = req.method;
  if (!TOKEN.test(method)) throw new ProxyError('BAD_REQUEST', `invalid method ${JSON.stringify(method)}`);
  if (BAD_PATH.test(req.path) || req.path === '') throw new ProxyError('BAD_REQUEST', 'invalid request target');
  if (BAD_VALUE.test(req.authority)) throw new ProxyError('BAD_REQUEST', 'invalid authority');
  let s = `${method} ${req.path} HTTP/1.1\r\nhost: ${req.authority}\r\n`;
  for (const k in head) {
    if (k === 'host') continue;
    s += fieldLines(k, head[k]);
  }
  if (req.body !== null) {
    if (head['content-length'] === undefined) s += 'transfer-encoding: chunked\r\n';
  } else if (!BODYLESS_BY_DEFAULT.has(method) && head['content-length'] === undefined) s += 'content-length: 0\r\n';
  return s + CRLF;
}

function fieldLines(name: string, v: string | string[]): string {
  if (!TOKEN.test(name)) throw new ProxyError('BAD_REQUEST', `invalid header name ${JSON.stringify(name)}`);
  if (typeof v === 'string') {
    if (BAD_VALUE.test(v)) throw new ProxyError('BAD_REQUEST', `invalid value for header ${name}`);
    return `${name}: ${v}\r\n`;
  }
  let s = '';
  for (const x of v) s += fieldLines(name, x);
  return s;
}
