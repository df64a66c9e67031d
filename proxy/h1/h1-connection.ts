import { Socket } from 'node:net';
import { LeanBody } from '../http/lean-body.js';
import { H1Parser, type H1Handler } from './parser.js';
import { Body, type H1Head } from './head.js';
import type { H1Error } from './h1-error.js';
import { DEFAULT_H1_LIMITS, type H1Limits } from './limits.js';
import { reasonPhrase } from './reason-phrase.js';
import { CLOSE, HTTP10_PEER, NO_BODY, lastChunk, responseHead, writeChunk, writeMessage, type Fields, headJoinsChunk } from './serialize.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError, resetCodeOf } from '../errors/proxy-error.js';
import type { Clock, Timer } from '../../common/clock.js';
import { setDirectReads, setSharedReads } from '../net/direct-reads.js';
import { lentCopy, SocketReleases } from '../net/body-buffers.js';
import { inTurn } from '../../common/deferred.js';
import type { Cancel } from '../../common/cancel.js';
import { DEFAULT_DELAYED_CLOSE_MS, unwritten } from '../net/delayed-close.js';

export interface H1ConnectionOptions {
  /** Called once per request, at its head (the body streams after). Must answer through the exchange. */
  onRequest(ex: H1ServerExchange): void;
  /**
   * An upgrade request (or CONNECT) has ended: `rest` is what followed its head, the
   * socket is paused and no longer read by the connection. Answer it either through `ex`
   * (an ordinary response, after which the connection closes) or take the socket over
   * with `ex.conn.release()`. Without it: 501.
   */
  onUpgrade?(head: H1Head, socket: Socket, rest: Buffer, ex: H1ServerExchange): void;
  /**
   * An upgrade request's head: false serves it as an ordinary request, its Upgrade
   * ignored (a server may ignore any Upgrade, RFC 9110 section 7.8). Default: true.
   */
  acceptsUpgrade?(head: H1Head): boolean;
  /** A malformed request (after its error response has been queued): for metrics and logs. */
  onClientError?(err: H1Error): void;
  /** An exchange is over: its response ended or the client went away first. */
  onExchangeEnd?(ex: H1ServerExchange): void;
  /** The connection is no longer served: its socket closed, or it was released (an upgrade switched). */
  onClose?(conn: H1Connection): void;
  readonly limits?: H1Limits;
  /** Standard reason phrases on status lines (as node:http sends them). Default: none. */
  readonly reasons?: boolean;
  /** Read for the timestamps that checkTimers() compares, and arms the delayed close; without it the timers are off. */
  readonly clock?: Clock;
  /**
   * Once the connection has ended its side (a response with `connection: close`, an error
   * response, a drain, the client's FIN), the client has this long to close its own before
   * the socket is destroyed (Envoy's delayed_close_timeout); while our last bytes are still
   * being written, each bit of progress starts the wait again. 0: off. Default
   * DEFAULT_DELAYED_CLOSE_MS (with a clock).
   */
  readonly delayedCloseMs?: number;
  /** A limit fired outside checkTimers(): the delayed close destroyed a socket the client kept open. */
  onLimit?(limit: H1TimerLimit): void;
  /**
   * checkTimers() answered 408: part of a head came, not all of it in time (Envoy
   * request_headers_timeout). For the access log: no request reached the service. A
   * connection that sent nothing is closed without an answer and is not reported.
   */
  onHeadersTimeout?(err: ProxyError): void;
  /**
   * The client's FIN is a half-close, not its going away: whole requests are answered, then
   * the connection closes. For transports that have a separate "gone" signal (a mesh
   * multiplexer stream's RESET). Default false: on TCP a FIN cannot be told from a client
   * that left, so it cancels the request in flight, as Envoy, hyper and node do.
   */
  readonly halfClose?: boolean;
}


const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

/** What the connection is waiting for, for its timers (checkTimers). */
export const Phase = {
  /** Between requests after a response (idle keep-alive timeout). */
  Idle: 0,
  /** A request head is due or partly here (request headers timeout); also a new connection. */
  Head: 1,
  /** A request is in flight (stream idle timeout: no byte either way). */
  Active: 2,
  /** Upgraded, released or closed: no timer of this connection's. */
  Gone: 3,
} as const;

