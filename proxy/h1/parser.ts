import { Body, H1Head } from './head.js';
import { H1Error, type H1Reason } from './h1-error.js';
import { DEFAULT_H1_LIMITS, MAX_CHUNK_SIZE_DIGITS, type H1Limits } from './limits.js';
import { CR, FIELD_VALUE, HEX, HOST, HTAB, LF, QDTEXT, SP, TARGET, TOKEN, allIn } from './chars.js';
import { FieldCache } from './field-cache.js';

/** Field lines seen before, shared by the thread's parsers (field-cache.ts). */
const FIELDS = new FieldCache();
/** Field lines per message whose place is remembered (H1Parser.predict). */
const PREDICTED = 32;
/** The last request-target and reason phrase made into strings: a repeat takes the same one. */
let lastTarget = '';
let lastReason = '';
/** The last Keep-Alive value seen in a response, and the timeout it gives (-1: none). */
let lastKeepAlive = '';
let lastKeepAliveMs = -1;

/**
 * What the parser reports, as methods of one object per connection (no closures per
 * request). Calls come synchronously from `execute()`; a handler may call `pause()` in any
 * of them (execute then returns how far it got).
 */
export interface H1Handler {
  /** A head. In a response, status < 200 other than 101 is interim: the final head follows. */
  onHead(head: H1Head): void;
  /** Body bytes (chunk framing removed): a view of the socket's buffer, valid for this call only unless kept. */
  onBody(chunk: Buffer): void;
  /** Trailer fields, flat [name, value, ...] as in H1Head.fields; only when there are some. */
  onTrailers(fields: string[]): void;
  /** The message is complete. */
  onEnd(): void;
  /**
   * The connection left HTTP/1.1 (an upgrade request ended, a 101, a 2xx to CONNECT):
   * `rest` is what followed on the wire (maybe empty); later bytes fed to execute() come here too.
   */
  onUpgrade(rest: Buffer): void;
  /** The message is malformed; the parser ignores everything after. Close the connection. */
  onError(err: H1Error): void;
}

const enum S {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkCR,
  ChunkLF,
  Trailers,
  UntilClose,
  /** The message is complete; onEnd is next. A state so that a pause in onHead holds. */
  End,
  Tunnel,
  /** After a message that closes the connection: RFC 9112 section 9.6, nothing more is read. */
  Ignore,
  Dead,
}

type Latin1 = { latin1Slice(start: number, end: number): string };
/** Buffer#latin1Slice: what toString('latin1', s, e) calls, minus the encoding dispatch. */
const latin1 = (b: Buffer, s: number, e: number): string => (b as unknown as Latin1).latin1Slice(s, e);

/**
 * An incremental HTTP/1.1 parser (RFC 9112) for requests or responses, fed straight from
 * socket reads. Lines are found by a byte scan for LF and checked byte by byte against the
 * grammar's tables; a line split across reads is the only thing kept between calls, and
 * it is bounded by the head limit (or the chunk-extension limit). Anything that could make
 * two parsers disagree about where a message ends is refused (RFC 9112 section 11.2):
 * see h1-error.ts for the list and docs/http1-codec.md for the rules.
 */
export class H1Parser {
  private state = S.Head;
  private paused = false;
  private upgradeSent = false;
  /** A line split across reads (only its bytes; grows by doubling up to the bound). */
  private pend: Buffer | null = null;
  private pendLen = 0;
  /** Bytes of the head (or trailer section) so far. */
  private headBytes = 0;
  /** What headBytes may reach: maxHeadBytes in a head, the trailer budget in a trailer section. */
  private headLimit: number;
  private nFields = 0;
  private left = 0;
  private head = new H1Head();
  private trailers: string[] = [];
  // Framing facts gathered from the fields of the head being parsed.
  private startSeen = false;
  private cl = -1;
  private te: string | null = null;
  private hosts = 0;
  private connClose = false;
  private connKeepAlive = false;
  private connUpgrade = false;
  private upgradeField = false;
  private expect = false;
  // Response mode: what the request was.
  private reqHead = false;
  private reqConnect = false;
  private readonly chunkLineMax: number;
  /**
   * The field cache's slot of each field line of the connection's last message, by its place
   * (-1: none): a connection's messages repeat their lines in the same order, so the line in
   * the same place is tried first, and a line found so needs no scan for its LF.
   */
  private readonly predict = new Int16Array(PREDICTED).fill(-1);
  /** The place of the next field line of this message (head and trailers). */
  private lineIdx = 0;

