import type { Headers } from '../http/headers.js';
import { FIELD_VALUE, TARGET, TOKEN, allIn } from './chars.js';
import { H1Error } from './h1-error.js';
import { releaseBody } from '../net/body-buffers.js';
import { NOT_KEPT_FIELDS } from './field-cache.js';

/** Where serialised bytes go: a net.Socket or tls.TLSSocket (or a test's collector). */
export interface H1Sink {
  write(data: Buffer | string, encoding?: BufferEncoding): boolean;
  cork(): void;
  uncork(): void;
  /**
   * The sink's writes of one turn leave together anyway (a mesh multiplexer stream: its
   * session's frame batch, proxy/mux/frame-batch.ts), so a head and a long body go as
   * writes of their own: corked, they would be joined into a copy of the body. Short
   * corked writes it gathers into one frame, each byte copied once, into the batch: a head
   * and a short body are corked there rather than copied into a buffer of their own.
   */
  readonly batchesWrites?: boolean;
}

/** Fields as the parser gives them (flat [name, value, ...]) or as the proxy's header map. */
export type Fields = readonly string[] | Headers;

/** responseHead `mode` bits. */
export const NO_BODY = 1; // HEAD request, 204, 304, 1xx: framing fields describe a body never sent
export const HTTP10_PEER = 2; // the client spoke HTTP/1.0: no chunked, close-delimited instead
export const CLOSE = 4; // close the connection after this response

/** A body this size or smaller goes out in the head's buffer: one write, one syscall. */
const COALESCE_BYTES = 16 * 1024;
/** Methods sent without `content-length: 0` when they have no body (as node's http.request). */
const BODYLESS_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/**
 * The head of a request. The framing is the serialiser's, never the caller's:
 * Content-Length and Transfer-Encoding in `fields` are dropped and replaced by what
 * `bodyLength` says (n: Content-Length n; -1: chunked; 0: none, with `content-length: 0`
 * for methods that usually carry a body), so a
 * relayed head can never describe a body other than the one that follows (RFC 9112
 * section 11.2). Names and values are checked: no CR, LF or NUL can split the message
 * (RFC 9112 section 11.1).
 */
/**
 * The last request line and host line made, by method, target and host: a connection's
 * requests (and a peer's, on the mesh hop) repeat them, and the parser hands the same
 * strings for a repeated target, so the check of each character is done once per change.
 */
// Start from a valid line: an unchecked call must never match the initial state.
let lastMethod = 'GET';
let lastTarget = '/';
let lastHost = '';
let lastStart = 'GET / HTTP/1.1\r\nhost: \r\n';

/** `extra`: field lines added as they are, after the framing field (the mesh's, built and checked by the caller). */
export function requestHead(method: string, target: string, host: string, fields: Fields, bodyLength: number, extra = ''): string {
  if (method !== lastMethod || target !== lastTarget || host !== lastHost) {
    if (!isToken(method)) throw new H1Error('bad-start-line', false, 'invalid method');
    if (!allIn(target, TARGET)) throw new H1Error('bad-start-line', false, 'invalid request-target');
    if (target === '') throw new H1Error('bad-start-line', false, 'empty request-target');
    lastStart = `${method} ${target} HTTP/1.1\r\nhost: ${checkValue('host', host, false)}\r\n`;
    lastMethod = method;
    lastTarget = target;
    lastHost = host;
  }
  let s = lastStart + fieldLines(fields, false, true);
  if (bodyLength < 0) s += 'transfer-encoding: chunked\r\n';
  else if (bodyLength > 0 || !BODYLESS_BY_DEFAULT.has(method)) s += `content-length: ${bodyLength}\r\n`;
  return s + extra + '\r\n';
}

/**
 * The head of a response; `bodyLength` as in requestHead (with HTTP10_PEER, an unknown
 * length is delimited by closing the connection), `mode` a sum of NO_BODY, HTTP10_PEER
 * and CLOSE. The reason phrase is optional and means nothing (RFC 9112 section 4): empty
 * unless `reason` is given (a constant from reason-phrase.ts, never a relayed string).
 */
let lastStatus = 200;
let lastReason = '';
let lastStatusLine = 'HTTP/1.1 200 \r\n';

export function responseHead(status: number, fields: Fields, bodyLength: number, mode: number, reason = ''): string {
  if (status !== lastStatus || reason !== lastReason) {
    if (!(status >= 100 && status <= 999) || (status | 0) !== status) throw new H1Error('bad-start-line', true, `invalid status ${status}`);
    lastStatusLine = `HTTP/1.1 ${status} ${reason}\r\n`;
    lastStatus = status;
    lastReason = reason;
  }
  let s = lastStatusLine + fieldLines(fields, true, true);
  const interim = status < 200;
  if (!interim && status !== 204 && status !== 304) {
    if (bodyLength >= 0) s += `content-length: ${bodyLength}\r\n`;
    else if ((mode & HTTP10_PEER) === 0) s += 'transfer-encoding: chunked\r\n';
  } else if (interim) return s + '\r\n';
  if ((mode & CLOSE) !== 0 || (bodyLength < 0 && (mode & (HTTP10_PEER | NO_BODY)) === HTTP10_PEER)) s += 'connection: close\r\n';
  else if ((mode & HTTP10_PEER) !== 0) s += 'connection: keep-alive\r\n';
  return s + '\r\n';
}

