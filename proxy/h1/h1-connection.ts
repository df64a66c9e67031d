import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { H1Parser, type H1Handler } from './parser.js';
import { Body, type H1Head } from './head.js';
import type { H1Error } from './h1-error.js';
import { DEFAULT_H1_LIMITS, type H1Limits } from './limits.js';
import { CLOSE, HTTP10_PEER, NO_BODY, lastChunk, responseHead, writeChunk, writeMessage, type Fields } from './serialize.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';

export interface H1ConnectionOptions {
  /** Called once per request, at its head (the body streams after). Must answer through the exchange. */
  readonly onRequest: (ex: H1ServerExchange) => void;
  /** An upgrade request (or CONNECT) has ended: the socket is the callee's from now on. Without it: 501. */
  readonly onUpgrade?: (head: H1Head, socket: Socket, rest: Buffer) => void;
  /** A malformed request (after its error response has been queued): for metrics and logs. */
  readonly onClientError?: (err: H1Error) => void;
  readonly limits?: H1Limits;
}

const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

/**
 * PROTOTYPE (issue 12): serves HTTP/1.1 on a socket with the codec instead of node:http.
 * One request is handled at a time: the parser pauses at the end of each request until
 * its response has ended, so pipelined requests are answered in order (RFC 9112 section
 * 9.3.2) and at most one socket read of them is held. A request body streams with
 * backpressure (the socket pauses while the body's reader is full); `Expect:
 * 100-continue` is answered when the body is first read, never when the response comes
 * first (RFC 9110 section 10.1.1). The connection closes after a response when the
 * request asked for it, the request was HTTP/1.0 without keep-alive, or the request body
 * was not wholly read (its unread bytes cannot be told from the next request).
 */
export class H1Connection implements H1Handler {
  private readonly parser: H1Parser;
  private ex: H1ServerExchange | null = null;
  /** Bytes of the last read the parser has not taken (it paused between requests). */
  private rest: Buffer | null = null;
  private closed = false;
  /** The last response is out and the connection closes: nothing more is parsed. */
  private closing = false;
  private upgradeHead: H1Head | null = null;

  constructor(
    readonly socket: Socket,
    private readonly opts: H1ConnectionOptions,
  ) {
    this.parser = new H1Parser(this, false, opts.limits ?? DEFAULT_H1_LIMITS);
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.feed(d));
    socket.on('end', () => this.onSocketEnd());
    socket.on('drain', () => this.ex?.onDrain?.());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
  }

  private feed(d: Buffer): void {
    if (this.closing) return;
    if (this.rest !== null) {
      d = Buffer.concat([this.rest, d]); // only if a read slipped in while paused
      this.rest = null;
    }
    const n = this.parser.execute(d);
    if (n < d.length && this.parser.isPaused && !this.closed) {
      this.rest = d.subarray(n);
      this.socket.pause();
    }
  }

  private onSocketEnd(): void {
    this.parser.finish();
    // The client half-closed: answer what is in flight, then close.
    if (this.ex === null) this.socket.end();
  }

  private onClose(): void {
    this.closed = true;
    const ex = this.ex;
    this.ex = null;
    if (ex && !ex.ended) ex.aborted();
  }

  // --- H1Handler (the parser's callbacks) ---

  onHead(head: H1Head): void {
    if (this.closing) return;
    if (head.upgrade) {
      this.upgradeHead = head; // handed over whole in onUpgrade, once the request has ended
      return;
    }
    const ex = new H1ServerExchange(this, head);
    this.ex = ex;
    try {
      this.opts.onRequest(ex);
    } catch (e) {
      ex.fail(e);
    }
  }

  onBody(chunk: Buffer): void {
    const b = this.ex?.body;
    if (b && !b.push(chunk)) this.socket.pause();
  }

  onTrailers(fields: string[]): void {
    if (this.ex) this.ex.trailers = fields;
  }

  onEnd(): void {
    const ex = this.ex;
    if (ex === null) return; // an upgrade request: onUpgrade follows
    ex.requestEnded = true;
    ex.body?.push(null);
    if (!ex.ended) this.parser.pause(); // the next request waits for this response
  }

  onUpgrade(rest: Buffer): void {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('drain');
    const h = this.upgradeHead;
    if (h && this.opts.onUpgrade) return this.opts.onUpgrade(h, this.socket, rest);
    this.socket.end(responseHead(501, {}, 0, CLOSE), 'latin1');
  }

  onError(err: H1Error): void {
    this.opts.onClientError?.(err);
    const ex = this.ex;
    if (ex && ex.headSent) {
      this.socket.destroy();
      return;
    }
    ex?.aborted(err);
    const out = new H1ServerExchange(this, null);
    this.ex = out;
    out.fail(err);
  }

  // --- from the exchange ---

  /** The response has been written whole. */
  responseEnded(ex: H1ServerExchange, close: boolean): void {
    if (this.ex !== ex) return;
    this.ex = null;
    if (close || !ex.requestEnded || this.socket.readableEnded) {
      this.closing = true;
      this.socket.end();
      return;
    }
    this.parser.resume();
    const rest = this.rest;
    this.rest = null;
    if (rest) this.feed(rest);
    if (!this.parser.isPaused) this.socket.resume();
  }

  readMore(): void {
    if (!this.closed && !this.parser.isPaused) this.socket.resume();
  }
}