/** Which timeout fired in checkTimers(), or the delayed close (onLimit). */
export type H1TimerLimit = 'request-headers-timeout' | 'idle-connection-timeout' | 'stream-idle-timeout' | 'delayed-close-timeout';

/**
 * Serves HTTP/1.1 on a socket with the codec: no IncomingMessage, ServerResponse or
 * stream per request, only a small exchange (head, body stream when there is a body).
 * One request is handled at a time: the parser pauses at the end of each request until
 * its response has ended, so pipelined requests are answered in order (RFC 9112 section
 * 9.3.2) and at most one socket read of them is held. A request body streams with
 * backpressure (the socket pauses while the body's reader is full); `Expect:
 * 100-continue` is answered when the body is first read, never when the response comes
 * first (RFC 9110 section 10.1.1). The connection closes after a response when the
 * request asked for it, the request was HTTP/1.0 without keep-alive, the request body
 * was not wholly read (its unread bytes cannot be told from the next request), or the
 * owner is draining (closeWhenIdle()). A client that closes its side (FIN) has gone away:
 * the request in flight is aborted, as node's server and Envoy do; unless the transport
 * says a FIN is only a half-close (`halfClose`: a mux stream, which has RESET for going
 * away): then whole requests are answered, pipelined ones in order, and the connection
 * closes after them (RFC 9112 section 9.6: "a client ... might close its sending side").
 * Once the connection has ended its side, the client has `delayedCloseMs` to close its own
 * (Envoy's delayed_close_timeout), then the socket is destroyed (endSocket()).
 */
export class H1Connection implements H1Handler {
  private readonly parser: H1Parser;
  private ex: H1ServerExchange | null = null;
  /** Bytes of the last read the parser has not taken (it paused between requests). */
  private rest: Buffer | null = null;
  private closed = false;
  /** The last response is out and the connection closes: nothing more is parsed. */
  private closing = false;
  /** Draining: the response in flight says `connection: close`, then the connection ends. */
  draining = false;
  phase: number = Phase.Head;
  /** When the phase began (Idle, Head) or a byte last moved (Active), in clock ms. */
  since = 0;
  readonly reasons: boolean;
  private readonly clock: Clock | undefined;
  private readonly delayedCloseMs: number;
  /** The delayed close (endSocket()): armed once our side has ended, cleared when the socket closes. */
  private closeTimer: Timer | null = null;
  /** What node held unwritten for the socket when the delayed close last looked (unwritten()). */
  private closeBacklog = 0;
  /** The transport half-closes (a mux stream): see the class comment, and responseEnded() for a request body that outlives its response. */
  readonly halfClose: boolean;
  private readonly onData = (d: Buffer): void => inTurn(this.feed, this, d);
  private readonly onEndEv = (): void => this.onSocketEnd();
  private readonly onDrainEv = (): void => this.drained();
  private readonly onErrorEv = (): void => void this.socket.destroy();
  private readonly onCloseEv = (): void => this.onClose();
  /** Reads are views of a buffer the next read overwrites (setSharedReads): what is kept past a read is copied. */
  private readonly viewReads: boolean;
  /** Lent response body buffers written to a node socket (TCP or TLS), until it has written them (null: a mux stream's session hands them back). */
  readonly releases: SocketReleases | null;

  constructor(
    readonly socket: Socket,
    private readonly opts: H1ConnectionOptions,
  ) {
    this.parser = new H1Parser(this, false, opts.limits ?? DEFAULT_H1_LIMITS);
    this.reasons = opts.reasons === true;
    this.clock = opts.clock;
    this.delayedCloseMs = opts.delayedCloseMs ?? DEFAULT_DELAYED_CLOSE_MS;
    this.halfClose = opts.halfClose === true;
    this.releases = socket instanceof Socket ? new SocketReleases(socket) : null;
    this.since = this.now();
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    // A TCP or TLS socket reads into the thread's shared buffer; a virtual connection of the
    // mesh multiplexer hands its payloads over directly (mux-stream.ts), views of its
    // session's shared buffer when the session reads that way.
    this.viewReads = setSharedReads(socket, this.onData) || setDirectReads(socket, this.onData);
    socket.on('end', this.onEndEv);
    socket.on('drain', this.onDrainEv);
    socket.on('error', this.onErrorEv);
    socket.on('close', this.onCloseEv);
  }

