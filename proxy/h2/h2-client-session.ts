import { H2FrameReader, type H2FrameSink } from './frame-reader.js';
import type { Socket } from 'node:net';
import { inTurn } from '../../common/deferred.js';
import { setDirectReads, setSharedReads } from '../net/direct-reads.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Headers } from '../http/headers.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import { abortReason } from '../layers/race-signal.js';
import { flushBlocked } from './body-sender.js';
import { DEFAULT_MAX_FRAME, DEFAULT_WINDOW, FLAG, FRAME, H2_ERROR, MAX_EMPTY_DATA, MAX_WINDOW, PREFACE, SETTING, emptyDataFrame, frameHeader, settingsFrame, stripPadding, wordsFrame } from './frames.js';
import { FrameWriter } from './frame-writer.js';
import { applyInitialWindow } from './initial-window.js';
import { H2ClientStream, type StreamHost } from './h2-client-stream.js';
import { HpackDecoder } from './hpack-decoder.js';
import { IdTable } from '../../common/id-table.js';
import type { LimitName } from '../http/h2-session-guard.js';

export interface H2ClientSessionOptions {
  /** Receive window per stream and for the connection (limits.http2Initial*WindowBytes). */
  readonly streamWindowBytes: number;
  readonly connectionWindowBytes: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise, and the bound on what we decode. */
  readonly maxHeaderListBytes: number;
  /** Streams that may end with a reset before the session is retired (0: never; http/session-resets.ts). */
  readonly resetBudget: number;
  readonly onResetBudget?: () => void;
  /** The session takes no new stream (GOAWAY, reset budget, connection gone): the pool opens another. */
  readonly onRetired: (s: H2ClientSession) => void;
  /**
   * A flood guard ended the session, named as the frame-level server's
   * (h2-server-session.ts): `h2-unread-control-frames` (MAX_UNREAD_ACKS),
   * `h2-continuation-flood` (a response header block in too many CONTINUATION frames, or
   * too many bytes, which only CONTINUATIONs can carry), `h2-empty-frames-flood` (empty
   * DATA frames in a row, MAX_EMPTY_DATA); and per stream `interim-responses` (more 1xx
   * before a final response than MAX_INTERIM_RESPONSES: that stream alone fails). Counted whether or not a request
   * was in flight (wren_limit_exceeded_total{direction="inbound"}).
   */
  readonly onLimit?: (limit: LimitName) => void;
}

/**
 * Bytes the socket may hold that the app has not read before request bodies wait for its
 * 'drain': the app's windows bound what it may be sent, not what it has read, so an app
 * that opens 2^31-1 of window and stops reading would otherwise have every upload buffered here.
 */
const SOCKET_BACKLOG_BYTES = 256 * 1024;

/**
 * PING and SETTINGS ACKs written and not yet taken by the kernel before the app's PINGs and
 * SETTINGS count as a flood: nghttp2's bound on queued ACKs (max_outbound_ack, 1000), what
 * an app behind node:http2 meets too. An app that sends them and does not read our answers
 * would otherwise have us buffer 17 bytes per 17-byte PING without end.
 */
const MAX_UNREAD_ACKS = 1000;
/** Entries in one SETTINGS frame (node:http2's maxSettings; the frame-level server's MAX_SETTINGS). */
const MAX_SETTINGS = 32;

/** Errors of streams the app never processed (RFC 9113 section 8.7): safe to send again. */
const REFUSED = new WeakSet<object>();

export function wasRefusedByApp(err: unknown): boolean {
  return typeof err === 'object' && err !== null && REFUSED.has(err);
}

/**
 * An HTTP/2 client connection (RFC 9113) written at the frame level, for the inbound's
 * delivery to its app: node:http2 keeps each closed Http2Stream alive from its native side
 * through scavenges, which made a quarter of a gRPC sidecar's CPU garbage collection
 * (docs/benchmarks.md). Here a request is one small object (H2ClientStream) and its body;
 * frames a turn writes leave in one write (the socket is corked until the next tick).
 *
 * What it does: the preface and SETTINGS (no push; our windows and header list size),
 * HPACK both ways (hpack-*.ts; we encode without the dynamic table), flow control in both
 * directions per stream and per connection, CONTINUATION, PING answers, GOAWAY (streams
 * above its last id fail as refused), RST_STREAM both ways, a reset budget. What a
 * client never needs is refused as the RFC says: PUSH_PROMISE (we disable push) is a
 * connection error.
 */
