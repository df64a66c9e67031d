import { LeanBody } from '../http/lean-body.js';
import type { BodyStream, ProxyRequest, ProxyResponse, SettledBody } from '../http/exchange.js';
import { badField, connectionField } from './field-check.js';
import { isSettled } from '../http/exchange.js';
import { dropNotFromApp, type Headers } from '../http/headers.js';
import { fieldsToHeaders } from '../h1/head.js';
import { ProxyError } from '../errors/proxy-error.js';
import { abortReason } from '../layers/race-signal.js';
import { StreamedResponse } from '../http/streamed-response.js';
import { BodySender, type SendHost } from './body-sender.js';
import { H2_ERROR } from './frames.js';
import { MAX_INTERIM_RESPONSES } from '../h1/limits.js';
import type { LimitName } from '../http/h2-session-guard.js';

const STREAM = Symbol('wren.h2ClientStream');
type Relayed = BodyStream & { [STREAM]?: H2ClientStream };
const EMPTY = Buffer.alloc(0);
const ignore = (): void => undefined;

/** What a stream needs of its session (h2-client-session.ts implements it). */
export interface StreamHost extends SendHost {
  reset(id: number, code: number): void;
  blocked(st: H2ClientStream): void;
  congested(st: H2ClientStream): boolean;
  credit(st: H2ClientStream): void;
  markRefused(err: ProxyError): ProxyError;
  chargeReset(): void;
  closed(st: H2ClientStream): void;
  /** A per-stream limit fired (counted as the session's flood guards are). */
  limitExceeded(limit: LimitName): void;
}

/**
 * One request on a frame-level HTTP/2 client session (h2-client-session.ts): its head
 * and body going out under the peer's flow-control windows (RFC 9113 section 5.2), its
 * response head resolving the request's promise, the response body a Readable that gives
 * the window back as it is read, trailers after it. A reset either way fails what is still
 * open: a request never answered rejects (REFUSED_STREAM marked retryable), an answered
 * one's body is destroyed, so a cut response never looks complete.
 */
export class H2ClientStream extends BodySender {
  id = 0;
  sendWindow = 0;
  /** What the peer may still send on this stream before we give window back. */
  recvWindow = 0;
  /** DATA bytes read by the body's consumer and not yet given back (WINDOW_UPDATE). */
  unacked = 0;
  responded = false;
  localEnded = false;
  remoteEnded = false;
  closed = false;
  body: H2ResponseBody | null = null;
  /** Response body bytes its content-length still allows; -1: not declared (or HEAD, 304: not a body's length). */
  private bodyLeft = -1;
  /** The response has no content whatever it declares (HEAD, 204, 304): bodyLeft is 0. */
  private noContent = false;
  /** Interim (1xx) responses so far (at most MAX_INTERIM_RESPONSES). */
  private interim = 0;
  trailers: Headers | undefined = undefined;
  private pausedBody: BodyStream | null = null;
  resolve!: (res: ProxyResponse) => void;
  reject!: (err: unknown) => void;

  constructor(
    readonly session: StreamHost,
    readonly req: ProxyRequest,
    readonly headers: Headers,
  ) {
    super();
  }

  /**
   * The request's abort listener (cancels the stream, RFC 9113 section 8.7): a function, not this object with a handleEvent. an object
   * listener is kept where scavenges cannot free it (h1-pool-exchange.ts, Exchange.onAbort).
   * The stream fails with the abort's reason (the client went away: CLIENT_CANCELLED, flag
   * DC; a timeout: its own), not as an upstream reset: the app did not reset anything, and
   * the inbound sidecar's metrics, access log and span would blame it (UR) for a call its
   * caller cancelled, where Envoy says DC.
   */
  readonly onAbort = (): void => this.cancel(abortReason(this.req.signal));

  /** Sends the body after the head (the session wrote HEADERS without END_STREAM). */
  sendBody(body: BodyStream): void {
    if (isSettled(body)) {
      const data = body.read() as Buffer | null;
      body.resume();
      this.write(data ?? EMPTY, true);
      return;
    }
    (body as Relayed)[STREAM] = this;
    body.on('data', onBodyData);
    body.on('end', onBodyEnd);
    body.on('error', onBodyError);
    if (body.readableFlowing !== true) body.resume();
  }

  protected outgoingTrailers(): Headers | undefined {
    return this.req.trailers();
  }

  protected localEnd(): void {
    this.localEnded = true;
    if (this.remoteEnded) this.close();
  }

  /** Nothing waits for window: the body goes on. */
  protected drained(): void {
    const b = this.pausedBody;
    this.pausedBody = null;
    if (b !== null && !b.destroyed) b.resume();
  }

  pauseBody(body: BodyStream): void {
    this.pausedBody = body;
    body.pause();
  }

  /** The socket drained: the body goes on unless it waits for window too (flush() resumes it then). */
  resumeBody(): void {
    if (this.queued === null && !this.closed) this.drained();
  }

