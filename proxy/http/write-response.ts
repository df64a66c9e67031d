import { constants, type ServerHttp2Stream } from 'node:http2';
import type { H1ServerExchange } from '../h1/h1-connection.js';
import { H1Error } from '../h1/h1-error.js';
import { appendFields, isGrpc, MESH, type Headers } from './headers.js';
import { isSettled, type BodyStream, type ProxyResponse } from './exchange.js';
import { h2ResetCodeFor, PROXY_ERROR_HEADER, ProxyError, resetCodeOf } from '../errors/proxy-error.js';
import { endsGrpcCall, grpcErrorTrailers } from '../errors/error-response.js';
import { relayDestOf, relayH2Body } from './h2-relay.js';

/** The response whose trailers a served stream sends when node asks ('wantTrailers'), until it closes. */
const RES = Symbol('wren.h2Response');
/** A streamed response's request headers: whether a failed body can end as a gRPC status (onBodyError). */
const REQ = Symbol('wren.h2Request');
/** The trailers a rescued gRPC response ends with instead of its upstream's (onBodyError). */
const RESCUE = Symbol('wren.h2Rescue');
type Written = ServerHttp2Stream & { [RES]?: ProxyResponse; [REQ]?: Headers; [RESCUE]?: Headers };

/**
 * Writes a ProxyResponse to the downstream HTTP/2 client. Bodies are relayed with
 * backpressure both ways (h2-relay.ts); an upstream body that fails mid-way resets the
 * downstream stream (HTTP/2) or drops the connection (HTTP/1.1) so the client never
 * mistakes a truncated body for a complete one. The stream's listeners are module
 * functions finding the response through a symbol: no closure per response.
 */
export function writeH2Response(stream: ServerHttp2Stream, res: ProxyResponse, reqHeaders?: Headers): void {
  if (stream.destroyed || stream.closed) {
    res.body?.destroy();
    return;
  }
  const head = responseHead(res.status, res.headers);
  if (res.body === null) {
    // A Trailers-Only gRPC error from a sidecar: nothing reads the rest of the request
    // (endsGrpcCall), so a client still sending is told to stop, as after a rescue
    // (onWantTrailers: after this turn's write, which a reset submitted now would drop).
    if (respond(stream, head, true, false) && endsGrpcCall(res) && stream.state.remoteClose !== 1) setImmediate(stopSendingAfterRescue, stream);
    return;
  }
  const body = res.body;
  if (isSettled(body)) {
    // The whole body is already here (a small response read in one go): the data and the
    // end go in one DATA frame with END_STREAM. Node only does that when end() follows the
    // last write in the same tick and no trailers are awaited, so they are asked for only
    // when there are some, and they are known now.
    const trailers = res.trailers();
    const withTrailers = trailers !== undefined && Object.keys(trailers).length > 0;
    if (!respond(stream, head, false, withTrailers)) return void body.destroy();
    if (withTrailers) awaitTrailers(stream, res);
    const data = body.read() as Buffer | null; // everything buffered, and the end: 'end' follows
    if (data === null) stream.end();
    else stream.end(data);
    body.resume();
    return;
  }
  if (!respond(stream, head, false, true)) return void body.destroy();
  awaitTrailers(stream, res);
  if (reqHeaders !== undefined) (stream as Written)[REQ] = reqHeaders;
  relayH2Body(body, stream, onBodyError, true);
}

/**
 * stream.respond(), or, when node:http2 refuses the head (it throws on a field name or
 * value it cannot send), the stream reset with INTERNAL_ERROR (the client learns the
 * response failed: RFC 9113 section 8.1.1) instead of an exception that would end the
 * process. The codecs refuse such fields where they arrive (h2/field-check.ts, the
 * HTTP/1.1 parser); this is the last line.
 */