  constructor(
    private readonly handler: H1Handler,
    /** Parse responses (true) or requests (false). */
    readonly responses: boolean,
    private readonly limits: H1Limits = DEFAULT_H1_LIMITS,
  ) {
    this.chunkLineMax = limits.maxChunkExtBytes + 64;
    this.headLimit = limits.maxHeadBytes;
  }

  /** Response mode: the method of the request the next response answers (HEAD and CONNECT change its framing). */
  setRequestMethod(method: string): void {
    this.reqHead = method === 'HEAD';
    this.reqConnect = method === 'CONNECT';
  }

  /** Stop at the next step; execute() returns the bytes it consumed. Feed the rest after resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Bytes the parser holds between calls (a partial line): never more than the head limit. */
  get retainedBytes(): number {
    return this.pend === null ? 0 : this.pend.length;
  }

  /** Between messages (nothing of the next one read yet). */
  get idle(): boolean {
    return this.state === S.Head && !this.startSeen && this.headBytes === 0 && this.pendLen === 0;
  }

  /**
   * Parses what `buf` holds; returns how many bytes were consumed (all of them unless the
   * handler paused). Never throws for any input: errors go to handler.onError.
   */
  execute(buf: Buffer): number {
    const len = buf.length;
    let at = 0;
    while (!this.paused) {
      switch (this.state) {
        case S.Head:
        case S.Trailers:
        case S.ChunkSize: {
          if (at >= len) return at;
          if (this.pendLen === 0 && this.startSeen && this.state !== S.ChunkSize && this.lineIdx < PREDICTED) {
            const slot = this.predict[this.lineIdx];
            const e = slot < 0 ? -1 : FIELDS.at(slot, buf, at, len);
            if (e >= 0) {
              const lineLen = e + 2 - at;
              if (this.headBytes + lineLen > this.headLimit) {
                this.tooLarge();
                return len;
              }
              this.headBytes += lineLen;
              this.lineIdx++;
              this.keptField(this.state === S.Trailers ? this.trailers : this.head.fields);
              at = e + 2;
              break;
            }
          }
          // A JS scan: heads are a few dozen bytes a line, where a native indexOf call costs more than the loop.
          let lf = at;
          while (lf < len && buf[lf] !== LF) lf++;
          if (lf === len) {
            this.stash(buf, at, len);
            return len;
          }
          const lineLen = this.pendLen + lf + 1 - at;
          if (this.state === S.ChunkSize) {
            if (lineLen > this.chunkLineMax) this.fail('chunk-ext-too-long', `chunk-size line over ${this.chunkLineMax} bytes`);
          } else if (this.headBytes + lineLen > this.headLimit) this.tooLarge();
          if ((this.state as S) === S.Dead) return len;
          this.headBytes += lineLen;
          if (this.pendLen === 0) this.line(buf, at, lf);
          else {
            const p = this.append(buf, at, lf + 1);
            this.pendLen = 0;
            this.pend = null;
            this.line(p, 0, lineLen - 1);
          }
          at = lf + 1;
          break;
        }
        case S.Length: {
          if (at >= len) return at;
          const n = Math.min(this.left, len - at);
          const chunk = at === 0 && n === len ? buf : buf.subarray(at, at + n);
          at += n;
          this.left -= n;
          if (this.left === 0) this.state = S.End;
          this.handler.onBody(chunk);
          break;
        }
        case S.ChunkData: {
          if (at >= len) return at;
          const n = Math.min(this.left, len - at);
          const chunk = buf.subarray(at, at + n);
          at += n;
          this.left -= n;
          if (this.left === 0) this.state = S.ChunkCR;
          this.handler.onBody(chunk);
          break;
        }
        case S.ChunkCR:
        case S.ChunkLF: {
          // The CRLF after chunk data, byte by byte (it may be split across reads).
          if (at >= len) return at;
          const want = this.state === S.ChunkCR ? CR : LF;
          if (buf[at] !== want) {
            this.fail('chunk-no-crlf', 'chunk data not followed by CRLF');
            return len;
          }
          at++;
          this.state = want === CR ? S.ChunkLF : S.ChunkSize;
          break;
        }
        case S.End:
          this.endMessage();
          break;
        case S.UntilClose:
          if (at < len) this.handler.onBody(at === 0 ? buf : buf.subarray(at));
          return len;
        case S.Tunnel:
          if (at < len || !this.upgradeSent) {
            this.upgradeSent = true;
            this.handler.onUpgrade(at === 0 ? buf : buf.subarray(at));
          }
          return len;
        case S.Ignore:
        case S.Dead:
          return len;
      }
    }
    return at;
  }