export class H2ClientSession implements StreamHost, H2FrameSink {
  /** Open streams by id: an IdTable, not a Map, which would keep every stream it ever held for the scavenger (common/id-table.ts). */
  private readonly streams = new IdTable<H2ClientStream>();
  private readonly waiting: H2ClientStream[] = [];
  private readonly blockedStreams = new Set<H2ClientStream>();
  /** Streams whose request body waits for the socket to drain (congested()). */
  private readonly drainWaiting = new Set<H2ClientStream>();
  /** Frames out, corked until the next tick (frame-writer.ts says why). */
  readonly out: FrameWriter;
  private readonly decoder: HpackDecoder;
  private nextId = 1;
  /** Frames in, whole (frame-reader.ts). */
  private readonly reader = new H2FrameReader(this, DEFAULT_MAX_FRAME);
  /** A header block being continued (CONTINUATION): its stream, flags and fragments. */
  private hdrStream = 0;
  private hdrEnd = false;
  private hdrParts: Buffer[] = [];
  /** Empty DATA frames without END_STREAM since the last frame with data or a header block fragment (MAX_EMPTY_DATA). */
  private emptyData = 0;
  private resetsLeft: number;
  private pingSent = false;
  /** ACKs (PING, SETTINGS) not yet written to the kernel (MAX_UNREAD_ACKS). */
  private acksOut = 0;
  private readonly ackWritten = (): void => {
    this.acksOut--;
  };
  private onPong: (() => void) | null = null;
  sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private unacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = DEFAULT_MAX_FRAME;
  /** The peer's SETTINGS_HEADER_TABLE_SIZE (section 6.5.2: 4096 until it names one): our encoder's table stays within it. */
  private peerHeaderTable = 4096;
  private peerMaxStreams = Infinity;
  retired = false;
  destroyed = false;