  /** Bytes read before the connection took the socket (detection's, peek.ts peekTaking): parsed as a read. */
  receive(head: Buffer): void {
    this.onData(head);
  }

  private now(): number {
    return this.clock === undefined ? 0 : this.clock.approxNow();
  }

  /** A byte moved on the exchange in flight (stream idle timeout). */
  touch(): void {
    if (this.clock !== undefined && this.phase === Phase.Active) this.since = this.clock.approxNow();
  }

  private feed(d: Buffer): void {
    if (this.closing) return;
    if (this.clock !== undefined) {
      if (this.phase === Phase.Active) this.since = this.clock.approxNow();
      else if (this.phase === Phase.Idle) {
        // The headers timeout runs from the next request's first byte (Envoy's request_headers_timeout).
        this.phase = Phase.Head;
        this.since = this.clock.approxNow();
      }
    }
    if (this.rest !== null) {
      d = Buffer.concat([this.rest, d]); // only if a read slipped in while paused
      this.rest = null;
    }
    const n = this.parser.execute(d);
    if (n < d.length && this.parser.isPaused && !this.closed) {
      this.rest = this.viewReads ? Buffer.from(d.subarray(n)) : d.subarray(n);
      this.socket.pause();
    }
  }

  private drained(): void {
    this.releases?.settle();
    const ex = this.ex;
    if (ex === null) return;
    this.touch();
    ex.onDrain?.();
  }

  private onSocketEnd(): void {
    const ex = this.ex;
    if (this.halfClose) {
      // Only the client's sending side ended: a whole request in flight is still answered,
      // and those pipelined behind it (responseEnded comes back here); then the connection closes.
      if (ex !== null && !ex.ended && ex.requestEnded) return;
      this.inputEnded();
      return;
    }
    this.parser.finish(); // a request cut short: 'truncated', answered from the error table
    // The client closed its side: it has gone away, as node's server (httpAllowHalfOpen
    // false) and Envoy take it, so the request in flight is cancelled upstream.
    if (ex !== null && !ex.ended) {
      this.ex = null;
      ex.aborted();
    }
    this.closing = true;
    this.phase = Phase.Gone;
    this.endSocket();
  }

  /** A half-closed client sends no more: a request cut short is 'truncated' (the error table), else the connection closes. */
  private inputEnded(): void {
    this.parser.finish();
    if (this.ex !== null) return; // its error response (or cut) closes the connection
    this.closing = true;
    this.phase = Phase.Gone;
    this.endSocket();
  }

  /**
   * Ends our side (a FIN once what is queued has been written) and arms the delayed close:
   * a client that keeps its half open (or never reads our last bytes) must not hold the
   * socket, and its place under the listener's connection cap, for good. Envoy's
   * delayed_close_timeout: the client gets delayedCloseMs to close, the wait starting again
   * while our last bytes are still being written and some moved since the last look. A
   * timer of the connection's own, armed only once it is ending (never per request).
   */
  private endSocket(): void {
    const s = this.socket;
    if (!s.writableEnded) s.end();
    const clock = this.clock;
    if (clock === undefined || this.delayedCloseMs <= 0 || this.closeTimer !== null || this.closed || s.destroyed) return;
    this.closeBacklog = unwritten(s);
    this.closeTimer = clock.setTimeout(() => this.delayedClose(), this.delayedCloseMs);
    this.closeTimer.unref?.();
  }

  private delayedClose(): void {
    this.closeTimer = null;
    const s = this.socket;
    if (this.closed || s.destroyed) return;
    if (!s.writableFinished) {
      const left = unwritten(s);
      if (left !== this.closeBacklog) {
        this.closeBacklog = left;
        this.closeTimer = this.clock!.setTimeout(() => this.delayedClose(), this.delayedCloseMs);
        this.closeTimer.unref?.();
        return;
      }
    }
    this.opts.onLimit?.('delayed-close-timeout');
    s.destroy();
  }

