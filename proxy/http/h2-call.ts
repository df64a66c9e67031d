import { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { Readable } from 'node:stream';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { cleanTrailers, dropNotFromApp, type Headers } from './headers.js';
import { isSettled, type BodyStream, type ProxyRequest, type ProxyResponse } from './exchange.js';
import { releaseOnClose } from './release-on-close.js';
import { StreamedResponse } from './streamed-response.js';
import { relayDestOf, relayH2Body, stopSending } from './h2-relay.js';
import { chargeReset, countLimit, isFromApp } from './session-resets.js';
import { MAX_INTERIM_RESPONSES } from '../h1/limits.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = constants;

/** The call a stream carries, for the shared listeners below. */
const CALL = Symbol('wren.h2Call');

type Streamed = ClientHttp2Stream & { [CALL]?: H2Call };

/** How a call turns the response head into the ProxyResponse it resolves with (h2-forward.ts, h2-upgrade.ts). */
export type OnResponse = (call: H2Call, head: IncomingHttpHeaders, endStream: boolean) => void;

/**
 * One request sent as a client stream on an HTTP/2 session: the stream lifecycle that
 * forwarded requests and upgrades (extended CONNECT) share. One object per request is the
 * whole state: it holds the abort signal's listener (`onAbort`), the stream's listeners
 * are module functions that find it on the stream, and the response it resolves with
 * reads its trailers through it. So a request costs no closures beyond its promise's
 * executor, and nothing of it stays referenced from the stream once it has closed
 * (release-on-close.ts; node keeps closed client streams alive for scavenges).
 */
export class H2Call {
  stream!: ClientHttp2Stream;
  responded = false;
  /** The response's END_STREAM has arrived (a forwarded one's: pushUnlessCut sees it). */
  complete = false;
  /** Interim (1xx) responses so far, a forwarded call's (at most MAX_INTERIM_RESPONSES). */
  interim = 0;
  trailers: Headers | undefined = undefined;
  resolve!: (res: ProxyResponse) => void;
  reject!: (err: unknown) => void;

  constructor(
    readonly session: ClientHttp2Session,
    readonly req: ProxyRequest,
    readonly onResponse: OnResponse,
    /** Forwarded requests: resets are charged to the session's budget, refused streams marked retryable. */
    readonly forwarded: boolean,
  ) {}

  /**
   * The request's abort listener (cancels the upstream stream, RFC 9113 section 8.7): a function, not this object with a handleEvent. an object
   * listener is kept where scavenges cannot free it (h1-pool-exchange.ts, Exchange.onAbort).
   */
  readonly onAbort = (): void => this.stream.close(NGHTTP2_CANCEL);

  /** Resolves with a response whose body is the stream (null when it ended with the head). */
  respond(status: number, headers: Headers, endStream: boolean): void {
    this.responded = true;
    this.complete = endStream;
    if (endStream) this.stream.resume();
    else {
      this.stream.on('trailers', onTrailers);
      if (this.forwarded) (this.stream as Streamed).push = pushUnlessCut;
    }
    this.resolve(new StreamedResponse(status, headers, endStream ? null : this.stream, this));
  }
}

/**
 * Opens the stream and wires it; the call's promise settles through `onResponse` or with
 * the stream's error. `out`: the request head, an object or node's flat field list.
 * `hasBody`: the request body is relayed into the stream (h2-relay.ts) and its trailers
 * sent after it; otherwise the stream is ended with the head (END_STREAM on
 * HEADERS), or left open (`keepOpen`, an upgrade's tunnel).
 *
 * A settled body (all of it, and its end, already buffered: exchange.ts) goes out as one
 * DATA frame carrying END_STREAM, trailers asked for only when there are some, as
 * writeH2Response does for responses: node sends the end in a frame of its own unless
 * end() follows the data in the same tick with no trailers awaited.
 */
export function startH2Call(call: H2Call, out: OutgoingHttpHeaders | string[], hasBody: boolean, keepOpen: boolean): Promise<ProxyResponse> {
  return new Promise<ProxyResponse>((resolve, reject) => {
    call.resolve = resolve;
    call.reject = reject;
    let stream: Streamed;
    const body = hasBody ? call.req.body : null;
    const settled = body !== null && isSettled(body);
    const trailers = settled ? call.req.trailers() : undefined;
    const waitForTrailers = settled ? trailers !== undefined && Object.keys(trailers).length > 0 : hasBody;
    try {
      stream = call.session.request(out, { endStream: !hasBody && !keepOpen, waitForTrailers });
    } catch (e) {
      // The session is closing (GOAWAY) or gone: the stream was never sent.
      const err = new ProxyError('UPSTREAM_RESET', (e as Error).message, { cause: e });
      reject(call.forwarded ? refused(err) : err);
      return;
    }
    call.stream = stream;
    stream[CALL] = call;
    releaseOnClose(stream);
    call.req.signal.addEventListener('abort', call.onAbort);
    stream.on('close', onClose);
    stream.on('error', onError);
    stream.on('response', onResponseHead);
    if (call.forwarded) stream.on('headers', onInterim);
    if (body === null) return;
    if (waitForTrailers) stream.on('wantTrailers', onWantTrailers);
    if (settled) {
      const data = body.read() as Buffer | null; // everything buffered, and the end: 'end' follows
      if (data === null) stream.end();
      else stream.end(data);
      body.resume();
      return;
    }
    relayH2Body(body, stream, onBodyError, false);
  });
}

function onClose(this: Streamed): void {
  const call = this[CALL]!;
  this[CALL] = undefined;
  call.req.signal.removeEventListener('abort', call.onAbort);
  if (call.forwarded && this.rstCode !== NGHTTP2_NO_ERROR) {
    chargeReset(call.session);
    // Reset with an error after a complete response while the request was still being sent:
    // no retry can take the body (the response went out), so it is dropped with the error
    // and its sender learns (the caller's stream reset), where the relay would leave it paused
    // for good and a caller still sending (a gRPC bidi call) waiting on it.
    const body = call.req.body;
    if (call.complete && body !== null && !body.destroyed && !body.readableEnded) body.destroy(new ProxyError('UPSTREAM_RESET', `stream reset (code ${this.rstCode}) after the response, before the request's end`));
  }
  // NO_ERROR after a complete response: the app wants no more of the request (RFC 9113
  // section 8.1); the relay drops the rest of the body instead of pausing it (h2-relay.ts).
  else if (call.complete) stopSending(this);
  if (!call.responded) call.reject(classify(call, this, undefined));
}

function onError(this: Streamed, err: unknown): void {
  const call = this[CALL];
  // node:http2's error for a stream the app reset ("Stream closed with error code ...")
  // names the code only in its text: it is carried for the one mapping (toProxyError), and
  // this listener, the stream's first, runs before the response body's readers see the error.
  if (call && (err as { code?: unknown } | null)?.code === 'ERR_HTTP2_STREAM_ERROR') (err as { resetCode?: number }).resetCode = peerResetCode(call.session, this);
  if (call && !call.responded) call.reject(classify(call, this, err));
}

/**
 * The code of the app's RST_STREAM that closed `stream`, undefined if it was not the app's
 * (its session lost or destroyed: node gives those streams a code of its own). A stream we
 * reset ourselves (the request cancelled) has no reader left to mislead.
 */
function peerResetCode(session: ClientHttp2Session | undefined, stream: ClientHttp2Stream): number | undefined {
  // The session, not stream.session: node lets go of that before the stream's error and 'close'.
  return session === undefined || session.destroyed || session.closed ? undefined : stream.rstCode;
}

function onResponseHead(this: Streamed, head: IncomingHttpHeaders, flags: number): void {
  const call = this[CALL];
  if (call) call.onResponse(call, head, (flags & NGHTTP2_FLAG_END_STREAM) !== 0);
}

/**
 * An interim (1xx) response: skipped, up to MAX_INTERIM_RESPONSES per request (h1/limits.ts).
 * One more is the upstream's protocol error, as on HTTP/1.1 and on the frame-level client
 * (h2/h2-client-stream.ts): its stream reset PROTOCOL_ERROR, a 502 upstream-protocol, so an
 * app answering with 1xx without end holds neither the request nor the sidecar's CPU
 * (nghttp2 takes any number of them; Envoy resets the stream on a second 100, envoyproxy/envoy#2567).
 */
function onInterim(this: Streamed): void {
  const call = this[CALL];
  if (call === undefined || call.responded || ++call.interim <= MAX_INTERIM_RESPONSES) return;
  this.removeListener('headers', onInterim);
  countLimit(call.session, 'interim-responses');
  call.reject(new ProxyError('UPSTREAM_PROTOCOL', `more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`));
  if (!this.destroyed) this.close(NGHTTP2_PROTOCOL_ERROR);
}

function onTrailers(this: Streamed, t: IncomingHttpHeaders): void {
  const call = this[CALL];
  if (call === undefined) return;
  const out = cleanTrailers(t);
  // From the local app (the app session pool's sessions): without the fields only a sidecar writes either.
  if (out !== undefined && isFromApp(call.session)) dropNotFromApp(out);
  call.trailers = out !== undefined && hasField(out) ? out : undefined;
}

function hasField(h: Headers): boolean {
  for (const _ in h) return true;
  return false;
}

function onWantTrailers(this: Streamed): void {
  const call = this[CALL];
  try {
    this.sendTrailers(call?.req.trailers() ?? {});
  } catch {
    // Trailers node:http2 cannot send (it throws on a bad name or value; the codecs refuse
    // those where they arrive, h2/field-check.ts): the upstream stream is reset, not the process ended.
    if (!this.destroyed) this.close(NGHTTP2_CANCEL);
  }
}

const readablePush = Readable.prototype.push;

/**
 * A forwarded response body's push(): its end must come from END_STREAM (RFC 9113 section
 * 8.1). node:http2 also ends a client stream's readable side ('end', no 'error') when the
 * stream is closed before END_STREAM by RST_STREAM CANCEL or NO_ERROR (NO_ERROR means
 * "complete" only after END_STREAM, section 8.1) or by its session going away, so a
 * truncated body would reach the writers (write-response.ts) as a whole one, and leave
 * as END_STREAM or a chunked body's last chunk. Node pushes that end only once the stream
 * is closed, after END_STREAM's own: a first end pushed to a closed stream is a cut, which
 * becomes the body's error instead (the next tick, before 'close', unless node reports one
 * of its own for an error code). One function for every stream (no closure); it puts the
 * stream's own push back at the first end.
 */
function pushUnlessCut(this: Streamed, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk !== null) return readablePush.call(this, chunk, encoding);
  this.push = readablePush;
  const call = this[CALL];
  if (!this.closed && call !== undefined) call.complete = true;
  // Closed by our side (the request cancelled: its client gone, a timeout): not a cut.
  if (!this.closed || call?.req.signal.aborted === true) return readablePush.call(this, null);
  // Not ended here: node may be in the middle of closing the stream (a synchronous destroy would break it).
  process.nextTick(failCut, this, call?.session);
  return false;
}