  constructor(
    readonly socket: Socket,
    private readonly o: H2ClientSessionOptions,
  ) {
    this.out = new FrameWriter(socket, this, 'tick');
    this.decoder = new HpackDecoder(4096, { maxHeaderListBytes: o.maxHeaderListBytes });
    this.recvWindow = o.connectionWindowBytes;
    this.resetsLeft = o.resetBudget > 0 ? o.resetBudget : Infinity;
    // Each read straight to the frame reader (net/direct-reads.ts), its deferred steps run as it returns (common/deferred.ts).
    const read = (c: Buffer): void => inTurn(this.onData, this, c);
    socket.on('data', read);
    // Into the thread's shared read buffer: a frame spanning reads is gathered, and what the
    // session keeps of a read's own frames copied (frame-reader.ts).
    this.reader.viewReads = setSharedReads(socket, read);
    if (!this.reader.viewReads) setDirectReads(socket, read);
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => this.destroy(new ProxyError('UPSTREAM_RESET', 'the app closed the connection')));
    this.write(PREFACE);
    this.write(
      settingsFrame([
        [SETTING.ENABLE_PUSH, 0],
        [SETTING.INITIAL_WINDOW_SIZE, o.streamWindowBytes],
        [SETTING.MAX_HEADER_LIST_SIZE, o.maxHeaderListBytes],
      ]),
    );
    if (o.connectionWindowBytes > DEFAULT_WINDOW) this.out.word(FRAME.WINDOW_UPDATE, 0, o.connectionWindowBytes - DEFAULT_WINDOW);
  }

  /** Streams open or waiting for a slot. */
  get active(): number {
    return this.streams.size + this.waiting.length;
  }

  /** Sends `req` (head `headers`) as a new stream; resolves with the response head. */
  request(req: ProxyRequest, headers: Headers): Promise<ProxyResponse> {
    const st = new H2ClientStream(this, req, headers);
    return new Promise<ProxyResponse>((resolve, reject) => {
      st.resolve = resolve;
      st.reject = reject;
      if (this.retired || this.destroyed) return reject(this.markRefused(new ProxyError('UPSTREAM_RESET', 'the session to the app takes no new stream')));
      if (req.signal.aborted) return reject(abortReason(req.signal));
      req.signal.addEventListener('abort', st.onAbort);
      if (this.streams.size >= this.peerMaxStreams) this.waiting.push(st);
      else this.open(st);
    });
  }

  private open(st: H2ClientStream): void {
    const id = this.nextId;
    this.nextId += 2;
    // Stream ids cannot be reused (RFC 9113 section 5.1.1): near the end, a new session.
    if (this.nextId > MAX_WINDOW - 2) this.retire();
    st.id = id;
    st.sendWindow = this.peerInitialWindow;
    st.recvWindow = this.o.streamWindowBytes;
    this.streams.set(id, st);
    const r = st.req;
    this.out.headers(id, [':method', r.method, ':scheme', r.scheme || 'http', ':authority', r.authority, ':path', r.path], st.headers, r.body === null);
    if (r.body === null) st.localEnded = true;
    else st.sendBody(r.body);
  }

  reset(id: number, code: number): void {
    this.out.reset(id, code);
  }

  /** A stream is short of window: flushed when WINDOW_UPDATE gives some. */
  blocked(st: H2ClientStream): void {
    this.blockedStreams.add(st);
  }

  /** The socket holds more than the app has read: `st`'s request body waits for 'drain'. */
  congested(st: H2ClientStream): boolean {
    const sock = this.socket;
    // writableNeedDrain: the write that went past the high-water mark returned false, so 'drain' follows.
    if (!sock.writableNeedDrain || sock.writableLength < SOCKET_BACKLOG_BYTES) return false;
    if (this.drainWaiting.size === 0) sock.once('drain', () => this.drained());
    this.drainWaiting.add(st);
    return true;
  }

  private drained(): void {
    const all = [...this.drainWaiting];
    this.drainWaiting.clear();
    for (const st of all) st.resumeBody();
  }

  /** The response body's reader took data: give the stream (and connection) window back. */
  credit(st: H2ClientStream): void {
    if (st.unacked === 0 || st.closed || st.remoteEnded) return;
    this.out.word(FRAME.WINDOW_UPDATE, st.id, st.unacked);
    st.recvWindow += st.unacked;
    st.unacked = 0;
  }

  markRefused(err: ProxyError): ProxyError {
    REFUSED.add(err);
    return err;
  }

  chargeReset(): void {
    if (--this.resetsLeft === 0) {
      this.o.onResetBudget?.();
      this.retire();
    }
  }

  /** A stream is done: its slot goes to the next waiting one; a retired session ends with its last stream. */
  closed(st: H2ClientStream): void {
    if (st.id === 0) {
      // Cancelled while waiting: it leaves the queue now, not when a slot frees (maybe never).
      const i = this.waiting.indexOf(st);
      if (i >= 0) this.waiting.splice(i, 1);
      return;
    }
    if (this.streams.get(st.id) === st) this.streams.delete(st.id);
    this.blockedStreams.delete(st);
    this.drainWaiting.delete(st);
    this.openWaiting();
    if (this.retired && this.streams.size === 0) this.end();
  }

  /** Requests waiting for a slot take the free ones (a stream closed, or the app raised its limit). */
  private openWaiting(): void {
    while (this.waiting.length > 0 && this.streams.size < this.peerMaxStreams && !this.retired) {
      const next = this.waiting.shift()!;
      if (!next.closed) this.open(next);
    }
  }

  /** No new stream here (GOAWAY sent or received, reset budget, ids running out); closes when the last one ends. */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.o.onRetired(this);
    for (const st of this.waiting.splice(0)) st.fail(this.markRefused(new ProxyError('UPSTREAM_RESET', 'the session to the app was retired')));
    if (this.streams.size === 0) this.end();
  }

  /** HTTP/2 PING (keepalive); `onPong` runs when the ACK arrives. False when one is already out. */
  ping(onPong: () => void): boolean {
    if (this.pingSent || this.destroyed) return false;
    this.pingSent = true;
    this.onPong = onPong;
    const b = Buffer.alloc(17);
    b.writeUIntBE(8, 0, 3);
    b[3] = FRAME.PING;
    this.write(b);
    return true;
  }

  private end(): void {
    if (this.destroyed) return;
    this.write(wordsFrame(FRAME.GOAWAY, 0, 0, 0, H2_ERROR.NO_ERROR));
    this.flush();
    // Closed once the GOAWAY is written, as node:http2's close(): end() alone would leave the
    // socket half-open for as long as the app keeps its side open, a descriptor per retired session.
    this.socket.destroySoon();
  }

  destroy(err?: unknown): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (!this.retired) {
      this.retired = true;
      this.o.onRetired(this);
    }
    const e = err instanceof ProxyError ? err : toProxyError(err ?? new Error('session destroyed'));
    // Requests still waiting for a slot never reached the app: they may go again on the
    // next session (RFC 9113 section 8.7), as streams above a GOAWAY's last id do. Sent ones
    // fail with the session's error: the app may have acted on them.
    for (const st of this.waiting.splice(0)) st.fail(this.markRefused(new ProxyError('UPSTREAM_RESET', 'the session to the app closed before the request was sent', { cause: e })));
    for (const st of this.streams.values()) st.fail(e);
    this.streams.clear();
    this.socket.destroy();
  }

  /** A connection error (RFC 9113 section 5.4.1): GOAWAY with the code, then the connection is closed. */
  private connectionError(code: number, why: string): void {
    if (this.destroyed) return;
    // Last stream id 0: a client processes no stream the server initiated (section 6.8).
    this.write(wordsFrame(FRAME.GOAWAY, 0, 0, 0, code));
    this.flush();
    this.destroy(new ProxyError('UPSTREAM_PROTOCOL', `HTTP/2 connection error from the app: ${why}`));
  }

  limitExceeded(limit: LimitName): void {
    this.o.onLimit?.(limit);
  }

  /** A flood guard fired: counted, then GOAWAY ENHANCE_YOUR_CALM (a connection error), as the frame-level server's calm(). */
  private calm(limit: LimitName, why: string): void {
    if (this.destroyed) return;
    this.o.onLimit?.(limit);
    this.connectionError(H2_ERROR.ENHANCE_YOUR_CALM, why);
  }

  private write(b: Buffer, done?: () => void): void {
    this.out.write(b, done);
  }

  /** An ACK the app asked for (PING, SETTINGS); false when too many are unread (the session is ending). */
  private ack(head: Buffer, payload?: Buffer): boolean {
    if (++this.acksOut > MAX_UNREAD_ACKS) {
      this.calm('h2-unread-control-frames', `over ${MAX_UNREAD_ACKS} PING or SETTINGS ACKs unread`);
      return false;
    }
    if (payload === undefined) this.write(head, this.ackWritten);
    else {
      this.write(head);
      this.write(payload, this.ackWritten);
    }
    return true;
  }

  flush(): void {
    this.out.flush();
  }

  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
  }

  // H2FrameSink
  onFrame(type: number, flags: number, id: number, payload: Buffer): boolean {
    this.frame(type, flags, id, payload);
    return !this.destroyed;
  }

  onFrameTooLarge(length: number): void {
    // We never raise SETTINGS_MAX_FRAME_SIZE (section 4.2).
    this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, `a frame of ${length} bytes`);
  }

  private frame(type: number, flags: number, id: number, p: Buffer): void {
    if (this.hdrStream !== 0 && (type !== FRAME.CONTINUATION || id !== this.hdrStream)) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'a header block was interrupted (section 6.10)');
    switch (type) {
      case FRAME.DATA:
        return this.onDataFrame(flags, id, p);
      case FRAME.HEADERS: {
        if (id === 0 || (id & 1) === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'HEADERS on a stream we did not open');
        let b = stripPadding(flags, p);
        if (b === null) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'invalid padding');
        if ((flags & FLAG.PRIORITY) !== 0) {
          if (b.length < 5) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, 'short HEADERS priority');
          b = b.subarray(5);
        }
        return this.headerFragment(id, (flags & FLAG.END_STREAM) !== 0, (flags & FLAG.END_HEADERS) !== 0, b);
      }
      case FRAME.CONTINUATION:
        if (this.hdrStream === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
        return this.headerFragment(id, this.hdrEnd, (flags & FLAG.END_HEADERS) !== 0, p);
      case FRAME.RST_STREAM:
        if (p.length !== 4) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, 'RST_STREAM length');
        if (id === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        return this.onResetFrame(id, p.readUInt32BE(0));
      case FRAME.SETTINGS:
        return this.onSettings(flags, id, p);
      case FRAME.PUSH_PROMISE:
        return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'PUSH_PROMISE with push disabled');
      case FRAME.PING:
        if (p.length !== 8 || id !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'malformed PING');
        if ((flags & FLAG.ACK) !== 0) {
          this.pingSent = false;
          const f = this.onPong;
          this.onPong = null;
          f?.();
        } else {
          this.ack(frameHeader(8, FRAME.PING, FLAG.ACK, 0), Buffer.from(p));
        }
        return;
      case FRAME.GOAWAY: {
        if (p.length < 8 || id !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'malformed GOAWAY');
        const last = p.readUInt32BE(0) & MAX_WINDOW;
        this.retired = true;
        this.o.onRetired(this);
        for (const st of this.streams.values()) if (st.id > last) st.fail(this.markRefused(new ProxyError('UPSTREAM_RESET', 'stream refused (GOAWAY)')));
        for (const st of this.waiting.splice(0)) st.fail(this.markRefused(new ProxyError('UPSTREAM_RESET', 'stream refused (GOAWAY)')));
        if (this.streams.size === 0) this.end();
        return;
      }
      case FRAME.WINDOW_UPDATE:
        return this.onWindowUpdate(id, p);
      default:
        // PRIORITY and unknown types are ignored (sections 5.5, 6.3).
        return;
    }
  }

  /**
   * A stream we never opened: above every id we opened, or even (a server opens those only
   * by PUSH_PROMISE, and we disable push). RFC 9113 section 5.1: a frame other than HEADERS or
   * PRIORITY on an idle stream is a connection error PROTOCOL_ERROR. Streams we opened and
   * closed are not idle: the app may send on them until it learns of the close (section 5.1, closed).
   */
  private idle(id: number): boolean {
    return id >= this.nextId || (id & 1) === 0;
  }

  private onResetFrame(id: number, code: number): void {
    const st = this.streams.get(id);
    if (st !== undefined) return st.onReset(code);
    // Section 6.4: RST_STREAM on an idle stream is a connection error.
    if (this.idle(id)) this.connectionError(H2_ERROR.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
  }

  private onDataFrame(flags: number, id: number, p: Buffer): void {
    if (id === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'DATA on stream 0');
    // Flow control counts the whole payload, padding included (section 6.9.1).
    const len = p.length;
    if (emptyDataFrame(flags, p)) {
      if (++this.emptyData > MAX_EMPTY_DATA) return this.calm('h2-empty-frames-flood', 'empty DATA frames in a row (CVE-2019-9518)');
    } else this.emptyData = 0;
    this.recvWindow -= len;
    if (this.recvWindow < 0) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'the connection window was exceeded');
    this.unacked += len;
    if (this.unacked >= this.o.connectionWindowBytes >>> 1) {
      this.out.word(FRAME.WINDOW_UPDATE, 0, this.unacked);
      this.recvWindow += this.unacked;
      this.unacked = 0;
    }
    const st = this.streams.get(id);
    if (st === undefined) {
      if (this.idle(id)) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, `DATA on idle stream ${id}`);
      return; // a stream we closed (reset): its window is the connection's only
    }
    const data = stripPadding(flags, p);
    if (data === null) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'invalid padding');
    st.recvWindow -= len;
    if (st.recvWindow < 0) {
      this.reset(id, H2_ERROR.FLOW_CONTROL_ERROR);
      return st.fail(new ProxyError('UPSTREAM_PROTOCOL', 'the app exceeded the stream window'));
    }
    st.unacked += len;
    st.onData(this.reader.kept(data), (flags & FLAG.END_STREAM) !== 0);
    // Given back at once while the reader keeps up; else when it reads (H2ResponseBody._read).
    if (!st.closed && st.body !== null && st.body.readableLength < st.body.readableHighWaterMark && st.unacked >= this.o.streamWindowBytes >>> 2) this.credit(st);
  }

  private headerFragment(id: number, endStream: boolean, endHeaders: boolean, b: Buffer): void {
    if (b.length > 0) this.emptyData = 0;
    // The frames of a block are what is counted (CVE-2024-27316: empty CONTINUATIONs add no
    // bytes but cost a fragment and a turn each). nghttp2 takes 8 (max_continuations); we
    // take as many as full frames of 2 x the largest list we accept need, and 8 more, which
    // bounds the block's octets too. Within that a block of any size is decoded (the dynamic
    // table must stay in step) and an oversize list is its stream's error (RFC 9113 section
    // 10.5.1), as nghttp2 takes it: a bound on octets of its own ended the session, every
    // call on it, for one response with too many fields.
    if (this.hdrParts.length > 8 + Math.ceil((2 * this.o.maxHeaderListBytes + DEFAULT_MAX_FRAME) / DEFAULT_MAX_FRAME)) return this.calm('h2-continuation-flood', 'too many CONTINUATION frames');
    if (!endHeaders) {
      this.hdrStream = id;
      this.hdrEnd = endStream;
      this.hdrParts.push(this.reader.kept(b));
      return;
    }
    const block = this.hdrParts.length === 0 ? b : Buffer.concat([...this.hdrParts, b]);
    this.hdrStream = 0;
    this.hdrParts = [];
    // Decoded whatever the stream: the dynamic table must stay in step (RFC 7541 section 2.2).
    const fields = this.decoder.decode(block);
    if (!Array.isArray(fields)) {
      if (fields.code !== 'HEADER_LIST_TOO_LARGE') return this.connectionError(H2_ERROR.COMPRESSION_ERROR, fields.message);
      const st = this.streams.get(id);
      if (st !== undefined) {
        this.reset(id, H2_ERROR.PROTOCOL_ERROR);
        st.fail(new ProxyError('UPSTREAM_PROTOCOL', `response headers over ${this.o.maxHeaderListBytes} bytes`));
      }
      return;
    }
    const st = this.streams.get(id);
    if (st === undefined) {
      if (id >= this.nextId) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'HEADERS on an idle stream');
      return;
    }
    st.onHeaders(fields, endStream);
  }

  private onSettings(flags: number, id: number, p: Buffer): void {
    if (id !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & FLAG.ACK) !== 0) {
      if (p.length !== 0) this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (p.length % 6 !== 0) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, 'SETTINGS length');
    // As the frame-level server's guard: each SETTINGS_INITIAL_WINDOW_SIZE walks every open
    // stream, so a 16 KiB frame of 2730 of them against many streams is millions of updates
    // for one read. node:http2 ends a connection whose SETTINGS has more than 32 entries.
    if (p.length > 6 * MAX_SETTINGS) return this.calm('h2-settings-flood', `a SETTINGS frame of ${p.length / 6} entries (at most ${MAX_SETTINGS})`);
    // SETTINGS_INITIAL_WINDOW_SIZE: the last value and the highest, for one walk (initial-window.ts).
    let windowTo = -1;
    let windowPeak = -1;
    for (let i = 0; i < p.length; i += 6) {
      const k = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (k === SETTING.INITIAL_WINDOW_SIZE) {
        if (v > MAX_WINDOW) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        windowTo = v;
        if (v > windowPeak) windowPeak = v;
      } else if (k === SETTING.MAX_FRAME_SIZE) {
        if (v < DEFAULT_MAX_FRAME || v > 0xffffff) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = v;
      } else if (k === SETTING.MAX_CONCURRENT_STREAMS) this.peerMaxStreams = v;
      // Only a client may enable push; from a server, 1 is a connection error too (RFC 9113 section 6.5.2).
      else if (k === SETTING.ENABLE_PUSH && v !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH from a server');
      else if (k === SETTING.HEADER_TABLE_SIZE) this.peerHeaderTable = v;
    }
    if (windowTo >= 0) {
      const from = this.peerInitialWindow;
      this.peerInitialWindow = windowTo;
      if (!applyInitialWindow(this.streams.values(), from, windowTo, windowPeak))
        return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE took a stream window above 2^31-1');
    }
    // The encoder signals a change at the start of its next block (RFC 7541 section 4.2), which goes after this ACK.
    this.out.tableLimit(this.peerHeaderTable);
    if (!this.ack(frameHeader(0, FRAME.SETTINGS, FLAG.ACK, 0))) return;
    if (this.blockedStreams.size > 0) this.unblock();
    // A raised SETTINGS_MAX_CONCURRENT_STREAMS (an app may start at 0, RFC 9113 section 6.5.2)
    // frees slots now: waiting for a stream to close would hang them when none is open.
    if (this.waiting.length > 0) this.openWaiting();
  }

  private onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
    const inc = p.readUInt32BE(0) & MAX_WINDOW;
    if (id === 0) {
      if (inc === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      if (this.blockedStreams.size > 0) this.unblock();
      return;
    }
    const st = this.streams.get(id);
    if (st === undefined) {
      // Section 6.9: WINDOW_UPDATE on a closed stream is allowed (the app sent it before it saw our END_STREAM or RST_STREAM); on an idle one it is a connection error.
      if (this.idle(id)) this.connectionError(H2_ERROR.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${id}`);
      return;
    }
    if (inc === 0 || st.sendWindow + inc > MAX_WINDOW) {
      this.reset(id, inc === 0 ? H2_ERROR.PROTOCOL_ERROR : H2_ERROR.FLOW_CONTROL_ERROR);
      return st.fail(new ProxyError('UPSTREAM_PROTOCOL', 'invalid WINDOW_UPDATE'));
    }
    st.sendWindow += inc;
    if (this.blockedStreams.delete(st)) st.flush();
  }

  private unblock(): void {
    flushBlocked(this, this.blockedStreams);
  }
}