  /**
   * The peer closed its side: ends a body delimited by the close, and reports a message
   * cut short (a truncated response must never pass for a whole one).
   */
  finish(): void {
    switch (this.state) {
      case S.UntilClose:
        this.state = S.Ignore;
        this.handler.onEnd();
        return;
      case S.Head:
        if (this.idle) return;
        break;
      case S.End:
      case S.Tunnel:
      case S.Ignore:
      case S.Dead:
        return;
    }
    this.fail('truncated', `connection closed mid-${this.responses ? 'response' : 'request'}`);
  }

  private endMessage(): void {
    const h = this.head;
    this.state = h.upgrade ? S.Tunnel : h.keepAlive ? S.Head : S.Ignore;
    this.reset();
    this.handler.onEnd();
  }

  private reset(): void {
    this.head = new H1Head();
    this.startSeen = false;
    this.lineIdx = 0;
    this.headBytes = 0;
    this.headLimit = this.limits.maxHeadBytes;
    this.nFields = 0;
    this.cl = -1;
    this.te = null;
    this.hosts = 0;
    this.connClose = this.connKeepAlive = this.connUpgrade = this.upgradeField = this.expect = false;
  }

  private fail(reason: H1Reason, detail: string): void {
    if (this.state === S.Dead) return;
    this.state = S.Dead;
    this.pend = null;
    this.pendLen = 0;
    this.handler.onError(new H1Error(reason, this.responses, detail));
  }

  private tooLarge(): void {
    if (this.state === S.Trailers) this.fail('trailers-too-large', `trailer section over ${this.headLimit} bytes`);
    else this.fail('head-too-large', `${this.responses ? 'response' : 'request'} head over ${this.limits.maxHeadBytes} bytes (the limit)`);
  }

  /** Keep the start of a line that the next read completes, within the state's bound. */
  private stash(buf: Buffer, at: number, len: number): void {
    const total = this.pendLen + len - at;
    if (this.state === S.ChunkSize) {
      if (total > this.chunkLineMax) return this.fail('chunk-ext-too-long', `chunk-size line over ${this.chunkLineMax} bytes`);
    } else if (this.headBytes + total > this.headLimit) return this.tooLarge();
    this.append(buf, at, len);
  }