/** A request body: socket bytes pushed in as they arrive; reading resumes the socket. */
class RequestBody extends Readable {
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
}

/** One request and its response on an H1Connection. */
export class H1ServerExchange {
  readonly body: RequestBody | null;
  trailers: string[] | null = null;
  requestEnded = false;
  headSent = false;
  ended = false;
  /** Called when the socket can take more response bytes after write() returned false. */
  onDrain: (() => void) | null = null;
  /** Called if the client goes away before the response has ended. */
  onAbort: (() => void) | null = null;
  private chunked = false;
  private noBody = false;
  private close = false;

  constructor(
    readonly conn: H1Connection,
    /** null for the error response to a request that could not be parsed. */
    readonly head: H1Head | null,
  ) {
    this.body = head !== null && head.body !== Body.None ? new RequestBody(this) : null;
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
    this.headSent = true;
    this.prepare(status, bodyLength);
    this.conn.socket.write(responseHead(status, fields, bodyLength, this.mode()), 'latin1');
  }

  /** A whole response in one write. */
  send(status: number, fields: Fields, body: Buffer | null): void {
    if (this.ended) return;
    if (this.headSent) throw new ProxyError('INTERNAL', 'response head sent twice');
    this.headSent = true;
    const n = body?.length ?? 0;
    this.prepare(status, n);
    writeMessage(this.conn.socket, responseHead(status, fields, n, this.mode()), this.noBody ? null : body);
    this.finish();
  }

  write(chunk: Buffer): boolean {
    if (this.noBody || this.ended) return true;
    return this.chunked ? writeChunk(this.conn.socket, chunk) : this.conn.socket.write(chunk);
  }

  end(trailers?: Fields): void {
    if (this.ended) return;
    if (this.chunked) this.conn.socket.write(lastChunk(trailers, true));
    this.finish();
  }

  /** An error becomes a response through the one error mapping; after the head, the connection is dropped. */
  fail(err: unknown): void {
    if (this.ended) return;
    if (this.headSent) {
      this.ended = true;
      this.conn.socket.destroy();
      return;
    }
    const r = errorResponse(err, { headers: {} });
    // The body errorResponse streams, made here at once (its text: the error's message and a newline).
    const text = Buffer.from(`${toProxyError(err, 'INTERNAL').message}\n`);
    const headers = { ...r.headers };
    delete headers['content-length'];
    r.body?.destroy();
    this.close = true;
    this.send(r.status, headers, text);
  }

  /** The exchange is over before its response (client gone, or its request was malformed). */
  aborted(err: Error = new ProxyError('CLIENT_CANCELLED')): void {
    this.ended = true;
    this.body?.destroy(err);
    this.onAbort?.();
  }

  private prepare(status: number, bodyLength: number): void {
    const h = this.head;
    this.noBody = h?.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    this.chunked = !this.noBody && bodyLength < 0 && (h === null || h.minor === 1);
    if (bodyLength < 0 && h !== null && h.minor === 0) this.close = true;
    if (!this.requestEnded && this.body !== null) this.close = true; // unread body bytes cannot be skipped safely
  }

  private mode(): number {
    return (this.noBody ? NO_BODY : 0) | (this.head?.minor === 0 ? HTTP10_PEER : 0) | (this.close ? CLOSE : 0);
  }

  private finish(): void {
    this.ended = true;
    this.conn.responseEnded(this, this.close);
  }
}