/** A trailer section ending a chunked body: the last chunk, the fields, the empty line (RFC 9112 section 7.1.2). */
export function lastChunk(trailers: Fields | undefined, inResponse: boolean): Buffer | string {
  if (trailers === undefined) return LAST_CHUNK;
  const lines = fieldLines(trailers, inResponse, true);
  return lines === '' ? LAST_CHUNK : `0\r\n${lines}\r\n`;
}

/**
 * Whether a head goes out together with the body chunk of `n` bytes written after it: a
 * short chunk shares its buffer (writeMessage, writeChunk), a long one is corked beside it
 * (one writev), except on a sink whose writes of a turn leave together anyway (a mux
 * stream, `batchesWrites`), where a cork would only join head and chunk into a copy.
 */
export function headJoinsChunk(sink: H1Sink, n: number): boolean {
  return n <= COALESCE_BYTES || sink.batchesWrites !== true;
}

/**
 * A head and (optionally) a whole body. Up to COALESCE_BYTES of body is copied into the
 * head's buffer so the pair costs one write; a larger body goes corked beside it (one writev).
 * On a sink that batches its writes the short body is corked beside the head instead: the
 * sink gathers the two into one frame (H1Sink batchesWrites), a copy of its own would be one more.
 */
export function writeMessage(sink: H1Sink, head: string, body: Buffer | null): boolean {
  if (body === null || body.length === 0) return sink.write(head, 'latin1');
  if (body.length <= COALESCE_BYTES && sink.batchesWrites !== true) {
    const out = Buffer.allocUnsafe(head.length + body.length);
    out.write(head, 0, 'latin1');
    body.copy(out, head.length);
    releaseBody(body); // copied: a lent body buffer (body-buffers.ts) goes back at once
    return sink.write(out);
  }
  const join = headJoinsChunk(sink, body.length);
  if (join) sink.cork();
  sink.write(head, 'latin1');
  const ok = sink.write(body);
  if (join) sink.uncork();
  return ok;
}

/**
 * One chunk of a chunked body (an empty buffer writes nothing: a zero-size chunk would end
 * the body): a short one copied into one buffer with its size line and CRLF, or, on a sink
 * that batches its writes, corked beside them as writeMessage does.
 */
export function writeChunk(sink: H1Sink, data: Buffer): boolean {
  const n = data.length;
  if (n === 0) return true;
  const size = `${n.toString(16)}\r\n`;
  if (n <= COALESCE_BYTES && sink.batchesWrites !== true) {
    const out = Buffer.allocUnsafe(size.length + n + 2);
    out.write(size, 0, 'latin1');
    data.copy(out, size.length);
    releaseBody(data);
    out[out.length - 2] = 0x0d;
    out[out.length - 1] = 0x0a;
    return sink.write(out);
  }
  const join = headJoinsChunk(sink, n);
  if (join) sink.cork();
  sink.write(size, 'latin1');
  sink.write(data);
  const ok = sink.write('\r\n', 'latin1');
  if (join) sink.uncork();
  return ok;
}

function fieldLines(fields: Fields, inResponse: boolean, dropFraming: boolean): string {
  let s = '';
  if (Array.isArray(fields)) {
    const f = fields as readonly string[];
    for (let i = 0; i < f.length; i += 2) s += line(f[i], f[i + 1], inResponse, dropFraming);
    return s;
  }
  const h = fields as Headers;
  for (const k in h) {
    const v = h[k];
    if (typeof v === 'string') s += line(k, v, inResponse, dropFraming);
    else for (let i = 0; i < v.length; i++) s += line(k, v[i], inResponse, dropFraming);
  }
  return s;
}

/**
 * The last line made for each name, by its value: a field whose value is the one its name
 * had last time (the parser hands the same strings for repeated lines, h1/field-cache.ts)
 * takes the line made then, its name and value checked then. The checks, a loop over each
 * character of both, were most of the serialiser's samples in the sidecars' profiles.
 * Credentials are never kept (a hit is faster, and a comparison stops at the first
 * difference: the timing would tell how much of a guess was right); nor long values.
 */
const LINES = new Map<string, { readonly value: string; readonly line: string }>();
const LINES_MAX = 512;
const LINE_VALUE_MAX = 256;

function line(name: string, value: string, inResponse: boolean, dropFraming: boolean): string {
  const n = name.length;
  // The lengths of host, content-length and transfer-encoding: lines the framing decides, never kept.
  const framing = n === 14 || n === 17 || n === 4;
  if (!framing) {
    const kept = LINES.get(name);
    if (kept !== undefined && kept.value === value) return kept.line;
  }
  if (!isToken(name)) throw new H1Error('bad-field-name', inResponse, `invalid field name ${JSON.stringify(name.slice(0, 64))}`);
  if (framing) {
    const k = name.toLowerCase();
    if (dropFraming && (k === 'content-length' || k === 'transfer-encoding')) return '';
    if (k === 'host' && !inResponse) return '';
  }
  const made = `${name}: ${checkValue(name, value, inResponse)}\r\n`;
  if (!framing && value.length <= LINE_VALUE_MAX && !NOT_KEPT_FIELDS.has(name.toLowerCase())) {
    if (LINES.size >= LINES_MAX) LINES.clear();
    LINES.set(name, { value, line: made });
  }
  return made;
}

function checkValue(name: string, value: string, inResponse: boolean): string {
  if (!allIn(value, FIELD_VALUE)) throw new H1Error('bad-field-value', inResponse, `invalid value for field ${name}`);
  return value;
}

function isToken(s: string): boolean {
  return s.length > 0 && allIn(s, TOKEN);
}