  private append(buf: Buffer, from: number, to: number): Buffer {
    const need = this.pendLen + to - from;
    let p = this.pend;
    if (p === null || p.length < need) {
      const bound = Math.max(need, this.state === S.ChunkSize ? this.chunkLineMax : this.headLimit);
      const grown = Buffer.allocUnsafe(Math.min(bound, Math.max(need, 2 * (p?.length ?? 0), 128)));
      if (p !== null) p.copy(grown, 0, 0, this.pendLen);
      this.pend = p = grown;
    }
    buf.copy(p, this.pendLen, from, to);
    this.pendLen = need;
    return p;
  }

  /** One complete line [s, lf] (lf is the index of its LF) of a head, a chunk size or trailers. */
  private line(b: Buffer, s: number, lf: number): void {
    // Every line ends in CRLF; a bare LF is refused (RFC 9112 section 2.2), never taken as one.
    if (lf === s || b[lf - 1] !== CR) {
      if (this.state === S.ChunkSize) return this.fail('bad-chunk-size', 'chunk-size line not ended by CRLF');
      return this.fail('bare-lf', 'line ended by a bare LF');
    }
    const e = lf - 1;
    if (this.state === S.ChunkSize) return this.chunkSize(b, s, e);
    if (this.state === S.Trailers) {
      if (e > s) return this.field(b, s, e, this.trailers);
      this.state = S.End;
      if (this.trailers.length > 0) {
        const t = this.trailers;
        this.trailers = [];
        this.handler.onTrailers(t);
      }
      return;
    }
    if (!this.startSeen) {
      // Empty lines before a request-line are ignored (RFC 9112 section 2.2).
      if (e === s) {
        this.headBytes = 0;
        return;
      }
      this.startSeen = true;
      return this.responses ? this.statusLine(b, s, e) : this.requestLine(b, s, e);
    }
    if (e > s) return this.field(b, s, e, this.head.fields);
    this.headEnd();
  }

  /** method SP request-target SP HTTP-version (RFC 9112 section 3), single spaces only. */
  private requestLine(b: Buffer, s: number, e: number): void {
    let i = s;
    while (i < e && TOKEN[b[i]] === 1) i++;
    // A lone CR before the request-line (node's parser skips it) is not an empty line: RFC
    // 9112 section 2.2 has a bare CR refused, and protocol detection sends it here for that.
    if (i === s || i >= e || b[i] !== SP) return b[s] === CR ? this.fail('bare-cr', 'bare CR before the request-line') : this.fail('bad-start-line', 'malformed method');
    const h = this.head;
    h.method = methodOf(b, s, i);
    // Methods are case-sensitive (RFC 9110 section 9.1) and every registered one is upper
    // case; an app that upper-cases what it gets (werkzeug, for one) would serve `delete` as
    // DELETE after an AuthorizationPolicy or a route matched it as some other method. Refused,
    // as node's parser and Envoy's (http-parser, Balsa without custom methods) refuse it.
    if (hasLowerCase(b, s, i)) return this.fail('lowercase-method', `method ${JSON.stringify(h.method.slice(0, 32))} has lower-case letters`);
    const t = ++i;
    while (i < e && TARGET[b[i]] === 1) i++;
    // No version at all is HTTP/0.9 (RFC 1945), which node's parser still takes, header fields and all: not spoken here.
    if (i >= e && i > t) return this.fail('bad-version', 'no HTTP-version (HTTP/0.9 is not supported)');
    if (i === t || i >= e || b[i] !== SP) return this.fail('bad-start-line', 'malformed request-target');
    h.target = equals(b, t, i, lastTarget) ? lastTarget : (lastTarget = latin1(b, t, i));
    i++;
    if (e - i !== 8 || !isVersion(b, i)) return this.fail('bad-version', 'not HTTP/1.0 or HTTP/1.1');
    h.minor = b[i + 7] - 0x30;
  }