  /** A complete header block for this stream: the response head, a 1xx, or the trailers. */
  onHeaders(fields: string[], endStream: boolean): void {
    // Half-closed (remote), our request still going: more HEADERS would replace the trailers
    // of a response already ended (RFC 9113 section 5.1: a stream error STREAM_CLOSED).
    if (this.remoteEnded) return this.protocolError('HEADERS after the response ended', H2_ERROR.STREAM_CLOSED);
    if (this.responded) {
      if (!endStream) return this.protocolError('trailers without END_STREAM');
      if (this.bodyLeft > 0) return this.protocolError('body shorter than its content-length');
      const bad = badField(fields, 0, true);
      if (bad !== null) return this.protocolError(`${bad} in trailers`);
      const conn = connectionField(fields, 0);
      if (conn !== null) return this.protocolError(`connection-specific field ${conn} in trailers (RFC 9113 section 8.2.2)`);
      const t = fieldsToHeaders(fields, true);
      // This client reaches the local app only (app-h2-client.ts): its trailers lose every field only a sidecar writes.
      dropNotFromApp(t);
      for (const _ in t) {
        this.trailers = t;
        break;
      }
      this.remoteEnd();
      return;
    }
    if (fields[0] !== ':status') return this.protocolError('response without :status first');
    // Three digits (RFC 9110 section 15): Number() alone takes "2e2" for 200 and "1e2" for an interim 100.
    const status = Number(fields[1]);
    if (!(status >= 100 && status <= 999) || !/^[0-9]{3}$/.test(fields[1])) return this.protocolError(`invalid :status ${JSON.stringify(fields[1].slice(0, 16))}`);
    // Names and values as nghttp2 checks them (RFC 9113 section 8.2.1): the app's response
    // is written to the caller as it is, and a field the writer refuses would fail there.
    const bad = badField(fields, 2, true);
    if (bad !== null) return this.protocolError(`${bad} after :status`);
    const conn = connectionField(fields, 2);
    if (conn !== null) return this.protocolError(`connection-specific field ${conn} (RFC 9113 section 8.2.2)`);
    // HTTP/2 has no 101 (Switching Protocols): RFC 9113 section 8.6 makes it a malformed
    // response, not an interim one to skip (a final response after it would pass as the answer).
    if (status === 101) return this.protocolError('101 (Switching Protocols) in HTTP/2');
    if (status < 200) {
      // Interim responses (100, 103) are not passed on (RFC 9110 section 15.2); one with END_STREAM is malformed.
      if (endStream) return this.protocolError('interim response with END_STREAM');
      if (++this.interim > MAX_INTERIM_RESPONSES) {
        // An app answering with 1xx without end: a stream error (the session's other streams go on), as Envoy resets the stream.
        this.session.limitExceeded('interim-responses');
        return this.protocolError(`more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`);
      }
      return;
    }
    // A content-length the DATA frames do not add up to makes the response malformed
    // (RFC 9113 section 8.1.1), as nghttp2 checks: a cut body must not end cleanly. HEAD
    // and 304 responses state the length of a body they do not carry (RFC 9110 section 8.6).
    const declared = contentLength(fields);
    if (declared === -2) return this.protocolError('invalid content-length');
    if (declared >= 0 && this.req.method !== 'HEAD' && status !== 304) {
      if (endStream && declared > 0) return this.protocolError('body shorter than its content-length');
      this.bodyLeft = declared;
    }
    // No content after HEAD, 204 or 304 (RFC 9110 sections 6.4.1, 9.3.2, 15.3.5, 15.4.5):
    // DATA carrying any is malformed, as nghttp2 (node:http2) takes it, not content to drop.
    if (this.req.method === 'HEAD' || status === 204 || status === 304) {
      this.noContent = true;
      this.bodyLeft = 0;
    }
    this.responded = true;
    const headers = fieldsToHeaders(fields.length === 2 ? [] : fields.slice(2));
    if (!endStream) {
      this.body = new H2ResponseBody(this);
      // A reset before the reader attaches its own listener must not be an uncaught error (node's Http2Stream has h2-call's listener).
      this.body.on('error', ignore);
    }
    this.resolve(new StreamedResponse(status, headers, this.body, this));
    if (endStream) this.remoteEnd();
  }

  onData(data: Buffer, endStream: boolean): void {
    const b = this.body;
    if (this.remoteEnded) return this.protocolError('DATA after the response ended', H2_ERROR.STREAM_CLOSED);
    if (b === null) return this.protocolError('DATA before the response head');
    if (this.bodyLeft >= 0 && (this.bodyLeft -= data.length) < 0) return this.protocolError(this.noContent ? `content in a ${this.req.method === 'HEAD' ? 'response to HEAD' : 'response that has none'}` : 'body longer than its content-length');
    if (data.length > 0) b.push(data);
    if (!endStream) return;
    if (this.bodyLeft > 0) return this.protocolError('body shorter than its content-length');
    this.remoteEnd();
  }

  private remoteEnd(): void {
    this.remoteEnded = true;
    if (this.body !== null) this.body.push(null);
    if (this.localEnded) this.close();
  }