function failCut(stream: ClientHttp2Stream, session: ClientHttp2Session | undefined): void {
  if (stream.errored !== null) return;
  const e = new ProxyError('UPSTREAM_RESET', `response cut short: stream closed (code ${stream.rstCode}) before END_STREAM`, { resetCode: peerResetCode(session, stream) });
  if (stream.destroyed) stream.emit('error', e);
  else stream.destroy(e);
}

/** The request body failed before its end: the upstream must not take it for whole (RFC 9113 §8.1). */
function onBodyError(this: BodyStream): void {
  const up = relayDestOf(this);
  if (up !== undefined && !up.destroyed) up.close(NGHTTP2_CANCEL);
}

/** Errors of streams the upstream never processed (RFC 9113 §8.7): safe to retry. */
const REFUSED = new WeakSet<object>();

function refused(e: ProxyError): ProxyError {
  REFUSED.add(e);
  return e;
}

/**
 * Whether a forwarded request failed with a stream the upstream did not process: RST_STREAM
 * REFUSED_STREAM, a stream above a GOAWAY's last stream id (node:http2 closes those with
 * REFUSED_STREAM too), or a session that no longer took streams.
 */
export function wasRefused(err: unknown): boolean {
  return typeof err === 'object' && err !== null && REFUSED.has(err);
}

function classify(call: H2Call, stream: ClientHttp2Stream, err: unknown): ProxyError {
  if (call.forwarded && stream.rstCode === NGHTTP2_REFUSED_STREAM) return refused(new ProxyError('UPSTREAM_RESET', 'stream refused', { cause: err }));
  return toProxyError(err ?? Object.assign(new Error(`stream closed (code ${stream.rstCode})`), { code: 'ECONNRESET', resetCode: peerResetCode(call.session, stream) }));
}