  /** HTTP-version SP 3DIGIT SP [reason] (RFC 9112 section 4); the SP before an empty reason may be missing. */
  private statusLine(b: Buffer, s: number, e: number): void {
    if (e - s < 12 || !isVersion(b, s) || b[s + 8] !== SP) return this.fail('bad-start-line', 'malformed status line');
    let status = 0;
    for (let i = s + 9; i < s + 12; i++) {
      const d = b[i] - 0x30;
      if (d < 0 || d > 9) return this.fail('bad-start-line', 'malformed status code');
      status = status * 10 + d;
    }
    if (status < 100) return this.fail('bad-start-line', `status ${status}`);
    if (e > s + 12) {
      if (b[s + 12] !== SP) return this.fail('bad-start-line', 'malformed status line');
      for (let i = s + 13; i < e; i++) if (FIELD_VALUE[b[i]] === 0) return this.fail('bad-start-line', 'control character in the reason phrase');
      this.head.reason = equals(b, s + 13, e, lastReason) ? lastReason : (lastReason = latin1(b, s + 13, e));
    }
    this.head.minor = b[s + 7] - 0x30;
    this.head.status = status;
  }

  /** field-name ":" OWS field-value OWS (RFC 9112 section 5), into `out`. */
  private field(b: Buffer, s: number, e: number, out: string[]): void {
    const c0 = b[s];
    if (c0 === SP || c0 === HTAB) return this.fail('obs-fold', 'obsolete line folding');
    if (FIELDS.find(b, s, e)) {
      this.noteSlot();
      return this.keptField(out);
    }
    let i = s;
    let upper = false;
    for (; i < e; i++) {
      const c = b[i];
      if (TOKEN[c] === 0) break;
      if (c <= 0x5a && c >= 0x41) upper = true;
    }
    if (i === e || b[i] !== 0x3a /* : */ || i === s) {
      let j = i;
      while (j < e && (b[j] === SP || b[j] === HTAB)) j++;
      if (i > s && j > i && j < e && b[j] === 0x3a) return this.fail('ws-before-colon', 'whitespace between field name and colon');
      return this.fail(i < e && b[i] === CR ? 'bare-cr' : 'bad-field-name', 'malformed field name');
    }
    const nameEnd = i++;
    while (i < e && (b[i] === SP || b[i] === HTAB)) i++;
    const vs = i;
    let ve = i;
    for (; i < e; i++) {
      const c = b[i];
      if (FIELD_VALUE[c] === 0) return this.fail(c === CR ? 'bare-cr' : 'bad-field-value', c === CR ? 'bare CR in a field' : `control character 0x${c.toString(16)} in a field value`);
      if (c !== SP && c !== HTAB) ve = i + 1;
    }
    if (++this.nFields > this.limits.maxHeaderCount) return this.tooManyFields();
    let name = knownName(b, s, nameEnd);
    if (name === null) {
      const raw = latin1(b, s, nameEnd);
      name = upper ? raw.toLowerCase() : raw;
    }
    const value = ve === vs ? '' : latin1(b, vs, ve);
    FIELDS.keep(b, s, e, vs, name, value);
    this.noteSlot();
    out.push(name, value);
    if (this.state === S.Head) this.framing(name, value);
  }

  /** The line the field cache just gave (find() or at()): counted, taken, its framing noted. */
  private keptField(out: string[]): void {
    if (++this.nFields > this.limits.maxHeaderCount) return this.tooManyFields();
    const name = FIELDS.name();
    const value = FIELDS.value();
    out.push(name, value);
    if (this.state === S.Head) this.framing(name, value);
  }

  /** Where the line just taken is in the field cache: the guess for the next message's line in this place. */
  private noteSlot(): void {
    const i = this.lineIdx++;
    if (i < PREDICTED) this.predict[i] = FIELDS.slot;
  }

  private tooManyFields(): void {
    this.fail(this.state === S.Trailers ? 'trailers-too-large' : 'too-many-fields', `more than ${this.limits.maxHeaderCount} fields (the limit)`);
  }

