/**
 * A request on the HTTP/1.1 pool (h1-pool.ts) and its response: sending the head and body
 * (corked head, shared body listeners, the replay after a refused mesh stream), the
 * response's body stream, abort, and what a lost connection means for the request. Apart
 * from the connection (h1-pool-conn.ts), which drives it; it knows its connection and
 * origin only by the shapes below, so neither file imports the other's values or types.
 */

import { nodeTimerMs } from '../../common/clock.js';
import type { Socket } from 'node:net';
import { LeanBody } from './lean-body.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { isSettled, type BodyStream, type ProxyRequest, type ProxyResponse, type SettledBody } from './exchange.js';
import type { Headers } from './headers.js';
import { Body, fieldsToHeaders, type H1Head } from '../h1/head.js';
import { headJoinsChunk, lastChunk, writeChunk, writeMessage } from '../h1/serialize.js';
import { keepable, type SocketReleases } from '../net/body-buffers.js';
import { IDEMPOTENT } from './idempotent.js';
import type { ConnectionWait, H1Limits, Slot } from './h1-pool-options.js';

/** What an exchange uses of its connection (h1-pool-conn.ts Conn), which imports this file. */
interface ExchangeConn {
  readonly socket: Socket;
  readonly releases: SocketReleases | null;
  close(err: unknown): void;
  uploaded(ex: Exchange): void;
}

/** What an exchange uses of its origin (h1-pool.ts Origin), which imports this file. */
interface ExchangeOrigin {
  readonly pool: { readonly refusedReplayBytes: number; readonly meshH2: boolean };
  acquire(ex: Exchange, fresh?: boolean): void;
  unqueue(ex: Exchange): void;
}

export class Exchange {
  conn: ExchangeConn | null = null;
  queued = false;
  reused = false;
  sent = false;
  /**
   * When its connection came up, or a busy origin's connection was free for it, if it had to
   * wait for either (ProxyResponse.sentAt: the balancer's latency starts there); -1 when it
   * went out on a connection at once. Set by the connection (onConnect) and the origin's queue.
   */
  sentAt = -1;
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
  /** Told when this request waits for a connection and when it has one (H1Pool.request's `wait`); null: nobody asks. */
  connWait: ConnectionWait | null = null;
  readonly isHead: boolean;

  constructor(
    readonly req: ProxyRequest,
    private readonly text: string,
    private readonly chunked: boolean,
    private readonly resolve: (r: ProxyResponse) => void,
    private readonly reject: (e: unknown) => void,
    public origin: ExchangeOrigin,
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
    // nodeTimerMs: a policy's "720h" connect timeout must not become Node's 1 ms.
    this.waitTimer = setTimeout(() => this.fail(new ProxyError('OVERFLOW', `no connection to the endpoint was free within ${this.waitMs} ms`)), nodeTimerMs(this.waitMs));
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

  /** It waits for a connection: a new one coming up (its TLS handshake too), or one of a busy origin's to be free. */
  waitsForConnection(): void {
    this.connWait?.waitsForConnection();
  }

  /**
   * It has its connection (connected, or free for it). Told again after each wait: a request
   * sent again after a refused mesh stream (onConnectionLost) waits for a new connection,
   * and its per-try timers stand still then too, as for the first (connWait is kept).
   */
  hasConnection(): void {
    this.connWait?.connected();
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
    this.resolve({ status: head.status, headers, body: this.body, trailers: this.getTrailers, sentAt: this.sentAt });
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
    const e = err ?? Object.assign(new Error('connection closed'), { code: 'ECONNRESET' });
    // The whole response came and the upload was still going when the connection was lost:
    // no one reads the rest, so it is dropped with the error (its sender learns: the
    // caller's stream reset) rather than read and discarded for as long as the caller sends.
    const upload = this.responded && this.finished && !this.sent ? this.req.body : null;
    this.detach();
    if (!this.responded) this.reject(toProxyError(e));
    else if (!this.finished) this.body?.fail(toProxyError(e));
    else if (upload !== null && !upload.destroyed && !upload.readableEnded) upload.destroy(toProxyError(e));
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