  private disarmClose(): void {
    if (this.closeTimer === null) return;
    this.clock!.clearTimeout(this.closeTimer);
    this.closeTimer = null;
  }

  private onClose(): void {
    this.closed = true;
    this.phase = Phase.Gone;
    this.disarmClose();
    const ex = this.ex;
    this.ex = null;
    if (ex && !ex.ended) ex.aborted();
    // Answered, its body still coming (responseEnded): the body is cut, never left without an end.
    else if (ex && !ex.requestEnded) ex.cutBody();
    this.opts.onClose?.(this);
  }

  /**
   * Compares the phase's start with the limits (0: off). A head not complete in time gets
   * 408 through the error table (nothing at all if not one byte of it came); an idle
   * connection or a stalled exchange is closed. Returns the limit that fired, or null.
   */
  checkTimers(now: number, headersMs: number, idleMs: number, streamIdleMs: number): H1TimerLimit | null {
    const age = now - this.since;
    switch (this.phase) {
      case Phase.Head:
        if (headersMs <= 0 || age < headersMs || this.closing) return null;
        this.phase = Phase.Gone;
        if (this.parser.idle && this.ex === null) this.socket.destroy();
        else {
          const err = new ProxyError('HEADERS_TIMEOUT', `after ${headersMs} ms`);
          this.failConnection(err);
          this.opts.onHeadersTimeout?.(err);
        }
        return 'request-headers-timeout';
      case Phase.Idle:
        if (idleMs <= 0 || age < idleMs) return null;
        this.phase = Phase.Gone;
        this.socket.destroy();
        return 'idle-connection-timeout';
      case Phase.Active:
        if (streamIdleMs <= 0 || age < streamIdleMs) return null;
        this.phase = Phase.Gone;
        this.socket.destroy();
        return 'stream-idle-timeout';
    }
    return null;
  }

  /** No exchange in flight: close now. Else the response in flight closes the connection. */
  closeWhenIdle(): void {
    this.draining = true;
    if (this.ex === null && !this.closed) {
      this.closing = true;
      this.phase = Phase.Gone;
      this.endSocket();
    }
  }

  /** Hands the socket over (an upgrade switched): the connection lets go of it and its events. */
  release(): void {
    this.phase = Phase.Gone;
    this.closing = true;
    this.ex = null;
    this.disarmClose();
    const s = this.socket;
    s.removeListener('data', this.onData);
    setDirectReads(s, null);
    s.removeListener('end', this.onEndEv);
    s.removeListener('drain', this.onDrainEv);
    s.removeListener('error', this.onErrorEv);
    s.removeListener('close', this.onCloseEv);
    this.opts.onClose?.(this);
  }

  /** An error response for the connection (no request in flight, or one whose request is void), then close. */
  private failConnection(err: unknown): void {
    const ex = this.ex;
    if (ex !== null && ex.headSent) {
      this.socket.destroy();
      return;
    }
    ex?.aborted(err instanceof Error ? err : undefined);
    const out = new H1ServerExchange(this, null);
    this.ex = out;
    out.fail(err);
  }

  // --- H1Handler (the parser's callbacks) ---

  onHead(head: H1Head): void {
    if (this.closing) return;
    if (head.upgrade && this.opts.acceptsUpgrade !== undefined && !this.opts.acceptsUpgrade(head)) head.upgrade = false; // served as plain HTTP/1.1
    const ex = new H1ServerExchange(this, head);
    this.ex = ex;
    this.phase = Phase.Active;
    if (head.upgrade) {
      // Answered once the request has ended (onUpgrade), with what followed it. An upgrade
      // request may not carry a body (as Envoy): its bytes could not be told from the tunnel's.
      if (head.body !== Body.None) ex.fail(new ProxyError('BAD_REQUEST', 'an upgrade request cannot carry a body'));
      return;
    }
    try {
      this.opts.onRequest(ex);
    } catch (e) {
      ex.fail(e);
    }
  }

  onBody(chunk: Buffer): void {
    const b = this.ex?.body;
    // A view of the read buffer is copied, into a block that the body's last writer hands
    // back (body-buffers.ts): holders that keep request bytes for a replay copy them.
    if (b && !b.push(this.viewReads ? lentCopy(chunk) : chunk)) this.socket.pause();
  }