  /** Remember the fields that decide framing and connection handling. */
  private framing(name: string, value: string): void {
    switch (name.length) {
      case 4:
        if (name === 'host' && !this.responses) {
          // Exactly one Host in a request (RFC 9112 section 3.2): two could route differently.
          if (++this.hosts > 1) return this.fail('multiple-host', 'more than one Host field');
          if (!allIn(value, HOST)) return this.fail('bad-host', 'invalid Host field value');
          this.head.host = value;
        }
        return;
      case 6:
        if (name === 'expect' && value.length === 12 && value.toLowerCase() === '100-continue') this.expect = true;
        return;
      case 7:
        if (name === 'upgrade') this.upgradeField = true;
        return;
      case 10:
        if (name === 'connection') this.connection(value);
        else if (name === 'keep-alive' && this.responses) {
          // An app sends the same value on every response: its timeout is read once.
          if (value !== lastKeepAlive) {
            const m = /(?:^|[,;\s])timeout=(\d{1,9})/i.exec(value);
            lastKeepAlive = value;
            lastKeepAliveMs = m ? Number(m[1]) * 1000 : -1;
          }
          if (lastKeepAliveMs >= 0) this.head.keepAliveTimeoutMs = lastKeepAliveMs;
        }
        return;
      case 14:
        if (name === 'content-length') this.contentLength(value);
        return;
      case 17:
        if (name === 'transfer-encoding') this.te = this.te === null ? value : `${this.te},${value}`;
        return;
    }
  }

  private connection(value: string): void {
    if (value === 'close') {
      this.connClose = true;
      return;
    }
    if (value === 'keep-alive') {
      this.connKeepAlive = true;
      return;
    }
    const v = value.toLowerCase();
    for (const t of v === 'keep-alive' || v === 'close' ? [v] : v.split(',')) {
      const o = t.trim();
      if (o === 'close') this.connClose = true;
      else if (o === 'keep-alive') this.connKeepAlive = true;
      else if (o === 'upgrade') this.connUpgrade = true;
    }
  }

  /** 1*DIGIT, or a list of identical values (RFC 9110 section 8.6); differing values are refused. */
  private contentLength(value: string): void {
    let n = 0;
    let i = 0;
    for (; i < value.length; i++) {
      const d = value.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
    }
    if (i < value.length || i === 0 || i > 15) {
      const parts = value.split(',').map((p) => p.trim());
      if (!parts.every((p) => /^\d{1,15}$/.test(p))) return this.fail('bad-content-length', 'invalid Content-Length');
      if (!parts.every((p) => p === parts[0])) return this.fail('content-length-mismatch', 'differing Content-Length values');
      n = Number(parts[0]);
    }
    if (this.cl >= 0 && this.cl !== n) return this.fail('content-length-mismatch', 'differing Content-Length values');
    this.cl = n;
  }

  /** The empty line: decide the framing (RFC 9112 section 6.3) and report the head. */
  private headEnd(): void {
    const h = this.head;
    h.keepAlive = !this.connClose && (h.minor === 1 || this.connKeepAlive);
    if (this.responses) {
      if (!this.responseFraming(h)) return;
    } else if (!this.requestFraming(h)) return;
    if (h.status >= 100 && h.status < 200 && h.status !== 101) {
      // Interim response: the final one follows on the same connection.
      this.reset();
      this.handler.onHead(h);
      return;
    }
    h.contentLength = h.body === Body.Length ? this.cl : -1;
    this.left = this.cl;
    this.state = h.body === Body.None ? S.End : h.body === Body.Length ? S.Length : h.body === Body.Chunked ? S.ChunkSize : S.UntilClose;
    if (h.body === Body.Chunked) {
      // The trailer section has its own budget.
      this.headBytes = this.nFields = 0;
      this.headLimit = this.limits.maxTrailerBytes ?? this.limits.maxHeadBytes;
    }
    if (h.upgrade) this.upgradeSent = false;
    this.handler.onHead(h);
  }

