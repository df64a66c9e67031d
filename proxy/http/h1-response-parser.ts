import { ProxyError } from '../errors/proxy-error.js';
import type { Headers } from './headers.js';

export interface H1ResponseHead {
  readonly status: number;
  /** Lower-case names, hop-by-hop fields (and those the Connection header lists) removed. */
  readonly headers: Headers;
  /** The connection may carry another request once this response has ended. */
  readonly keepAlive: boolean;
  /** False for HEAD, 204, 304 and `content-length: 0`: the response ends with its head. */
  readonly hasBody: boolean;
  /** Server's `keep-alive: timeout=N` hint in ms, if any. */
  readonly keepAliveTimeoutMs?: number;
}

export interface H1ResponseHandler {
  onHead(head: H1ResponseHead): void;
  onData(chunk: Buffer): void;
  onEnd(trailers: Headers | undefined): void;
}

const enum S {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  UntilClose,
  Done,
}

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: |$)/;
/** As cleanHeaders (headers.ts): hop-by-hop fields never cross the proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'proxy-authenticate', 'proxy-authorization', 'http2-settings', 'host']);
/** As node's IncomingMessage: a repeated single-valued field keeps its first value (RFC 9110 section 5.3). */
const SINGLE = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent']);

const protocolError = (detail: string) => new ProxyError('UPSTREAM_PROTOCOL', detail);

/**
 * An incremental HTTP/1.1 response parser (RFC 9112) for the proxy's HTTP/1.1 client:
 * status line and fields, then the body framed by RFC 9112 section 6.3 (no body for
 * HEAD, 1xx, 204 and 304; Transfer-Encoding chunked, with trailers; Content-Length;
 * otherwise until the connection closes). Interim 1xx responses are skipped. Anything
 * malformed, ambiguous (differing Content-Length values) or over `maxHeaderBytes`
 * throws UPSTREAM_PROTOCOL. One parser serves one response; `reset()` readies it for
 * the next one on a kept-alive connection.
 */
export class H1ResponseParser {
  private state = S.Head;
  private pending: Buffer | null = null;
  private left = 0;
  private trailerBytes = 0;
  private trailerLines: string[] = [];
  /** Bytes arrived after the response ended: the connection cannot be reused. */
  extraData = false;

  constructor(
    private readonly handler: H1ResponseHandler,
    private readonly maxHeaderBytes = 16 * 1024,
    /**
     * The request asked for an upgrade: a 101 is then a final answer whose head keeps the
     * `upgrade` field, and every byte after it is handed on (onData) as the new protocol's.
     */
    private readonly upgrade = false,
  ) {}

  get done(): boolean {
    return this.state === S.Done;
  }

  /** Whether the response head has been parsed. */
  get started(): boolean {
    return this.state !== S.Head;
  }

  reset(): void {
    this.state = S.Head;
    this.pending = null;
    this.left = 0;
    this.trailerBytes = 0;
    this.trailerLines = [];
    this.extraData = false;
  }

  /** Feeds bytes from the connection. `isHead`: the request was HEAD (no body follows). */
  execute(chunk: Buffer, isHead: boolean): void {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let at = 0;
    while (at < buf.length) {
      switch (this.state) {
        case S.Head: {
          const end = buf.indexOf(CRLFCRLF, at);
          if (end < 0) {
            if (buf.length - at > this.maxHeaderBytes) throw protocolError(`response head over ${this.maxHeaderBytes} bytes`);
            this.pending = buf.subarray(at);
            return;
          }
          if (end - at > this.maxHeaderBytes) throw protocolError(`response head over ${this.maxHeaderBytes} bytes`);
          const lines = buf.toString('latin1', at, end).split('\r\n');
          at = end + 4;
          this.head(lines, isHead);
          break;
        }
        case S.Length: {
          const n = Math.min(this.left, buf.length - at);
          const data = buf.subarray(at, at + n);
          at += n;
          this.left -= n;
          this.handler.onData(data);
          if (this.left === 0) this.end(undefined);
          break;
        }
        case S.UntilClose:
          this.handler.onData(at === 0 ? buf : buf.subarray(at));
          return;
        case S.ChunkDataEnd: {
          // Exactly CRLF after chunk data; anything else is refused at once.
          if (buf[at] !== 13 || (at + 1 < buf.length && buf[at + 1] !== 10)) throw protocolError('chunk data not followed by CRLF');
          if (at + 1 >= buf.length) {
            this.pending = buf.subarray(at);
            return;
          }
          at += 2;
          this.state = S.ChunkSize;
          break;
        }
        case S.ChunkSize:
        case S.Trailers: {
          const eol = buf.indexOf(CRLF, at);
          if (eol < 0) {
            if (buf.length - at > this.maxHeaderBytes) throw protocolError('chunk framing line too long');
            this.pending = buf.subarray(at);
            return;
          }
          const line = buf.toString('latin1', at, eol);
          at = eol + 2;
          this.line(line);
          break;
        }
        case S.ChunkData: {
          const n = Math.min(this.left, buf.length - at);
          const data = buf.subarray(at, at + n);
          at += n;
          this.left -= n;
          this.handler.onData(data);
          if (this.left === 0) this.state = S.ChunkDataEnd;
          break;
        }
        case S.Done:
          this.extraData = true;
          return;
      }
    }
  }

  /** The connection closed (or ended): completes a close-delimited body, fails anything else unfinished. */
  finish(): void {
    if (this.state === S.UntilClose) return this.end(undefined);
    if (this.state !== S.Done) throw new ProxyError('UPSTREAM_RESET', this.state === S.Head ? 'connection closed before a response' : 'connection closed mid-response');
  }