  onTrailers(fields: string[]): void {
    if (this.ex) this.ex.trailers = fields;
  }

  onEnd(): void {
    const ex = this.ex;
    if (ex === null) return;
    ex.requestEnded = true;
    if (ex.head?.upgrade) return; // onUpgrade follows in this same execute()
    ex.body?.push(null);
    // The next request waits for this response; or for the turn's end when the response
    // came first (responseEnded kept reading this body): the parser is still executing here.
    this.parser.pause();
    if (ex.ended) process.nextTick(bothEnded, this, ex);
  }

  onUpgrade(rest: Buffer): void {
    if (this.closing) return;
    const s = this.socket;
    s.removeListener('data', this.onData);
    setDirectReads(s, null);
    s.removeListener('end', this.onEndEv);
    // The parser reads no more (the socket's bytes are the tunnel's): an upgrade pipelined
    // behind a request is parsed from `rest` in responseEnded, which must not then resume
    // the socket with no 'data' listener (the bytes that waited would be dropped).
    this.parser.pause();
    const ex = this.ex;
    this.phase = Phase.Gone;
    if (ex !== null && !ex.ended) {
      if (this.opts.onUpgrade && ex.head) this.opts.onUpgrade(ex.head, s, this.viewReads ? Buffer.from(rest) : rest, ex);
      else ex.fail(new ProxyError('NOT_IMPLEMENTED', 'upgrades are not served here'));
    }
    // Bytes after the head stay in the socket until the callee reads them (a flowing socket
    // with no 'data' listener would drop them).
    if (s.listenerCount('data') === 0 && !this.closing) s.pause();
  }

  onError(err: H1Error): void {
    this.opts.onClientError?.(err);
    this.failConnection(err);
  }

  // --- from the exchange ---

  /** The response has been written whole. */
  responseEnded(ex: H1ServerExchange, close: boolean): void {
    this.opts.onExchangeEnd?.(ex);
    if (this.ex !== ex) return;
    // A response before the request's end, on a transport that half-closes (a mux stream,
    // whose client may reset it instead): the body is read on to its end, as an HTTP/2
    // server reads a stream it has answered (RFC 9113 section 8.1), and the connection
    // takes the next request after that (onEnd). The stream idle timeout bounds the wait.
    if (!close && !ex.requestEnded && ex.body !== null && this.halfClose && !this.draining && !this.closed) return;
    this.nextRequest(ex, close);
  }

  /** Both the request and its response ended (onEnd, after a response that came first). */
  afterUpload(ex: H1ServerExchange): void {
    if (this.ex === ex && !this.closed && !this.socket.destroyed) this.nextRequest(ex, false);
  }

  private nextRequest(ex: H1ServerExchange, close: boolean): void {
    this.ex = null;
    if (close || !ex.requestEnded || (this.socket.readableEnded && !this.halfClose) || this.draining || ex.head?.upgrade) {
      // A body not read to its end is cut: its reader must not wait for an end that never comes.
      if (!ex.requestEnded) ex.cutBody();
      this.closing = true;
      this.phase = Phase.Gone;
      this.endSocket();
      // An upgrade not switched: the bytes held behind it are dropped, and the socket read on
      // to the client's FIN (paused, it would never see it: the connection, or a mux stream's
      // slot, would stay open for good).
      if (ex.head?.upgrade && this.socket.listenerCount('data') === 0) this.socket.resume();
      return;
    }
    this.phase = Phase.Idle;
    this.since = this.now();
    this.parser.resume();
    const rest = this.rest;
    this.rest = null;
    if (rest) this.feed(rest);
    if (this.socket.readableEnded) {
      // A half-closed client: a whole pipelined request is served next, else the input is over.
      const next = this.ex as H1ServerExchange | null;
      if ((next === null || !next.requestEnded) && !this.closing) this.inputEnded();
      return;
    }
    if (!this.parser.isPaused) this.socket.resume();
  }

  exchangeAborted(ex: H1ServerExchange): void {
    this.opts.onExchangeEnd?.(ex);
  }

  readMore(): void {
    if (!this.closed && !this.parser.isPaused) this.socket.resume();
  }
}