  private requestFraming(h: H1Head): boolean {
    if (h.minor === 1 && this.hosts === 0) return this.fail('missing-host', 'HTTP/1.1 request without Host'), false;
    if (this.te !== null) {
      // Both framings: the classic smuggling vector (RFC 9112 sections 6.3 item 3, 11.2); refused outright.
      if (this.cl >= 0) return this.fail('cl-and-te', 'both Content-Length and Transfer-Encoding'), false;
      if (h.minor === 0) return this.fail('te-in-http10', 'Transfer-Encoding in an HTTP/1.0 request'), false;
      // `chunked` alone, the value nearly every chunked message has, needs no list of strings.
      if (this.te !== 'chunked') {
        const codings = this.te.toLowerCase().split(',').map((c) => c.trim());
        const last = codings.length - 1;
        if (codings[last] !== 'chunked' || codings.indexOf('chunked') !== last) {
          return this.fail('te-not-chunked', 'Transfer-Encoding without chunked as the only final coding'), false;
        }
        if (last > 0) return this.fail('te-not-implemented', `transfer coding ${JSON.stringify(codings[0].slice(0, 32))}`), false;
      }
      h.body = Body.Chunked;
    } else if (this.cl > 0) h.body = Body.Length;
    h.upgrade = h.method === 'CONNECT' || (this.connUpgrade && this.upgradeField);
    h.expectContinue = this.expect && h.minor === 1;
    return true;
  }

  private responseFraming(h: H1Head): boolean {
    const st = h.status;
    if (st < 200 || st === 204 || st === 304 || this.reqHead) {
      h.upgrade = st === 101;
      return true;
    }
    if (this.reqConnect && st < 300) h.upgrade = true;
    else if (this.te !== null) {
      // A response with both framings: chunked wins, and the connection is not reused (section 6.3 item 3).
      if (h.minor === 1 && (this.te === 'chunked' || lastCoding(this.te) === 'chunked')) h.body = Body.Chunked;
      else h.body = Body.UntilClose;
      if (this.cl >= 0 || h.minor === 0) h.keepAlive = false;
    } else if (this.cl > 0) h.body = Body.Length;
    else if (this.cl < 0) h.body = Body.UntilClose;
    if (h.body === Body.UntilClose) h.keepAlive = false;
    return true;
  }

  /** chunk-size [ chunk-ext ] CRLF (RFC 9112 section 7.1). */
  private chunkSize(b: Buffer, s: number, e: number): void {
    let i = s;
    let size = 0;
    let digits = 0;
    for (; i < e; i++) {
      const v = HEX[b[i]];
      if (v === 255) break;
      if (digits > 0 || v > 0) digits++;
      size = size * 16 + v;
    }
    if (i === s) return this.fail('bad-chunk-size', 'chunk-size is not hex');
    if (digits > MAX_CHUNK_SIZE_DIGITS) return this.fail('bad-chunk-size', 'chunk-size too large');
    if (i < e) {
      if (e - i > this.limits.maxChunkExtBytes) return this.fail('chunk-ext-too-long', `chunk extensions over ${this.limits.maxChunkExtBytes} bytes`);
      if (!validExtensions(b, i, e)) return this.fail('bad-chunk-ext', 'malformed chunk extension');
    }
    if (size === 0) {
      this.state = S.Trailers;
      this.headBytes = 0;
    } else {
      this.left = size;
      this.state = S.ChunkData;
    }
  }
}

function isVersion(b: Buffer, i: number): boolean {
  return b[i] === 0x48 && b[i + 1] === 0x54 && b[i + 2] === 0x54 && b[i + 3] === 0x50 && b[i + 4] === 0x2f && b[i + 5] === 0x31 && b[i + 6] === 0x2e && (b[i + 7] === 0x31 || b[i + 7] === 0x30);
}

function hasLowerCase(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i] >= 0x61 && b[i] <= 0x7a) return true;
  return false;
}