  private end(trailers: Headers | undefined): void {
    this.state = S.Done;
    this.handler.onEnd(trailers);
  }

  private head(lines: string[], isHead: boolean): void {
    const m = STATUS_LINE.exec(lines[0]);
    if (!m) throw protocolError(`bad status line ${JSON.stringify(lines[0].slice(0, 64))}`);
    const minor = m[1];
    const status = Number(m[2]);
    if (status < 100) throw protocolError(`bad status ${status}`);
    if (status === 101 && !this.upgrade) throw protocolError('unexpected 101 Switching Protocols');
    if (status < 200 && status !== 101) return; // interim response (100 Continue, 103 Early Hints): the final one follows
    const raw = parseFields(lines, 1);
    const connection = listOf(raw['connection']);
    if (status === 101) {
      const headers: Headers = {};
      for (const k in raw) if (!HOP_BY_HOP.has(k) && !connection.includes(k)) headers[k] = raw[k];
      if (raw['upgrade'] !== undefined) headers['upgrade'] = raw['upgrade'];
      this.state = S.UntilClose;
      this.handler.onHead({ status, headers, keepAlive: false, hasBody: true });
      return;
    }
    const te = raw['transfer-encoding'];
    const cl = raw['content-length'];
    let framing: S = S.UntilClose;
    let hasBody = true;
    let closeAfter = false;
    if (isHead || status === 204 || status === 304) hasBody = false;
    else if (te !== undefined) {
      const codings = listOf(te);
      framing = codings[codings.length - 1] === 'chunked' ? S.ChunkSize : S.UntilClose;
      // Both framings present is a smuggling signal (RFC 9112 section 6.3 item 3): never reuse.
      if (cl !== undefined) closeAfter = true;
    } else if (cl !== undefined) {
      this.left = contentLength(cl);
      framing = S.Length;
      if (this.left === 0) hasBody = false;
    }
    const keepAlive =
      !closeAfter && !(hasBody && framing === S.UntilClose) && (minor === '1' ? !connection.includes('close') : connection.includes('keep-alive'));
    const headers: Headers = {};
    for (const k in raw) {
      if (HOP_BY_HOP.has(k) || connection.includes(k)) continue;
      headers[k] = raw[k];
    }
    let keepAliveTimeoutMs: number | undefined;
    const ka = raw['keep-alive'];
    if (typeof ka === 'string') {
      const t = /(?:^|[,;\s])timeout=(\d+)/i.exec(ka);
      if (t) keepAliveTimeoutMs = Number(t[1]) * 1000;
    }
    this.state = hasBody ? framing : S.Done;
    this.handler.onHead({ status, headers, keepAlive, hasBody, keepAliveTimeoutMs });
    if (!hasBody) this.handler.onEnd(undefined);
  }

  private line(line: string): void {
    if (this.state === S.ChunkSize) {
      const semi = line.indexOf(';');
      const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
      if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw protocolError(`bad chunk size ${JSON.stringify(line.slice(0, 32))}`);
      this.left = parseInt(hex, 16);
      this.state = this.left === 0 ? S.Trailers : S.ChunkData;
      return;
    }
    // Trailers: field lines up to an empty line.
    if (line !== '') {
      this.trailerBytes += line.length + 2;
      if (this.trailerBytes > this.maxHeaderBytes) throw protocolError(`trailers over ${this.maxHeaderBytes} bytes`);
      this.trailerLines.push(line);
      return;
    }
    let trailers: Headers | undefined;
    if (this.trailerLines.length) {
      const raw = parseFields(this.trailerLines, 0);
      for (const k in raw) {
        if (HOP_BY_HOP.has(k) || k === 'content-length') continue;
        (trailers ??= {})[k] = raw[k];
      }
    }
    this.trailerLines = [];
    this.end(trailers);
  }
}

/** Field lines to a header map with node's rules for repeated fields (set-cookie a list, single-valued fields keep the first, others joined). */
function parseFields(lines: string[], from: number): Headers {
  const out: Headers = {};
  for (let i = from; i < lines.length; i++) {
    const l = lines[i];
    const c = l.indexOf(':');
    if (c <= 0) throw protocolError(`bad header line ${JSON.stringify(l.slice(0, 64))}`);
    const name = l.slice(0, c);
    if (!TOKEN.test(name)) throw protocolError(`bad header name ${JSON.stringify(name.slice(0, 64))}`);
    const value = l.slice(c + 1).trim();
    if (BAD_VALUE.test(value)) throw protocolError(`bad value for header ${name}`);
    const k = name.toLowerCase();
    const prev = out[k];
    if (prev === undefined) out[k] = k === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prev)) prev.push(value);
    else if (k === 'content-length') {
      if (prev !== value) throw protocolError('differing content-length values');
    } else if (!SINGLE.has(k)) out[k] = `${prev}${k === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

function listOf(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  const s = Array.isArray(v) ? v.join(',') : v;
  return s.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean);
}

function contentLength(v: string | string[]): number {
  // "5, 5" (a repeated, identical value folded into one line) is accepted, as RFC 9110 section 8.6 allows.
  const parts = (Array.isArray(v) ? v.join(',') : v).split(',').map((x) => x.trim());
  if (!parts.every((p) => /^\d{1,15}$/.test(p) && p === parts[0])) throw protocolError(`bad content-length ${JSON.stringify(String(v).slice(0, 32))}`);
  return Number(parts[0]);
}