function respond(stream: ServerHttp2Stream, head: ReturnType<typeof responseHead>, endStream: boolean, waitForTrailers: boolean): boolean {
  try {
    stream.respond(head, endStream ? { endStream } : { waitForTrailers });
    return true;
  } catch {
    if (!stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return false;
  }
}

function awaitTrailers(stream: Written, res: ProxyResponse): void {
  stream[RES] = res;
  stream.on('wantTrailers', onWantTrailers);
  stream.on('close', onWrittenClose);
}

function onWantTrailers(this: Written): void {
  const res = this[RES];
  const rescue = this[RESCUE];
  this[RES] = undefined;
  this[RESCUE] = undefined;
  const trailers = rescue ?? res?.trailers() ?? {};
  try {
    this.sendTrailers(trailers);
  } catch {
    // Trailers node:http2 cannot send (respond() above says why this is the last line): a reset, not an exception.
    if (!this.destroyed) this.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  // A rescued call (onBodyError, or the peer sidecar's: its trailers carry the proxy error
  // label): its upstream is gone, so the rest of the request has nowhere to go. RST_STREAM
  // NO_ERROR after the trailers, as a gRPC server ends a call before the client's
  // END_STREAM (PROTOCOL-HTTP2.md, "Early Server Closure"). Not in this turn: nghttp2 drops
  // trailers still queued when a RST_STREAM for their stream is submitted, so the reset
  // waits for the session's write of this turn (a native immediate, which runs before the
  // JavaScript ones).
  if (trailers[PROXY_ERROR_HEADER] !== undefined && this.state.remoteClose !== 1) setImmediate(stopSendingAfterRescue, this);
}

function stopSendingAfterRescue(stream: ServerHttp2Stream): void {
  if (!stream.destroyed && !stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
}

/** Reset before the trailers were asked for: the response is no longer referenced from the stream. */
function onWrittenClose(this: Written): void {
  this[RES] = undefined;
  this[REQ] = undefined;
  this[RESCUE] = undefined;
}

/**
 * The upstream body failed before its end: the client must not take what it got for whole.
 * A gRPC call ends with the failure as its status in trailers after what was relayed, as
 * the frame-level server's rescue does (h2/h2-server-stream.ts bodyFailed: the same
 * trailers, grpcErrorTrailers, so both servers answer alike); anything else is reset with
 * the code the one mapping gives (h2ResetCodeFor: the app's own where it means the same).
 */
function onBodyError(this: BodyStream, err: Error): void {
  const stream = relayDestOf(this) as Written | undefined;
  if (stream === undefined || stream.destroyed) return;
  const e = err instanceof ProxyError ? err : new ProxyError('UPSTREAM_RESET', `response body failed: ${err.message}`, { resetCode: resetCodeOf(err) });
  const res = stream[RES];
  const req = stream[REQ];
  if (res !== undefined && req !== undefined && !stream.writableEnded && isGrpc(res.headers) && isGrpc(req)) {
    stream[RESCUE] = grpcErrorTrailers(e);
    stream.end();
    return;
  }
  stream.close(h2ResetCodeFor(e));
}

/**
 * The response head in node's flat array form (`[name, value, ...]`): node copies an object
 * head into a null-prototype object before encoding it, an array it encodes as it is, so
 * this is the one copy made of the upstream's fields (there was a spread as well).
 */
function responseHead(status: number, headers: Headers): string[] {
  const out: string[] = [':status', String(status)];
  appendFields(out, headers, undefined);
  return out;
}

/**
 * Writes ProxyResponses to an HTTP/1.1 client through the codec's exchange (h1-connection.ts),
 * one at a time: one writer per connection, its event handlers made once, so a response
 * costs no closure. Framing is the serialiser's: content-length when the upstream gave
 * one (or the body is settled: its size), else chunked with trailers (close-delimited for
 * an HTTP/1.0 client); HEAD, 204 and 304 without a body. A settled body goes out with its
 * head in one write; a streamed one with backpressure (the body pauses until the socket
 * drains). A body that fails, or that is longer or shorter than its content-length, cuts
 * the connection so the client never takes it for whole; a client that goes away destroys it.
 */
export class H1ResponseWriter {
  private ex: H1ServerExchange | null = null;
  private res: ProxyResponse | null = null;
  private body: BodyStream | null = null;
  /** Bytes the content-length still allows; -1 when the length is not declared. */
  private left = -1;
  /** Chunked though the length is declared (an HTTP/2 response to a peer sidecar): the trailers go too. */
  private chunkedWithLength = false;
  /** The response is to an HTTP/2 request from a peer sidecar (write's `h2`): chunked, so trailers can end it. */
  private meshH2 = false;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  private readonly onEnd = (): void => this.ended();
  private readonly onError = (err: Error): void => this.failed(err);
  private readonly onDrain = (): void => void this.body?.resume();
  private readonly onAbort = (): void => this.abort();

  /**
   * `h2`: the request was an HTTP/2 one from a peer sidecar (protocol.meshHttp2 mux). The
   * app's content-length, if it gave one, travels in `wren-content-length` (the caller's
   * pool makes it the content-length again, and takes none from the framing), and a body
   * with a declared length goes chunked so that trailers can follow it.
   */
  write(ex: H1ServerExchange, res: ProxyResponse, h2 = false): void {
    const body = res.body;
    if (ex.ended) {
      body?.destroy();
      return;
    }
    try {
      this.start(ex, h2 ? meshH2Response(res) : res, body, h2);
    } catch (err) {
      // A field the serialiser refuses (RFC 9112 section 11.1): 502 through the error table.
      body?.destroy();
      this.detach();
      ex.fail(err instanceof H1Error ? err : new ProxyError('UPSTREAM_PROTOCOL', String(err)));
    }
  }

  private start(ex: H1ServerExchange, res: ProxyResponse, body: BodyStream | null, h2: boolean): void {
    const status = res.status;
    if (status < 200) throw new ProxyError('UPSTREAM_PROTOCOL', `status ${status} is not a final response`);
    const noBody = body === null || ex.head?.method === 'HEAD' || status === 204 || status === 304;
    if (noBody) {
      // A HEAD response keeps the length a GET would have had (RFC 9110 section 9.3.2).
      ex.respond(status, res.headers, body === null && ex.head?.method !== 'HEAD' ? 0 : declaredLength(res.headers));
      ex.end();
      body?.resume(); // drained so the layers above see it end
      return;
    }
    if (isSettled(body)) {
      const data = (body.read() as Buffer | null) ?? EMPTY;
      const trailers = res.trailers();
      if (trailers === undefined || !hasFields(trailers)) ex.send(status, res.headers, data);
      else {
        ex.respond(status, res.headers, -1);
        ex.write(data);
        ex.end(trailers);
      }
      // A settled body has had its end pushed, so a read() that took all of it has already
      // scheduled its 'end' (which the layers above wait for): a resume() would only cost a
      // tick. Anything left (an object-mode body's next item) still drains.
      if (body.readableLength !== 0) body.resume();
      return;
    }
    const len = declaredLength(res.headers);
    const withLength = h2 && len >= 0;
    ex.respond(status, res.headers, withLength ? -1 : len);
    this.ex = ex;
    this.res = res;
    this.body = body;
    this.left = len;
    this.chunkedWithLength = withLength;
    this.meshH2 = h2;
    ex.onDrain = this.onDrain;
    ex.onAbort = this.onAbort;
    body.on('data', this.onData);
    body.on('end', this.onEnd);
    body.on('error', this.onError);
    // Nothing of the body yet: the head goes now, so a slow body does not hold it back.
    if (body.readableLength === 0) ex.flushHead();
  }

  private data(chunk: Buffer): void {
    const ex = this.ex!;
    if (this.left >= 0) {
      if (chunk.length > this.left) return this.failed(new ProxyError('UPSTREAM_PROTOCOL', 'body longer than its content-length'));
      this.left -= chunk.length;
    }
    if (!ex.write(chunk)) this.body?.pause();
  }

  private ended(): void {
    const ex = this.ex!;
    const res = this.res!;
    if (this.left > 0) return this.failed(new ProxyError('UPSTREAM_RESET', 'body shorter than its content-length'));
    const trailers = this.left < 0 || this.chunkedWithLength ? res.trailers() : undefined;
    this.detach();
    try {
      ex.end(trailers);
    } catch (e) {
      // The serialiser refused a trailer (h1/serialize.ts throws H1Error): this runs in the
      // body's 'end' listener, where a throw would end the process. The connection is cut
      // instead, so the client does not take the body for complete.
      ex.fail(e instanceof Error ? e : new ProxyError('UPSTREAM_PROTOCOL', String(e)));
    }
  }

  private failed(err: Error): void {
    const ex = this.ex;
    const body = this.body;
    const rescue = this.grpcRescue(err);
    this.detach();
    body?.on('error', ignore).destroy();
    if (ex === null) return;
    if (rescue === null) return ex.fail(err);
    try {
      ex.end(rescue);
    } catch {
      ex.fail(err);
    }
  }

  /**
   * The trailers that end a gRPC response to a peer sidecar (protocol.meshHttp2 mux) whose
   * upstream body failed without a reset code of the app's (an app's response the client
   * refused: trailers over the list limit, a body past its window or its content-length;
   * the app's connection lost): its status through the one mapping (grpcErrorTrailers), as
   * the inbound's node:http2 server does for a peer on `h2` (onBodyError) and the outbound's
   * servers for their caller. Cutting the virtual connection (ex.fail) reached the caller as
   * a plain RESET, so its sidecar ended the call UNAVAILABLE "stream reset by the peer"
   * whatever the failure, where `h2` gave its status (INTERNAL for the app's malformed
   * response). The app's own RST_STREAM is left to the RESET, which carries its code
   * (mux-stream.ts resetForUpstream). Null: not such a response.
   */
  private grpcRescue(err: Error): Headers | null {
    const res = this.res;
    const ct = this.ex?.head?.get('content-type');
    if (!this.meshH2 || res === null || ct === undefined || !ct.startsWith('application/grpc') || !isGrpc(res.headers) || resetCodeOf(err) !== undefined) return null;
    return grpcErrorTrailers(err instanceof ProxyError ? err : new ProxyError('UPSTREAM_RESET', `response body failed: ${err.message}`));
  }

  /** The client went away: stop reading the upstream. */
  private abort(): void {
    const body = this.body;
    this.detach();
    body?.on('error', ignore).destroy();
  }

  private detach(): void {
    const body = this.body;
    if (body !== null) {
      body.removeListener('data', this.onData);
      body.removeListener('end', this.onEnd);
      body.removeListener('error', this.onError);
    }
    if (this.ex !== null) {
      this.ex.onDrain = null;
      this.ex.onAbort = null;
    }
    this.ex = null;
    this.res = null;
    this.body = null;
    this.left = -1;
    this.chunkedWithLength = false;
    this.meshH2 = false;
  }
}

const EMPTY = Buffer.alloc(0);

/** The response to a peer's HTTP/2 request: the app's content-length, if any, stated in `wren-content-length` (never the app's own field). */
function meshH2Response(res: ProxyResponse): ProxyResponse {
  const len = declaredLength(res.headers);
  if (len < 0 && res.headers[MESH.contentLength] === undefined) return res;
  const headers = { ...res.headers };
  delete headers[MESH.contentLength];
  if (len >= 0) headers[MESH.contentLength] = String(len);
  return { ...res, headers };
}
const ignore = (): void => undefined;

/** The upstream's content-length, or -1 (absent or not a plain number: the body is then chunked). */
function declaredLength(h: Headers): number {
  const v = h['content-length'];
  const s = typeof v === 'string' ? v : v?.[0];
  if (s === undefined || s.length === 0 || s.length > 15) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
  }
  return Number(s);
}

function hasFields(h: Headers): boolean {
  for (const _ in h) return true;
  return false;
}