/** The common methods as constants: no string made per request for them. */
function methodOf(b: Buffer, s: number, e: number): string {
  const n = e - s;
  const c = b[s];
  if (n === 3 && c === 0x47 && b[s + 1] === 0x45 && b[s + 2] === 0x54) return 'GET';
  if (n === 4 && c === 0x50 && b[s + 1] === 0x4f && b[s + 2] === 0x53 && b[s + 3] === 0x54) return 'POST';
  return latin1(b, s, e);
}

/** The last transfer coding of a Transfer-Encoding list, lower case. */
function lastCoding(te: string): string {
  const codings = te.toLowerCase().split(',');
  return codings[codings.length - 1].trim();
}

/** Whether b[s, e) holds exactly the characters of `str` (latin1). */
function equals(b: Buffer, s: number, e: number, str: string): boolean {
  if (e - s !== str.length) return false;
  for (let i = 0; i < str.length; i++) if (b[s + i] !== str.charCodeAt(i)) return false;
  return true;
}

/**
 * Common field names by length, lower case: matched case-insensitively against the bytes,
 * so the usual names cost neither a string from the buffer nor a toLowerCase() (those two
 * were a quarter of the parse time in a profile).
 */
const KNOWN: string[][] = [];
for (const n of [
  'host', 'accept', 'accept-encoding', 'accept-language', 'authorization', 'cache-control', 'connection', 'content-length',
  'content-type', 'cookie', 'date', 'expect', 'keep-alive', 'origin', 'referer', 'te', 'traceparent', 'tracestate',
  'transfer-encoding', 'upgrade', 'user-agent', 'x-forwarded-for', 'x-forwarded-proto', 'x-request-id', 'server', 'etag',
  'last-modified', 'location', 'set-cookie', 'vary', 'grpc-status', 'grpc-message', 'trailer', 'via', 'if-none-match',
  'x-forwarded-client-cert', 'wren-orig-proto', 'wren-target-port', 'content-encoding',
]) (KNOWN[n.length] ??= []).push(n);

function knownName(b: Buffer, s: number, e: number): string | null {
  const list = KNOWN[e - s];
  if (list === undefined) return null;
  next: for (let k = 0; k < list.length; k++) {
    const n = list[k];
    for (let i = 0; i < n.length; i++) {
      // | 0x20 lower-cases a letter; the known names hold only a-z and '-', which no other
      // token byte reaches this way (the bytes were checked as a token already).
      if ((b[s + i] | 0x20) !== n.charCodeAt(i)) continue next;
    }
    return n;
  }
  return null;
}

const isWs = (c: number) => c === SP || c === HTAB;

/** *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val = token / quoted-string (RFC 9112 section 7.1.1). */
function validExtensions(b: Buffer, i: number, e: number): boolean {
  while (i < e) {
    while (i < e && isWs(b[i])) i++;
    if (i >= e || b[i] !== 0x3b /* ; */) return false;
    i++;
    while (i < e && isWs(b[i])) i++;
    const n = i;
    while (i < e && TOKEN[b[i]] === 1) i++;
    if (i === n) return false;
    let j = i;
    while (j < e && isWs(b[j])) j++;
    if (j < e && b[j] === 0x3d /* = */) {
      i = j + 1;
      while (i < e && isWs(b[i])) i++;
      if (i < e && b[i] === 0x22 /* " */) {
        i++;
        for (;;) {
          if (i >= e) return false;
          const c = b[i++];
          if (c === 0x22) break;
          if (c === 0x5c /* \ */) {
            if (i >= e || FIELD_VALUE[b[i]] === 0) return false;
            i++;
          } else if (QDTEXT[c] === 0) return false;
        }
      } else {
        const v = i;
        while (i < e && TOKEN[b[i]] === 1) i++;
        if (i === v) return false;
      }
    } else if (j === e && j > i) return false; // trailing whitespace
  }
  return true;
}