  /** RST_STREAM from the peer. */
  onReset(code: number): void {
    if (this.closed) return;
    const err = new ProxyError('UPSTREAM_RESET', code === H2_ERROR.REFUSED_STREAM ? 'stream refused' : `stream reset (code ${code})`, { resetCode: code });
    if (code === H2_ERROR.REFUSED_STREAM && !this.responded) this.session.markRefused(err);
    // NO_ERROR: "stop sending" after a complete response (RFC 9113 section 8.1), not a failed
    // stream; node:http2's delivery does not charge it either (h2-call.ts).
    if (code !== H2_ERROR.NO_ERROR) this.session.chargeReset();
    else if (this.remoteEnded) return this.stopSending();
    this.fail(err);
  }

  /**
   * NO_ERROR after a complete response: the app asks for no more of the request (RFC 9113
   * section 8.1). The caller has its whole response; the rest of its upload is read and
   * dropped as it comes, so it ends as node:http2 would have let it, instead of waiting
   * paused, on a stream no one reads, for the stream idle timeout.
   */
  private stopSending(): void {
    const b = this.req.body;
    this.close();
    if (b === null || b.destroyed || b.readableEnded) return;
    detach(b);
    b.removeListener('error', onBodyError);
    b.on('error', ignore);
    b.resume();
  }

  /** Ours: RST_STREAM CANCEL (the caller went away, the response body was dropped). */
  cancel(err: ProxyError): void {
    if (this.closed) return;
    // A request still waiting for a stream slot has no stream to reset: RST_STREAM on
    // stream 0 would be a connection error at the app (RFC 9113 section 6.4), ending every caller's stream.
    if (this.id !== 0) {
      this.session.reset(this.id, H2_ERROR.CANCEL);
      this.session.chargeReset();
    }
    this.fail(err);
  }

  private protocolError(why: string, code: number = H2_ERROR.PROTOCOL_ERROR): void {
    if (this.closed) return;
    this.session.reset(this.id, code);
    this.fail(new ProxyError('UPSTREAM_PROTOCOL', why));
  }

  /** Closes the stream with an error: a pending response rejects, an answered one's body is destroyed. */
  fail(err: Error): void {
    if (this.closed) return;
    const upload = this.responded && this.remoteEnded && !this.localEnded ? this.req.body : null;
    this.close();
    if (!this.responded) this.reject(err);
    else if (this.body !== null && !this.remoteEnded) this.body.fail(err);
    // The whole response came, then a reset with an error while the request was still being
    // sent: the upload has nowhere to go. Dropped, so that the caller's side learns it
    // (its stream reset) instead of sending into a stream no one reads until the stream idle timeout.
    else if (upload !== null && !upload.destroyed && !upload.readableEnded) upload.destroy(err);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued = null;
    this.req.signal.removeEventListener('abort', this.onAbort);
    const b = this.pausedBody;
    this.pausedBody = null;
    if (b !== null) detach(b);
    this.session.closed(this);
  }
}


/** The response's content-length: -1 when absent, -2 when not one decimal number (several must agree). */
function contentLength(fields: readonly string[]): number {
  let n = -1;
  for (let i = 2; i < fields.length; i += 2) {
    if (fields[i] !== 'content-length') continue;
    const v = fields[i + 1];
    if (!/^[0-9]{1,15}$/.test(v) || (n !== -1 && Number(v) !== n)) return -2;
    n = Number(v);
  }
  return n;
}

function onBodyData(this: Relayed, chunk: Buffer): void {
  const st = this[STREAM];
  if (st === undefined || st.closed) return void this.pause();
  if (!st.write(chunk, false) || st.session.congested(st)) st.pauseBody(this);
}

function onBodyEnd(this: Relayed): void {
  const st = this[STREAM];
  this[STREAM] = undefined;
  if (st !== undefined && !st.closed) st.write(EMPTY, true);
}

/** The request body failed before its end: the app must not take it for whole (RFC 9113 section 8.1). */
function onBodyError(this: Relayed, err: Error): void {
  const st = this[STREAM];
  this[STREAM] = undefined;
  st?.cancel(new ProxyError('UPSTREAM_RESET', `request body failed: ${err.message}`));
}

/** A body whose stream closed before its end: left paused, without our listeners (a retry may send it again). */
function detach(b: BodyStream): void {
  (b as Relayed)[STREAM] = undefined;
  b.removeListener('data', onBodyData);
  b.removeListener('end', onBodyEnd);
}

/** The response body: window is given back as it is read (so a reader that stops holds the app at one window). */
class H2ResponseBody extends LeanBody implements SettledBody {
  constructor(private readonly st: H2ClientStream) {
    super(64 * 1024);
  }

  /** Every byte and the end are buffered (the whole response came in one read): writers send it in one go. */
  get settled(): boolean {
    return this.st.remoteEnded && !this.readableEnded;
  }

  override _read(): void {
    this.st.session.credit(this.st);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Dropped by its reader before the end (the caller went away): the app stops sending.
    // After the end (autoDestroy) the request may still be going out: a complete response
    // before the whole request does not end it (RFC 9113 section 8.1), nor does node:http2.
    if (!this.st.closed && !this.readableEnded) this.st.cancel(new ProxyError('UPSTREAM_RESET', 'response body dropped'));
    cb(err);
  }
}
