import { LeanBody } from '../http/lean-body.js';
import { inTurn } from '../../common/deferred.js';
import type { BodyStream, ProxyRequest, ProxyResponse, SettledBody } from '../http/exchange.js';
import { isSettled } from '../http/exchange.js';
import { isGrpc, type Headers } from '../http/headers.js';
import { endsGrpcCall, errorResponse, grpcErrorTrailers } from '../errors/error-response.js';
import { h2ResetCodeFor, PROXY_ERROR_HEADER, ProxyError, resetCodeOf } from '../errors/proxy-error.js';
import { BodySender, type SendHost } from './body-sender.js';
import { H2_ERROR } from './frames.js';
import { Cancel } from '../../common/cancel.js';

const STREAM = Symbol('wren.h2ServerStream');
/** The stream a ProxyRequest came from (its trailers are read through it). */
export const STREAM_REF = Symbol('wren.h2ServerRequest');
type Relayed = BodyStream & { [STREAM]?: H2ServerStream };
const EMPTY = Buffer.alloc(0);
const ignore = (): void => undefined;

/** What a served stream needs of its session (h2-server-session.ts implements it). */
export interface ServerStreamHost extends SendHost {
  /** The stream idle sweep's count: a stream records it whenever a frame moves. */
  readonly generation: number;
  reset(id: number, code: number): void;
  blocked(st: H2ServerStream): void;
  /** Our socket's buffer is full: true, and `st.drained()` is called once it empties. */
  congestedFor(st: H2ServerStream): boolean;
  credit(st: H2ServerStream): void;
  closed(st: H2ServerStream): void;
  /** A request refused before the service saw it (a malformed head): counted and logged. */
  refused(err: ProxyError, status: number): void;
}

/**
 * One request stream on a frame-level HTTP/2 server session (h2-server-session.ts): the
 * request's body a Readable that gives the window back as it is read, its trailers, its
 * abort signal fired when the client resets the stream or the connection goes; then the
 * ProxyResponse written back under the client's flow-control windows (RFC 9113 section
 * 5.2): the head, the body (a settled one in one DATA frame with END_STREAM), trailers.
 * One object per stream; the response body's listeners are module functions that find it
 * through a symbol, as h2-client-stream.ts does for request bodies.
 */
export class H2ServerStream extends BodySender {
  sendWindow = 0;
  recvWindow = 0;
  /** DATA bytes taken from the request body and not yet given back (WINDOW_UPDATE). */
  unacked = 0;
  /** The client's END_STREAM has arrived (half-closed remote, section 5.1). */
  remoteEnded = false;
  /** Our END_STREAM has been written. */
  localEnded = false;
  closed = false;
  /** The response head has been written. */
  responded = false;
  /** The client reset it (RST_STREAM) or the connection went before our response ended. */
  aborted = false;
  /** When its HEADERS arrived and when a frame last moved on it (stream idle timeout). */
  readonly startedAt: number;
  lastActive: number;
  /** Bytes content-length still allows; -1: not declared (section 8.1.1). */
  expectedLength = -1;
  readonly ac = new Cancel();
  body: H2RequestBody | null = null;
  trailers: Headers | undefined = undefined;
  req: ProxyRequest | null = null;
  /** The response being written: its trailers are read when the body ends. */
  private res: ProxyResponse | null = null;
  /** The trailers that end a gRPC response whose body failed (bodyFailed), instead of the upstream's. */
  private rescued: Headers | null = null;
  private resBody: BodyStream | null = null;

  constructor(
    readonly session: ServerStreamHost,
    readonly id: number,
    now: number,
  ) {
    super();
    this.startedAt = now;
    this.lastActive = now;
  }

  /** The service's answer. Arrow fields: the one `then` a stream costs (as http/h2-server.ts's Served). */
  // A turn of its own (common/deferred.ts): the response's deferred steps run as the write returns, no tick.
  readonly onResponse = (res: ProxyResponse): void => inTurn(this.respond, this, res);

  readonly onFailure = (err: unknown): void => this.onResponse(errorResponse(err, this.req ?? { headers: {} }));

  /** Writes `res`: the head, then the body under the windows, then trailers or the end. */
  respond(res: ProxyResponse): void {
    const body = res.body;
    if (this.closed || this.responded) {
      body?.on('error', ignore).destroy();
      return;
    }
    this.responded = true;
    const s = this.session;
    // No content after HEAD, 204, 205 or 304 (RFC 9110 sections 9.3.2, 15.3.5, 15.3.6, 15.4.5), as node:http2's respond() does.
    const method = this.req?.method;
    const status = res.status;
    if (body === null || method === 'HEAD' || status === 204 || status === 205 || status === 304) {
      s.out.headers(this.id, [':status', String(status)], res.headers, true);
      body?.resume();
      // For localEnd's look at how it ended (a Trailers-Only gRPC error: endedByProxyError).
      if (body === null) this.res = res;
      this.localEnd();
      return;
    }
    s.out.headers(this.id, [':status', String(status)], res.headers, false);
    this.res = res;
    if (isSettled(body)) {
      // Everything is buffered and the end pushed: the data and the end go together.
      const data = (body.read() as Buffer | null) ?? EMPTY;
      if (body.readableLength !== 0) body.resume();
      this.write(data, true);
      return;
    }
    this.resBody = body;
    (body as Relayed)[STREAM] = this;
    body.on('data', onBodyData);
    body.on('end', onBodyEnd);
    body.on('error', onBodyError);
    if (body.readableFlowing !== true) body.resume();
  }