/** A request body: socket bytes pushed in as they arrive; reading resumes the socket. */
class RequestBody extends LeanBody {
  private continued = false;
  constructor(private readonly ex: H1ServerExchange) {
    super();
  }
  override _read(): void {
    if (!this.continued) {
      this.continued = true;
      this.ex.sendContinue();
    }
    this.ex.conn.readMore();
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    // Failed by its reader after the whole response went out (the app reset the stream while
    // the upload went on): the connection cannot take the rest, and on a mux stream, read on
    // to the request's end (responseEnded), the caller's sidecar would never learn. Cut, so
    // that it drops its upload and resets its caller.
    // A mux stream only: a TCP connection closes after such a response anyway (responseEnded,
    // nextRequest), and destroying it here could drop response bytes still in its buffer.
    if (err !== null && !this.ex.cut && this.ex.ended && !this.ex.requestEnded && this.ex.conn.halfClose && !this.ex.conn.socket.destroyed) this.ex.conn.socket.destroy();
    // As node's IncomingMessage: the error of a body no one listens to (a service that has
    // not started reading it when the client goes away) is not emitted, or it would be an
    // unhandled 'error' event and take the process down.
    cb(err !== null && this.listenerCount('error') > 0 ? err : null);
  }
}

/**
 * One request and its response on an H1Connection. The response head is held until the
 * first body bytes or the end, so head and body leave in one write (as node:http does);
 * flushHead() sends it alone when the body is not there yet.
 */
export class H1ServerExchange {
  readonly body: RequestBody | null;
  trailers: string[] | null = null;
  requestEnded = false;
  /** The connection cut the request body (cutBody, aborted), as opposed to its reader dropping it. */
  cut = false;
  /** The response head is committed (maybe still held in `pending`). */
  headSent = false;
  ended = false;
  /** Called when the socket can take more response bytes after write() returned false. */
  onDrain: (() => void) | null = null;
  /** Called if the client goes away before the response has ended. */
  onAbort: (() => void) | null = null;
  /** Aborted with onAbort (the request's cancellation signal). */
  controller: Cancel | null = null;
  private chunked = false;
  private noBody = false;
  private close = false;
  private pending: string | null = null;

  constructor(
    readonly conn: H1Connection,
    /** null for the error response to a request that could not be parsed. */
    readonly head: H1Head | null,
  ) {
    this.body = head !== null && head.body !== Body.None && !head.upgrade ? new RequestBody(this) : null;
    this.close = head === null || !head.keepAlive;
  }

  /** 100 Continue, if the client asked and no response has started. */
  sendContinue(): void {
    if (this.head?.expectContinue && !this.headSent) this.conn.socket.write(CONTINUE);
  }

  /** The head; bodyLength -1: unknown (chunked, or close-delimited for an HTTP/1.0 client). */
  respond(status: number, fields: Fields, bodyLength: number): void {
    if (this.ended) return;
    if (this.headSent) throw new ProxyError('INTERNAL', 'response head sent twice');
    this.prepare(status, bodyLength);
    // Built before headSent is set: a field the serialiser refuses throws here, and the
    // exchange can still answer with an error response instead.
    this.pending = responseHead(status, fields, bodyLength, this.mode(), this.reason(status));
    this.headSent = true;
  }

  /** Sends a held head now (the body is not here yet: the client should not wait for it). */
  flushHead(): void {
    const p = this.pending;
    if (p === null || this.ended) return;
    this.pending = null;
    this.conn.touch();
    this.conn.socket.write(p, 'latin1');
  }

  /** A whole response in one write. */
  send(status: number, fields: Fields, body: Buffer | null): void {
    if (this.ended) return;
    if (this.headSent) throw new ProxyError('INTERNAL', 'response head sent twice');
    const n = body?.length ?? 0;
    this.prepare(status, n);
    const head = responseHead(status, fields, n, this.mode(), this.reason(status));
    this.headSent = true;
    this.conn.touch();
    writeMessage(this.conn.socket, head, this.noBody ? null : body);
    this.finish();
  }

  write(chunk: Buffer): boolean {
    if (this.ended) return true;
    const s = this.conn.socket;
    const p = this.pending;
    if (this.noBody) {
      if (p !== null) this.flushHead();
      return true;
    }
    this.conn.touch();
    // A lent buffer (body-buffers.ts) goes back once node has written it: those of earlier
    // writes now if the socket has, this one after the write.
    const releases = this.conn.releases;
    releases?.settle();
    let ok: boolean;
    if (p === null) ok = this.chunked ? writeChunk(s, chunk) : s.write(chunk);
    else {
      this.pending = null;
      if (!this.chunked) ok = writeMessage(s, p, chunk);
      else {
        const join = headJoinsChunk(s, chunk.length);
        if (join) s.cork();
        s.write(p, 'latin1');
        ok = writeChunk(s, chunk);
        if (join) s.uncork();
      }
    }
    releases?.wrote(chunk);
    return ok;
  }

  end(trailers?: Fields): void {
    if (this.ended) return;
    const p = this.pending;
    this.pending = null;
    if (this.chunked) {
      const last = lastChunk(trailers, true);
      if (p === null) this.conn.socket.write(last, typeof last === 'string' ? 'latin1' : undefined);
      else this.conn.socket.write(p + (typeof last === 'string' ? last : '0\r\n\r\n'), 'latin1');
    } else if (p !== null) this.conn.socket.write(p, 'latin1');
    this.finish();
  }

  /**
   * An error becomes a response through the one error mapping (errorResponse: status,
   * the proxy-error header, its text body); after the head, the connection is dropped.
   */
  fail(err: unknown): void {
    if (this.ended) return;
    if (this.headSent) {
      // Cut: the client must not take a truncated response for a whole one.
      this.aborted(err instanceof Error ? err : undefined);
      // Cut by the upstream's own RST_STREAM: a mesh virtual connection's RESET carries its
      // code to the caller's sidecar (mux-stream.ts resetForUpstream), where a socket would lose it.
      const code = resetCodeOf(err);
      const s = this.conn.socket as Socket & { resetForUpstream?(h2Code: number): void };
      if (code !== undefined && s.resetForUpstream !== undefined) s.resetForUpstream(code);
      else s.destroy();
      return;
    }
    const r = errorResponse(err, { headers: {} });
    this.close = true;
    // errorResponse's body is settled (all here): read() gives it whole.
    const text = r.body === null ? null : (r.body.read() as Buffer | null);
    r.body?.destroy();
    this.send(r.status, r.headers, text);
  }

  /** The request body will not be read to its end (its response is out): its reader sees an error, not a hang. */
  cutBody(): void {
    this.cut = true;
    const b = this.body;
    if (b !== null && !b.readableEnded && !b.destroyed) b.destroy(new ProxyError('CLIENT_CANCELLED', 'the request body was cut after its response'));
  }

  /** The exchange is over before its response (client gone, or its request was malformed). */
  aborted(err: Error = new ProxyError('CLIENT_CANCELLED')): void {
    if (this.ended) return;
    this.ended = true;
    this.cut = true;
    this.body?.destroy(err);
    this.controller?.abort();
    this.onAbort?.();
    this.conn.exchangeAborted(this);
  }

  private reason(status: number): string {
    return this.conn.reasons ? reasonPhrase(status) : '';
  }

  private prepare(status: number, bodyLength: number): void {
    const h = this.head;
    this.noBody = h?.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    this.chunked = !this.noBody && bodyLength < 0 && (h === null || h.minor === 1);
    if (bodyLength < 0 && h !== null && h.minor === 0) this.close = true;
    // Unread body bytes cannot be skipped safely; a half-closing transport reads them on (responseEnded).
    if (!this.requestEnded && this.body !== null && !this.conn.halfClose) this.close = true;
    if (this.conn.draining || h?.upgrade) this.close = true; // an upgrade not switched: its held bytes are dropped with the connection
  }

  private mode(): number {
    return (this.noBody ? NO_BODY : 0) | (this.head?.minor === 0 ? HTTP10_PEER : 0) | (this.close ? CLOSE : 0);
  }

  private finish(): void {
    this.ended = true;
    this.conn.responseEnded(this, this.close);
  }
}

function bothEnded(conn: H1Connection, ex: H1ServerExchange): void {
  conn.afterUpload(ex);
}