  /** A frame moved: the stream idle sweep counts from now. */
  override write(chunk: Buffer, end: boolean): boolean {
    if (!super.write(chunk, end)) return false;
    this.lastActive = this.session.generation;
    return true;
  }

  protected outgoingTrailers(): Headers | undefined {
    return this.rescued ?? this.res?.trailers();
  }

  /**
   * Nothing waits for window (BodySender.flush), or our socket took what waited (the
   * session checked the windows do not hold this stream): the response body goes on.
   */
  override drained(): void {
    const b = this.resBody;
    if (b !== null && !b.destroyed && b.isPaused()) b.resume();
  }

  protected localEnd(): void {
    this.localEnded = true;
    this.detachBody();
    const res = this.res;
    this.res = null;
    // A rescued gRPC response (bodyFailed, or the peer sidecar's: its trailers carry the
    // proxy error label): its upstream is gone, so the rest of the request has nowhere to
    // go. RST_STREAM NO_ERROR right after the trailers, as a gRPC server ends a call before
    // the client's END_STREAM (PROTOCOL-HTTP2.md, "Early Server Closure").
    if (!this.remoteEnded && (this.rescued !== null || endedByProxyError(res))) return this.stopSending();
    // Our response is whole, the client's request may not be: the rest of its body still
    // goes upstream until it ends or is reset (RFC 9113 section 8.1 allows a response
    // before the request's end; node:http2 and the mesh hops keep reading too). A reset
    // NO_ERROR here would cut an upload the upstream app is still reading, and the stream
    // idle timeout still bounds a client that never ends it.
    if (this.remoteEnded) this.close();
  }

  pauseBody(): void {
    this.resBody?.pause();
  }

  /** DATA from the client (its window already charged by the session). */
  onData(data: Buffer, endStream: boolean): void {
    const b = this.body;
    if (this.expectedLength >= 0) {
      this.expectedLength -= data.length;
      if (this.expectedLength < 0 || (endStream && this.expectedLength !== 0)) return this.malformed('DATA does not add up to content-length (RFC 9113 section 8.1.1)');
    }
    if (b !== null && data.length > 0) b.push(data);
    if (endStream) this.remoteEnd();
  }

  /** The request's trailers (HEADERS with END_STREAM after the head). */
  onTrailers(t: Headers | undefined): void {
    if (this.expectedLength > 0) return this.malformed('the body is shorter than content-length (RFC 9113 section 8.1.1)');
    this.trailers = t;
    this.remoteEnd();
  }

  private remoteEnd(): void {
    this.remoteEnded = true;
    this.body?.push(null);
    if (this.localEnded) this.close();
  }

  /** A malformed request (RFC 9113 section 8.1.1): a stream error of type PROTOCOL_ERROR. */
  malformed(why: string): void {
    if (this.closed) return;
    this.session.reset(this.id, H2_ERROR.PROTOCOL_ERROR);
    // Counted by the premature-reset budget once the request went on (a body that breaks its
    // content-length, bad trailers), as node:http2's reset of a stream it announced is: else
    // a client gets the upstream to open and cancel requests without limit. A head that is
    // malformed reached nobody (node:http2 never announced such a stream either): it is
    // counted and logged here as the HTTP/1.1 codec's refusals are (reset: no status).
    const err = new ProxyError('BAD_REQUEST', why);
    if (this.req === null) this.session.refused(err, 0);
    this.fail(err, this.req !== null);
  }

  /** RST_STREAM from the client, or the connection lost. */
  onReset(err: ProxyError): void {
    if (this.closed) return;
    this.fail(err);
  }

  /**
   * The upstream's response body failed before its end; the client must not take what it
   * got for whole. A gRPC call gets the failure as its status, in trailers after what was
   * relayed (grpc-status from the error table, UNAVAILABLE for a lost peer connection, with
   * grpc-message and the proxy error label), as Linkerd's gRPC rescue does: a RST_STREAM
   * INTERNAL_ERROR would reach the caller as INTERNAL (PROTOCOL-HTTP2.md, "Errors"), which
   * gRPC clients and retry policies treat as not retryable, for what is a lost upstream.
   * An app's own RST_STREAM is its call's status as gRPC maps the code (CANCEL: CANCELLED,
   * grpcStatusOfReset), what a caller of the app itself would get. Anything else is reset,
   * with the app's code where it means the same to the caller (h2ResetCodeFor), else
   * INTERNAL_ERROR.
   */
  bodyFailed(err: Error): void {
    if (this.closed || this.localEnded) return;
    const res = this.res;
    const e = err instanceof ProxyError ? err : new ProxyError('UPSTREAM_RESET', `response body failed: ${err.message}`, { resetCode: resetCodeOf(err) });
    if (res === null || this.req === null || !isGrpc(res.headers) || !isGrpc(this.req.headers)) {
      return this.cancel(h2ResetCodeFor(e), new ProxyError('UPSTREAM_RESET', `response body failed: ${err.message}`));
    }
    this.rescued = grpcErrorTrailers(e);
    const rb = this.resBody;
    this.detachBody();
    rb?.on('error', ignore);
    this.write(EMPTY, true);
  }

  /**
   * Our response is whole and the rest of the request has nowhere to go (its reader dropped
   * it, the upstream is gone): RST_STREAM NO_ERROR, "stop sending" (RFC 9113 section 8.1).
   * Not the client's doing, so not counted by the premature-reset budget.
   */
  stopSending(): void {
    if (this.closed) return;
    this.session.reset(this.id, H2_ERROR.NO_ERROR);
    this.fail(new ProxyError('UPSTREAM_RESET', 'the response ended before the request'), false);
  }

  /** Ours: a stream reset with `code` (stream idle timeout, the response body failed). */
  cancel(code: number, err: ProxyError): void {
    if (this.closed) return;
    this.session.reset(this.id, code);
    this.fail(err);
  }

  /**
   * Closes with an error before our response ended: the upstream is cancelled first, so a
   * request body cut here reaches nobody as a whole one, then the body fails.
   */
  private fail(err: ProxyError, counted = true): void {
    this.aborted = counted;
    this.ac.abort();
    if (this.body !== null && !this.remoteEnded) this.body.destroy(err);
    const rb = this.resBody;
    this.detachBody();
    rb?.on('error', ignore).destroy();
    this.close();
  }

  private detachBody(): void {
    const b = this.resBody;
    if (b === null) return;
    this.resBody = null;
    (b as Relayed)[STREAM] = undefined;
    b.removeListener('data', onBodyData);
    b.removeListener('end', onBodyEnd);
    b.removeListener('error', onBodyError);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued = null;
    this.session.closed(this);
  }
}

/**
 * The response ended with trailers a sidecar wrote for a failure (grpcErrorTrailers: the
 * peer sidecar's gRPC rescue, relayed as they came): the call is over at its upstream.
 */
function endedByProxyError(res: ProxyResponse | null): boolean {
  // Or a Trailers-Only gRPC error a sidecar answered (endsGrpcCall): nothing reads the request either.
  return res !== null && (endsGrpcCall(res) || res.trailers()?.[PROXY_ERROR_HEADER] !== undefined);
}

function onBodyData(this: Relayed, chunk: Buffer): void {
  const st = this[STREAM];
  if (st === undefined || st.closed) return void this.pause();
  if (!st.write(chunk, false) || st.session.congestedFor(st)) st.pauseBody();
}

function onBodyEnd(this: Relayed): void {
  const st = this[STREAM];
  if (st !== undefined && !st.closed) st.write(EMPTY, true);
}

/** The upstream body failed before its end (bodyFailed). */
function onBodyError(this: Relayed, err: Error): void {
  this[STREAM]?.bodyFailed(err);
}

/** The request body: window is given back as it is read, so a slow upstream holds the client at one window. */
export class H2RequestBody extends LeanBody implements SettledBody {
  constructor(private readonly st: H2ServerStream) {
    super(64 * 1024);
    // A reset before the reader attaches its own listener must not be an uncaught error.
    this.on('error', ignore);
  }

  /** Every byte and the end are buffered (the whole request came in one read): writers send it in one go. */
  get settled(): boolean {
    return this.st.remoteEnded && !this.readableEnded;
  }

  override _read(): void {
    this.st.session.credit(this.st);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Dropped by its reader before the end (the upstream went away): the client stops sending.
    // Not when the stream is failing already (the client's RST_STREAM, the connection's end):
    // no RST_STREAM answers one (RFC 9113 section 5.4.2), none goes before a GOAWAY. After our
    // whole response, RST_STREAM NO_ERROR ("stop sending", section 8.1): without it a client
    // still sending kept a half-open stream no one read until the stream idle timeout.
    if (!this.st.closed && !this.st.remoteEnded && !this.st.ac.signal.aborted) {
      if (this.st.localEnded) this.st.stopSending();
      else this.st.cancel(H2_ERROR.CANCEL, new ProxyError('UPSTREAM_RESET', 'request body dropped'));
    }
    cb(err);
  }
}

/** ProxyRequest.trailers, read through the symbol (a layer's `{ ...req }` copy keeps it). */
export function requestTrailers(this: { [STREAM_REF]?: H2ServerStream }): Headers | undefined {
  return this[STREAM_REF]?.trailers;
}
