import type { Socket } from 'node:net';
import { inTurn } from '../../common/deferred.js';
import { setSharedReads } from '../net/direct-reads.js';
import type { HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { cleanTrailers } from '../http/headers.js';
import { fieldsToHeaders } from '../h1/head.js';
import { HOST, TARGET, allIn } from '../h1/chars.js';
import { CONNECTION_SPECIFIC, badField, connectionField, teTrailers, validFieldName, validFieldValue, validMethod } from './field-check.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { Clock, Timer } from '../../common/clock.js';
import type { LimitName } from '../http/h2-session-guard.js';
import { flushBlocked } from './body-sender.js';
import { H2FrameReader, type H2FrameSink } from './frame-reader.js';
import { DEFAULT_MAX_FRAME, DEFAULT_WINDOW, FLAG, FRAME, H2_ERROR, MAX_EMPTY_DATA, MAX_WINDOW, PREFACE, SETTING, emptyDataFrame, frameHeader, settingsFrame, stripPadding, wordsFrame } from './frames.js';
import { FrameWriter } from './frame-writer.js';
import { applyInitialWindow } from './initial-window.js';
import { H2RequestBody, H2ServerStream, STREAM_REF, requestTrailers, type ServerStreamHost } from './h2-server-stream.js';
import { HpackDecoder } from './hpack-decoder.js';
import { IdTable } from '../../common/id-table.js';

export interface H2ServerSessionOptions {
  readonly service: HttpService;
  readonly clock: Clock;
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise; streams beyond it are refused (REFUSED_STREAM). */
  readonly maxConcurrentStreams: number;
  /** Receive window per stream and for the connection (limits.http2Initial*WindowBytes). */
  readonly streamWindowBytes: number;
  readonly connectionWindowBytes: number;
  /** Header list limit answered with a 431 (RFC 9113 section 6.5.2 sizes); the advertised SETTINGS_MAX_HEADER_LIST_SIZE is `hardCapBytes`. */
  readonly maxHeaderBytes: number;
  readonly hardCapBytes: number;
  /** The first stream, and any header block once begun, must arrive within this (0: off). */
  readonly headersTimeoutMs: number;
  /** A connection without open streams for this long is closed (0: off). */
  readonly idleTimeoutMs: number;
  /** A stream on which nothing moves for this long is reset with CANCEL (0: off). */
  readonly streamIdleTimeoutMs: number;
  /** Rapid-reset budget (CVE-2023-44487), as http/h2-session-guard.ts; null: none. */
  readonly prematureResets: { readonly totalStreamCount: number; readonly minStreamLifetimeMs: number } | null;
  readonly onLimit: (limit: LimitName) => void;
  /**
   * A request refused here before the service sees it: the 431 above maxHeaderBytes (or the
   * hard cap), a plain CONNECT, a malformed head (its stream reset PROTOCOL_ERROR, RFC 9113
   * section 8.1.1), with the connection's client and original destination (`status`: what
   * the client got, 0 for a reset). Counted and logged by the listener as the HTTP/1.1
   * server's client errors are (wren_proxy_errors_total{code}, AccessLog.refused()).
   */
  readonly onClientError?: (err: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst'], status: number) => void;
  /** Where the connection's requests came from and were going (shared by every request, read only). */
  readonly source: ProxyRequest['source'];
  readonly origDst: ProxyRequest['origDst'];
}

/** The most fields a request may have (node:http2's maxHeaderListPairs on the outbound). */
const MAX_FIELDS = 512;
/** Entries a SETTINGS frame may carry (node:http2's maxSettings default). */
const MAX_SETTINGS = 32;
/** CONTINUATION frames a header block may take (nghttp2's max_continuations, node:http2's limit). */
const MAX_CONTINUATIONS = 8;
/**
 * Frames we write in answer to the client's (PING and SETTINGS ACKs, RST_STREAMs) while it
 * has not read the ones before (our write buffer never emptied meanwhile): more is a flood
 * (CVE-2019-9512, CVE-2019-9515), and the connection ends, as nghttp2's max_outbound_ack.
 */
const MAX_OWED = 1000;
/**
 * Response bytes waiting in our socket's buffer above which response bodies pause, and the
 * client's frames stop being read, until it drains.
 */
const MAX_BUFFERED = 1 << 20;

/**
 * An HTTP/2 server connection (RFC 9113) written at the frame level, for the outbound
 * listener's h2c from the local app: node:http2 keeps each closed Http2Stream alive from
 * its native side through scavenges (docs/benchmarks.md), so here a request is one small
 * object (H2ServerStream), its ProxyRequest and body. Frames are written corked: those a
 * read causes leave at its end, the others at the loop's check phase (write()), so a
 * response usually leaves in one write.
 *
 * What it does: the preface check, SETTINGS (our concurrent streams, windows, header list
 * size), HPACK both ways (we encode without the dynamic table), request validation
 * (section 8.3.1; a malformed request is a stream error PROTOCOL_ERROR), stream states
 * (section 5.1), flow control both ways, CONTINUATION, PING, GOAWAY when draining,
 * RST_STREAM both ways. And what http/h2-session-guard.ts adds to node:http2, with the
 * same limits and metrics: the headers timeout (first stream, and any open header block),
 * the idle connection and stream idle timeouts, the premature-reset budget (GOAWAY
 * ENHANCE_YOUR_CALM), the 431 above maxHeaderBytes, REFUSED_STREAM above the concurrent
 * streams. CONNECT is refused (CONNECT_NOT_SUPPORTED), as the outbound does not tunnel.
 * And nghttp2's flood limits, with node:http2's defaults (MAX_OWED, MAX_CONTINUATIONS,
 * MAX_SETTINGS), and its socket backpressure (MAX_BUFFERED): the app is untrusted.
 * proxy/h2/h2-server-adversary.test.ts compares our answers with node:http2's.
 */
export class H2ServerSession implements ServerStreamHost, H2FrameSink {
  /** Open streams by id: an IdTable, not a Map, which would keep every stream it ever held for the scavenger (common/id-table.ts). */
  private readonly streams = new IdTable<H2ServerStream>();
  private readonly blockedStreams = new Set<H2ServerStream>();
  /** Streams whose head arrived in the read being processed: handed to the service at its end. */
  private readonly ready: H2ServerStream[] = [];
  /** Frames out, corked until the end of a read or the check phase (frame-writer.ts says why). */
  readonly out: FrameWriter;
  private readonly decoder: HpackDecoder;
  /** Preface bytes still to be checked; then the first frame must be SETTINGS (section 3.4). */
  private prefaceLeft = PREFACE.length;
  private settingsSeen = false;
  /** Frames in, whole (frame-reader.ts). */
  private readonly reader = new H2FrameReader(this, DEFAULT_MAX_FRAME);
  private hdrStream = 0;
  private hdrEnd = false;
  private hdrParts: Buffer[] = [];
  /** CONTINUATION frames in the open header block. */
  private hdrFrames = 0;
  /** Empty DATA frames without END_STREAM since the last frame with data or a header block fragment (MAX_EMPTY_DATA). */
  private emptyData = 0;
  /** Highest stream id the client has opened (section 5.1.1). */
  private lastClientId = 0;
  sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private unacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = DEFAULT_MAX_FRAME;
  /** The peer's SETTINGS_HEADER_TABLE_SIZE (section 6.5.2: 4096 until it names one): our encoder's table stays within it. */
  private peerHeaderTable = 4096;
  /** Streams closed so far, and how many of them were reset before our response ended, soon after opening. */
  private closedCount = 0;
  private premature = 0;
  private timer: Timer | null = null;
  private timerLimit: LimitName | null = null;
  private idleSince = 0;
  private sawStream = false;
  /** An open header block (or a HEADERS frame only partly received) must complete within the headers timeout. */
  private blockTimer: Timer | null = null;
  /** The stream idle sweep: a generation count per half timeout; a stream idle for three is reset. */
  private sweep: Timer | null = null;
  generation = 0;
  draining = false;
  /** A GOAWAY that ends the connection is out (an error, the reset budget): nothing more is read or written but it. */
  private calmed = false;
  destroyed = false;
  /** Frames written in answer to the client's since our write buffer was last empty (MAX_OWED). */
  private owed = 0;
  /** Streams whose response body waits for our socket to drain (MAX_BUFFERED). */
  private readonly congested = new Set<H2ServerStream>();
  /** The client's frames wait (socket paused, the rest of a read held by the reader) until our socket drains (MAX_BUFFERED). */
  readsPaused = false;

  constructor(
    readonly socket: Socket,
    private readonly o: H2ServerSessionOptions,
  ) {
    this.out = new FrameWriter(socket, this, 'check');
    this.decoder = new HpackDecoder(4096, { maxHeaderListBytes: o.hardCapBytes });
    this.recvWindow = o.connectionWindowBytes;
    // Reads come to onData straight from the socket's push (what node's socket reads call),
    // not through its Readable: no buffering, 'data' event or maybeReadMore tick per read,
    // as the mesh multiplexer's direct reads (net/direct-reads.ts). Flow control is ours
    // (section 5.2), and a frame is at most 16 KiB: the socket pauses only while the client
    // leaves our answers unread (pauseReads). What detection peeked and put back is read first.
    const peeked = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
    (socket as Fed)[SESSION] = this;
    socket.push = directPush;
    // Into the thread's shared read buffer (net/direct-reads.ts): a frame spanning reads is
    // gathered, and what the session keeps of a read's own frames copied (frame-reader.ts).
    // Reads that node's Readable would have held come to directPush as copies.
    this.reader.viewReads = setSharedReads(socket, (d) => inTurn(this.onData, this, d));
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
    socket.on('drain', () => this.onDrain());
    this.write(
      settingsFrame([
        [SETTING.MAX_CONCURRENT_STREAMS, o.maxConcurrentStreams],
        [SETTING.INITIAL_WINDOW_SIZE, o.streamWindowBytes],
        [SETTING.MAX_HEADER_LIST_SIZE, o.hardCapBytes],
      ]),
    );
    if (o.connectionWindowBytes > DEFAULT_WINDOW) this.out.word(FRAME.WINDOW_UPDATE, 0, o.connectionWindowBytes - DEFAULT_WINDOW);
    this.arm(o.headersTimeoutMs, 'request-headers-timeout');
    // Reading (again): detection paused the socket, and a paused socket whose buffer filled stopped its handle.
    socket.resume();
    if (peeked !== null) this.onData(peeked);
  }

  /** Streams open. */
  get active(): number {
    return this.streams.size;
  }

  // --- writing (ServerStreamHost) ---

  reset(id: number, code: number): void {
    this.owed++;
    this.out.reset(id, code);
  }

  blocked(st: H2ServerStream): void {
    this.blockedStreams.add(st);
  }

  /**
   * More than MAX_BUFFERED waits in our socket (the client does not read, whatever windows it
   * gave): `st` pauses its body until the socket drains, as node:http2 writes only what its
   * socket takes. The flow-control windows alone bound nothing: a client may open them to 2^31-1.
   */
  congestedFor(st: H2ServerStream): boolean {
    if (this.socket.writableLength <= MAX_BUFFERED || this.destroyed) return false;
    this.congested.add(st);
    return true;
  }

  private onDrain(): void {
    this.owed = 0;
    // The client's frames first, while the buffer is empty: resumed bodies fill it again at
    // once, and frames read after that would each wait for another drain.
    if (this.readsPaused) this.resumeReads();
    if (this.congested.size === 0) return;
    const waiting = [...this.congested];
    this.congested.clear();
    // A stream the windows hold (blocked) resumes its body when WINDOW_UPDATE flushes it.
    for (const st of waiting) if (!st.closed && !this.blockedStreams.has(st)) st.drained();
  }

  /**
   * More than MAX_BUFFERED of our answers wait in our socket: the client does not read them.
   * Its frames are not read either until it does (the socket paused, the rest of the read
   * held), as a server stops reading pipelined requests it cannot answer. Without this, a
   * client that never reads had us buffer every answer: an 11-byte HEADERS (two HPACK
   * indexes) made a 4 KB 403 that echoes its :authority, a settled response's stream closes
   * at once so SETTINGS_MAX_CONCURRENT_STREAMS bounds nothing, and the windows a client
   * opens without reading a byte bound nothing either (MAX_OWED counts control frames only).
   * nghttp2 (node:http2's maxSessionMemory) and Envoy (max_outbound_frames) end such a
   * connection; pausing serves a slow reader without dropping it.
   */
  private pauseReads(): void {
    this.readsPaused = true;
    this.reader.pause();
    this.socket.pause();
  }

  private resumeReads(): void {
    this.readsPaused = false;
    const held = this.reader.resume();
    // What was held first (it may pause reading again), then the socket.
    if (held !== null) inTurn(this.onData, this, held);
    if (!this.readsPaused && !this.destroyed) this.socket.resume();
  }

  /**
   * The request body's reader took data: give the stream window back, once a quarter of it
   * is owed (the client still has three quarters to send meanwhile; a WINDOW_UPDATE for
   * every small body would be a frame and a write per request).
   */
  credit(st: H2ServerStream): void {
    if (st.unacked < this.o.streamWindowBytes >>> 2 || st.closed || st.remoteEnded) return;
    this.out.word(FRAME.WINDOW_UPDATE, st.id, st.unacked);
    st.recvWindow += st.unacked;
    st.unacked = 0;
  }

  /** A stream is done: the premature-reset budget, the idle timer, a draining connection's end. */
  closed(st: H2ServerStream): void {
    if (this.streams.get(st.id) === st) this.streams.delete(st.id);
    this.blockedStreams.delete(st);
    this.congested.delete(st);
    this.closedCount++;
    const budget = this.o.prematureResets;
    if (budget !== null) {
      // Reset by either side before our response ended, whatever the code (as the session guard counts them).
      if (st.aborted && this.o.clock.now() - st.startedAt < budget.minStreamLifetimeMs) this.premature++;
      const limit = budget.totalStreamCount;
      if (this.premature * 2 >= (this.closedCount < limit ? limit : this.closedCount)) return this.tooManyResets();
    }
    if (this.calmed) return;
    if (this.streams.size === 0) {
      if (this.draining) return this.end();
      this.idleSince = this.o.clock.now();
      if (this.timer === null) this.arm(this.o.idleTimeoutMs, 'idle-connection-timeout');
    }
  }

  private write(b: Buffer): void {
    this.out.write(b);
  }

  flush(): void {
    this.out.flush();
  }

  // --- lifecycle ---

  /** Draining (RFC 9113 section 6.8): GOAWAY with the last stream id; the connection ends with its last stream. */
  close(): void {
    if (this.draining || this.destroyed) return;
    this.draining = true;
    this.write(wordsFrame(FRAME.GOAWAY, 0, 0, this.lastClientId, H2_ERROR.NO_ERROR));
    if (this.streams.size === 0) this.end();
  }

  private end(): void {
    if (this.destroyed) return;
    this.flush();
    this.socket.end();
  }

  /** The connection is gone: every open stream's request is cancelled upstream. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.clearTimers();
    this.ready.length = 0;
    const err = new ProxyError('CLIENT_CANCELLED', 'the client connection closed');
    for (const st of this.streams.values()) st.onReset(err);
    this.streams.clear();
    this.blockedStreams.clear();
    this.congested.clear();
    this.socket.destroy();
  }

  /** A connection error (section 5.4.1): GOAWAY with the code, then the connection is closed. */
  private connectionError(code: number): void {
    this.goAway(code);
  }

  /** A flood guard fired: counted, then GOAWAY ENHANCE_YOUR_CALM (a connection error). */
  private calm(limit: LimitName): void {
    this.o.onLimit(limit);
    this.connectionError(H2_ERROR.ENHANCE_YOUR_CALM);
  }

  /** The client does not read what its frames make us write (MAX_OWED): it is dropped, as nghttp2 drops a flooding peer. */
  private flood(): void {
    this.o.onLimit('h2-unread-control-frames');
    this.goAway(H2_ERROR.ENHANCE_YOUR_CALM);
    this.destroy();
  }

  private tooManyResets(): void {
    if (this.destroyed || this.calmed) return;
    this.o.onLimit('premature-resets');
    this.goAway(H2_ERROR.ENHANCE_YOUR_CALM);
  }

  /**
   * GOAWAY with `code`, then the connection is dropped with whatever it still holds (its
   * streams are cancelled upstream now). Our side ends with a FIN and what the client still
   * sends is read and dropped until it closes too (at most a second): closing a socket
   * with unread bytes sends a TCP RST, which can discard the GOAWAY before the client
   * reads it, and the client would never learn why.
   */
  private goAway(code: number): void {
    if (this.destroyed || this.calmed) return;
    this.calmed = true;
    this.clearTimers();
    this.ready.length = 0;
    const err = new ProxyError('CLIENT_CANCELLED', 'the connection was closed (GOAWAY)');
    for (const st of this.streams.values()) st.onReset(err);
    this.write(wordsFrame(FRAME.GOAWAY, 0, 0, this.lastClientId, code));
    this.flush();
    this.socket.end();
    // Read (and drop) again, so the close sends no TCP RST for bytes left unread.
    if (this.readsPaused) {
      this.readsPaused = false;
      this.reader.resume();
      this.socket.resume();
    }
    const t = this.o.clock.setTimeout(() => this.destroy(), 1000);
    t.unref?.();
    this.socket.once('close', () => this.o.clock.clearTimeout(t));
  }

  // --- timers (as http/h2-session-guard.ts: one per connection, none per request) ---

  private arm(ms: number, limit: LimitName): void {
    if (ms <= 0 || this.destroyed) return;
    if (limit === 'request-headers-timeout' && this.sawStream) return;
    this.timerLimit = limit;
    this.timer = this.o.clock.setTimeout(() => this.onTimer(limit), ms);
    this.timer.unref?.();
  }

  private onTimer(limit: LimitName): void {
    this.timer = null;
    this.timerLimit = null;
    if (this.streams.size > 0 || this.destroyed) return;
    if (limit === 'idle-connection-timeout') {
      // Streams came and went since it was armed: idle for less than the timeout so far.
      const left = this.idleSince + this.o.idleTimeoutMs - this.o.clock.now();
      if (left > 0) return this.arm(left, limit);
    }
    this.o.onLimit(limit);
    this.destroy();
  }

  private armBlockTimer(): void {
    const ms = this.o.headersTimeoutMs;
    if (ms <= 0 || this.blockTimer !== null) return;
    this.blockTimer = this.o.clock.setTimeout(() => {
      this.blockTimer = null;
      if (this.destroyed || !this.inHeaderBlock()) return;
      this.o.onLimit('request-headers-timeout');
      this.destroy();
    }, ms);
    this.blockTimer.unref?.();
  }

  /** A header block is open (CONTINUATION awaited) or a HEADERS/CONTINUATION frame is only partly here. */
  private inHeaderBlock(): boolean {
    if (this.hdrStream !== 0) return true;
    const t = this.reader.partialType;
    return t === FRAME.HEADERS || t === FRAME.CONTINUATION;
  }

  private armSweep(): void {
    const ms = this.o.streamIdleTimeoutMs;
    if (ms <= 0 || this.sweep !== null || this.destroyed) return;
    this.sweep = this.o.clock.setTimeout(() => this.onSweep(), Math.ceil(ms / 2));
    this.sweep.unref?.();
  }

  /** Idle for three generations: between one and one and a half stream idle timeouts without a frame. */
  private onSweep(): void {
    this.sweep = null;
    if (this.destroyed) return;
    const g = ++this.generation;
    for (const st of this.streams.values()) {
      if (g - st.lastActive < 3) continue;
      this.o.onLimit('stream-idle-timeout');
      st.cancel(H2_ERROR.CANCEL, new ProxyError('IDLE_TIMEOUT', `no frame for ${this.o.streamIdleTimeoutMs} ms`));
    }
    if (this.streams.size > 0) this.armSweep();
  }

  private clearTimers(): void {
    const c = this.o.clock;
    if (this.timer !== null) c.clearTimeout(this.timer);
    if (this.blockTimer !== null) c.clearTimeout(this.blockTimer);
    if (this.sweep !== null) c.clearTimeout(this.sweep);
    this.timer = this.blockTimer = this.sweep = null;
    this.timerLimit = null;
  }

  // --- reading ---

  /**
   * A read: its frames, then the streams it opened go to the service; what all of that
   * writes (SETTINGS and PING ACKs, WINDOW_UPDATEs, resets, refusals) leaves in one write at
   * its end.
   */
  onData(chunk: Buffer): void {
    const out = this.out;
    out.reading = true;
    try {
      this.readFrames(chunk);
    } finally {
      out.reading = false;
    }
    out.flush();
  }

  private readFrames(chunk: Buffer): void {
    if (this.destroyed || this.calmed) return;
    // All we wrote has left: the client is reading (what this read writes is corked, not counted yet).
    if (this.socket.writableLength === 0) this.owed = 0;
    let off = 0;
    if (this.prefaceLeft > 0) {
      const start = PREFACE.length - this.prefaceLeft;
      const n = Math.min(this.prefaceLeft, chunk.length);
      if (!chunk.subarray(0, n).equals(PREFACE.subarray(start, start + n))) return this.destroy();
      this.prefaceLeft -= n;
      off = n;
    }
    if (off < chunk.length) this.reader.push(off === 0 ? chunk : chunk.subarray(off));
    if (this.destroyed || this.calmed) return;
    if (this.o.headersTimeoutMs > 0 && this.inHeaderBlock()) this.armBlockTimer();
    if (this.ready.length > 0) this.dispatch();
  }

  // H2FrameSink
  onFrame(type: number, flags: number, id: number, payload: Buffer): boolean {
    this.frame(type, flags, id, payload);
    if (this.destroyed || this.calmed) return false;
    if (this.owed > MAX_OWED) {
      this.flood();
      return false;
    }
    // Not within a header block: the headers timeout would count the wait against the client.
    if (this.socket.writableLength > MAX_BUFFERED && this.hdrStream === 0) {
      this.pauseReads();
      return false;
    }
    return true;
  }

  onFrameTooLarge(): void {
    // We never raise SETTINGS_MAX_FRAME_SIZE (section 4.2).
    this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
  }

  /**
   * The streams opened by this read go to the service now that all of it is processed, as
   * node:http2 emits 'stream' after the read: a request whose body came whole in the same
   * read goes on settled (sent on in one go), and one the client already reset (HEADERS
   * and RST_STREAM together, as an HTTP/2 rapid-reset attack sends them) reaches no
   * upstream, whose own reset budget would otherwise be spent on our behalf. The
   * premature-reset budget has counted it.
   */
  private dispatch(): void {
    const ready = this.ready;
    for (let i = 0; i < ready.length; i++) {
      const st = ready[i];
      if (st.closed || st.req === null) continue;
      let p: Promise<ProxyResponse>;
      try {
        p = this.o.service(st.req);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(st.onResponse, st.onFailure);
    }
    ready.length = 0;
  }

  private frame(type: number, flags: number, id: number, p: Buffer): void {
    if (!this.settingsSeen) {
      // The preface's SETTINGS first (section 3.4).
      if (type !== FRAME.SETTINGS || (flags & FLAG.ACK) !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
      this.settingsSeen = true;
    }
    if (this.hdrStream !== 0 && (type !== FRAME.CONTINUATION || id !== this.hdrStream)) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
    switch (type) {
      case FRAME.DATA:
        return this.onDataFrame(flags, id, p);
      case FRAME.HEADERS: {
        if (id === 0 || (id & 1) === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        let b = stripPadding(flags, p);
        if (b === null) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        if ((flags & FLAG.PRIORITY) !== 0) {
          if (b.length < 5) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
          // A stream cannot depend on itself (section 5.3.1): a stream error, which section 5.4
          // lets us make the connection's, as nghttp2 (node:http2) does; the request goes nowhere.
          if ((b.readUInt32BE(0) & MAX_WINDOW) === id) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
          b = b.subarray(5);
        }
        return this.headerFragment(id, (flags & FLAG.END_STREAM) !== 0, (flags & FLAG.END_HEADERS) !== 0, b);
      }
      case FRAME.CONTINUATION:
        if (this.hdrStream === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        // A block in more frames than nghttp2 takes (CVE-2024-27316: empty CONTINUATIONs cost
        // no header bytes, each kept a reference to its read) ends the connection, as there.
        if (++this.hdrFrames > MAX_CONTINUATIONS) return this.calm('h2-continuation-flood');
        return this.headerFragment(id, this.hdrEnd, (flags & FLAG.END_HEADERS) !== 0, p);
      case FRAME.PRIORITY:
        if (id === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        if (p.length !== 5) {
          // A stream error (section 6.3): an open stream is closed with it, its request cancelled.
          const st = this.streams.get(id);
          if (st !== undefined) st.cancel(H2_ERROR.FRAME_SIZE_ERROR, new ProxyError('BAD_REQUEST', 'PRIORITY of the wrong length'));
          // No RST_STREAM on an idle stream (section 6.4): the connection's error, as nghttp2 makes it.
          else if (id > this.lastClientId) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
          else this.reset(id, H2_ERROR.FRAME_SIZE_ERROR);
        }
        return;
      case FRAME.RST_STREAM: {
        if (p.length !== 4) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
        // RST_STREAM on an idle stream is a connection error (section 6.4).
        if (id === 0 || id > this.lastClientId) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        const st = this.streams.get(id);
        if (st !== undefined) st.onReset(new ProxyError('CLIENT_CANCELLED', `the client reset the stream (code ${p.readUInt32BE(0)})`));
        return;
      }
      case FRAME.SETTINGS:
        return this.onSettings(flags, id, p);
      case FRAME.PUSH_PROMISE:
        // A client cannot push (section 8.4).
        return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
      case FRAME.PING:
        if (id !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        if (p.length !== 8) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
        if ((flags & FLAG.ACK) === 0) {
          this.owed++;
          this.write(frameHeader(8, FRAME.PING, FLAG.ACK, 0));
          this.write(Buffer.from(p));
        }
        return;
      case FRAME.GOAWAY:
        // The client opens no new stream; those open finish (section 6.8).
        if (id !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        if (p.length < 8) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
        return;
      case FRAME.WINDOW_UPDATE:
        return this.onWindowUpdate(id, p);
      default:
        // Unknown frame types are ignored (section 5.5).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, p: Buffer): void {
    if (id === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
    // Flow control counts the whole payload, padding included (section 6.9.1).
    const len = p.length;
    if (emptyDataFrame(flags, p)) {
      if (++this.emptyData > MAX_EMPTY_DATA) return this.calm('h2-empty-frames-flood');
    } else this.emptyData = 0;
    this.recvWindow -= len;
    if (this.recvWindow < 0) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR);
    this.unacked += len;
    if (this.unacked >= this.o.connectionWindowBytes >>> 1) {
      this.out.word(FRAME.WINDOW_UPDATE, 0, this.unacked);
      this.recvWindow += this.unacked;
      this.unacked = 0;
    }
    const st = this.streams.get(id);
    if (st === undefined) {
      // DATA on an idle stream is a connection error (section 5.1); on one we closed, only the connection window counts it.
      if (id > this.lastClientId) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
      return;
    }
    if (st.remoteEnded) return st.cancel(H2_ERROR.STREAM_CLOSED, new ProxyError('BAD_REQUEST', 'DATA after END_STREAM'));
    const data = stripPadding(flags, p);
    if (data === null) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
    st.recvWindow -= len;
    if (st.recvWindow < 0) return st.cancel(H2_ERROR.FLOW_CONTROL_ERROR, new ProxyError('BAD_REQUEST', 'the client exceeded the stream window'));
    st.unacked += len;
    st.lastActive = this.generation;
    st.onData(this.reader.kept(data), (flags & FLAG.END_STREAM) !== 0);
    const b = st.body;
    // Given back at once while the reader keeps up; else when it reads (H2RequestBody._read).
    if (!st.closed && b !== null && b.readableLength < b.readableHighWaterMark && st.unacked >= this.o.streamWindowBytes >>> 2) this.credit(st);
  }

  private headerFragment(id: number, endStream: boolean, endHeaders: boolean, b: Buffer): void {
    if (b.length > 0) this.emptyData = 0;
    // No bound on the block's octets of its own: the frame count (MAX_CONTINUATIONS, the
    // CONTINUATION flood guard) bounds what a block holds to 9 frames of DEFAULT_MAX_FRAME
    // (144 KiB), and within that a block of any size is decoded (the dynamic table must stay
    // in step) and an oversize list refused as its stream's error: a 431 (RFC 9113 section
    // 10.5.1), as nghttp2 and Envoy refuse just that stream. A bound on octets here ended the
    // connection, every other stream on it, for one request with too much metadata.
    if (!endHeaders) {
      this.hdrStream = id;
      this.hdrEnd = endStream;
      this.hdrParts.push(this.reader.kept(b));
      return;
    }
    const block = this.hdrParts.length === 0 ? b : Buffer.concat([...this.hdrParts, b]);
    this.hdrStream = 0;
    this.hdrParts = [];
    this.hdrFrames = 0;
    if (this.blockTimer !== null) {
      this.o.clock.clearTimeout(this.blockTimer);
      this.blockTimer = null;
    }
    // Decoded whatever the stream: the dynamic table must stay in step (RFC 7541 section 2.2).
    const fields = this.decoder.decode(block);
    const tooLarge = !Array.isArray(fields);
    if (tooLarge && fields.code !== 'HEADER_LIST_TOO_LARGE') return this.connectionError(H2_ERROR.COMPRESSION_ERROR);
    const st = this.streams.get(id);
    if (st !== undefined) {
      // Trailers (section 8.1): END_STREAM, no pseudo-header; HEADERS on a half-closed (remote) stream is STREAM_CLOSED.
      if (st.remoteEnded) return st.cancel(H2_ERROR.STREAM_CLOSED, new ProxyError('BAD_REQUEST', 'HEADERS after END_STREAM'));
      if (tooLarge || !endStream) return st.malformed('trailers too large or without END_STREAM');
      st.lastActive = this.generation;
      return this.onTrailers(st, fields);
    }
    if (id <= this.lastClientId) return; // a stream already closed (we reset it): nothing more to do
    this.lastClientId = id;
    if (this.draining) return this.reset(id, H2_ERROR.REFUSED_STREAM);
    if (this.streams.size >= this.o.maxConcurrentStreams) {
      // RFC 9113 section 5.1.2: a stream past the advertised limit is refused, and the limit counted.
      this.o.onLimit('max-concurrent-streams');
      return this.reset(id, H2_ERROR.REFUSED_STREAM);
    }
    if (tooLarge) this.open(id, fields.contentType ?? '', endStream);
    else this.open(id, fields, endStream);
  }

  /** 431 (gRPC: RESOURCE_EXHAUSTED) through the one error mapping, counted (onClientError); the request is not read. */
  private headersTooLarge(limit: number, contentType: string | undefined): ProxyResponse {
    const err = new ProxyError('HEADERS_TOO_LARGE', `limit is ${limit} bytes`);
    this.o.onClientError?.(err, this.o.source, this.o.origDst, err.httpStatus);
    return errorResponse(err, { headers: contentType !== undefined ? { 'content-type': contentType } : {} });
  }

  /**
   * A request refused before the service saw it (a malformed head, reset; a plain CONNECT,
   * answered): counted and logged by the listener (onClientError).
   */
  refused(err: ProxyError, status: number): void {
    this.o.onClientError?.(err, this.o.source, this.o.origDst, status);
  }

  private onTrailers(st: H2ServerStream, fields: string[]): void {
    for (let i = 0; i < fields.length; i += 2) if (fields[i].charCodeAt(0) === 58) return st.malformed('pseudo-header in trailers');
    // Checked as the head's fields are (section 8.2.1): a trailer the other side cannot
    // write (node:http2's sendTrailers throws on a bad name) would fail there instead.
    const bad = badField(fields, 0, false);
    if (bad !== null) return st.malformed(`${bad} in trailers`);
    // Connection-specific fields make any field section malformed (section 8.2.2), and a
    // malformed request is not forwarded (section 8.1.1): nghttp2 resets such trailers'
    // stream too. Dropped as hop-by-hop on the way, they let the request reach the app whole.
    const conn = connectionField(fields, 0);
    if (conn !== null) return st.malformed(`connection-specific field ${conn} in trailers`);
    st.onTrailers(fields.length === 0 ? undefined : cleanTrailers(fieldsToHeaders(fields, true)));
  }

  /** A new request stream: validated (section 8.3.1), then handed to the service as a ProxyRequest. */
  /** `fields` a string: the list was over the hard cap and dropped; the string is its content-type ('' for none). */
  private open(id: number, fields: string[] | string, endStream: boolean): void {
    const now = this.o.clock.now();
    const st = new H2ServerStream(this, id, now);
    st.lastActive = this.generation;
    st.sendWindow = this.peerInitialWindow;
    st.recvWindow = this.o.streamWindowBytes;
    st.remoteEnded = endStream;
    this.streams.set(id, st);
    if (!this.sawStream) {
      this.sawStream = true;
      if (this.timerLimit === 'request-headers-timeout') {
        this.o.clock.clearTimeout(this.timer!);
        this.timer = null;
        this.timerLimit = null;
      }
    }
    this.armSweep();
    if (typeof fields === 'string') return st.respond(this.headersTooLarge(this.o.hardCapBytes, fields === '' ? undefined : fields));
    let method: string | undefined;
    let scheme: string | undefined;
    let authority: string | undefined;
    let path: string | undefined;
    let host: string | undefined;
    let contentType: string | undefined;
    let contentLength: string | undefined;
    let te = false;
    let regular = fields.length;
    let size = 0;
    if (fields.length > 2 * MAX_FIELDS) return st.malformed('too many header fields');
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i];
      const value = fields[i + 1];
      size += name.length + value.length + 32;
      if (name.charCodeAt(0) === 58) {
        // Pseudo-headers come first, each once, and only the request's (section 8.3).
        if (regular !== fields.length) return st.malformed('pseudo-header after a regular field');
        if (name === ':method' && method === undefined) method = value;
        else if (name === ':scheme' && scheme === undefined) scheme = value;
        else if (name === ':authority' && authority === undefined) authority = value;
        else if (name === ':path' && path === undefined) path = value;
        // :protocol too: we do not send SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 section 4).
        else return st.malformed(`pseudo-header ${name} not allowed`);
        continue;
      }
      if (regular === fields.length) regular = i;
      if (!validFieldName(name)) return st.malformed('invalid field name');
      if (!validFieldValue(value)) return st.malformed(`invalid value of ${name}`);
      if (CONNECTION_SPECIFIC.has(name)) return st.malformed(`connection-specific field ${name}`);
      if (name === 'te') {
        if (!teTrailers(value)) return st.malformed('te other than trailers');
        te = true;
      } else if (name === 'host') host ??= value;
      else if (name === 'content-type') contentType ??= value;
      else if (name === 'content-length') {
        if (contentLength !== undefined && contentLength !== value) return st.malformed('conflicting content-length');
        contentLength = value;
      }
    }
    if (method === undefined || !validMethod(method)) return st.malformed('no valid :method');
    if (method !== 'CONNECT') {
      if (scheme === undefined || path === undefined) return st.malformed('no :scheme or :path');
      // An origin-form path, or `*` for OPTIONS (RFC 9113 section 8.3.1; nghttp2 checks the same).
      if (path.charCodeAt(0) !== 0x2f && !(path === '*' && method === 'OPTIONS')) return st.malformed('invalid :path');
      // The bytes nghttp2 (node:http2) lets through, no more: a space, a control or DEL in
      // :path, :scheme or the authority is a request node:http2 resets (PROTOCOL_ERROR), and
      // must not reach routing, access logs or a next hop here either.
      if (!allIn(path, TARGET)) return st.malformed('invalid :path');
      if (!validScheme(scheme)) return st.malformed('invalid :scheme');
    }
    // The authority (RFC 9113 section 8.3.1: :authority, else Host) is required and is a host[:port] (RFC 3986 section 3.2.2).
    const target = authority ?? host;
    if (target === undefined || target.length === 0 || !allIn(target, HOST)) return st.malformed('no valid :authority or host');
    if (size > this.o.maxHeaderBytes) return st.respond(this.headersTooLarge(this.o.maxHeaderBytes, contentType));
    if (method === 'CONNECT') {
      // A plain CONNECT (forward-proxy use) is the caller's error, answered before any endpoint is picked.
      const err = new ProxyError('CONNECT_NOT_SUPPORTED', authority ?? '');
      this.refused(err, err.httpStatus);
      return st.respond(errorResponse(err, { headers: {} }));
    }
    if (contentLength !== undefined) {
      const n = parseLength(contentLength);
      if (n < 0 || (endStream && n !== 0)) return st.malformed('invalid content-length');
      st.expectedLength = n;
    }
    const headers = fieldsToHeaders(regular === 0 ? fields : fields.slice(regular));
    if (te) headers['te'] = 'trailers';
    const body = endStream ? null : new H2RequestBody(st);
    st.body = body;
    const req = {
      method,
      scheme: scheme!,
      authority: target,
      path: path!,
      headers,
      body,
      trailers: requestTrailers,
      origProto: 'HTTP/2',
      source: this.o.source,
      origDst: this.o.origDst,
      signal: st.ac.signal,
      startedAt: now,
      upgrade: undefined,
      [STREAM_REF]: st,
    } as ProxyRequest;
    st.req = req;
    this.ready.push(st);
  }

  private onSettings(flags: number, id: number, p: Buffer): void {
    if (id !== 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
    if ((flags & FLAG.ACK) !== 0) {
      if (p.length !== 0) this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
      return;
    }
    if (p.length % 6 !== 0) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
    // Each SETTINGS_INITIAL_WINDOW_SIZE walks every open stream: a 16 KiB frame of 2730 of
    // them against 1000 streams is millions of updates for one read. node:http2 ends a
    // connection whose SETTINGS has more than 32 entries (its maxSettings) likewise.
    if (p.length > 6 * MAX_SETTINGS) return this.calm('h2-settings-flood');
    // SETTINGS_INITIAL_WINDOW_SIZE: the last value and the highest, for one walk below.
    let windowTo = -1;
    let windowPeak = -1;
    for (let i = 0; i < p.length; i += 6) {
      const k = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (k === SETTING.INITIAL_WINDOW_SIZE) {
        if (v > MAX_WINDOW) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR);
        windowTo = v;
        if (v > windowPeak) windowPeak = v;
      } else if (k === SETTING.MAX_FRAME_SIZE) {
        if (v < DEFAULT_MAX_FRAME || v > 0xffffff) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
        this.peerMaxFrame = v;
      } else if (k === SETTING.ENABLE_PUSH && v > 1) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
      else if (k === SETTING.HEADER_TABLE_SIZE) this.peerHeaderTable = v;
      // MAX_CONCURRENT_STREAMS: we push none.
    }
    if (windowTo >= 0) {
      const from = this.peerInitialWindow;
      this.peerInitialWindow = windowTo;
      if (!applyInitialWindow(this.streams.values(), from, windowTo, windowPeak)) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR);
    }
    // The encoder signals a change at the start of its next block (RFC 7541 section 4.2), which goes after this ACK.
    this.out.tableLimit(this.peerHeaderTable);
    this.owed++;
    this.write(frameHeader(0, FRAME.SETTINGS, FLAG.ACK, 0));
    if (this.blockedStreams.size > 0) this.unblock();
  }

  private onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) return this.connectionError(H2_ERROR.FRAME_SIZE_ERROR);
    const inc = p.readUInt32BE(0) & MAX_WINDOW;
    if (id === 0) {
      if (inc === 0) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) return this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR);
      if (this.blockedStreams.size > 0) this.unblock();
      return;
    }
    const st = this.streams.get(id);
    if (st === undefined) {
      if (id > this.lastClientId) return this.connectionError(H2_ERROR.PROTOCOL_ERROR);
      return;
    }
    if (inc === 0) return st.cancel(H2_ERROR.PROTOCOL_ERROR, new ProxyError('BAD_REQUEST', 'WINDOW_UPDATE of 0'));
    if (st.sendWindow + inc > MAX_WINDOW) return st.cancel(H2_ERROR.FLOW_CONTROL_ERROR, new ProxyError('BAD_REQUEST', 'stream window above 2^31-1'));
    st.sendWindow += inc;
    st.lastActive = this.generation;
    if (this.blockedStreams.delete(st)) st.flush();
  }

  private unblock(): void {
    flushBlocked(this, this.blockedStreams);
  }
}

const SESSION = Symbol('wren.h2ServerSession');
type Fed = Socket & { [SESSION]?: H2ServerSession };

/**
 * The socket's push, replaced: each read goes to its session. End of stream (null): HTTP/2
 * has no half-closed connection, after the client's FIN nothing (WINDOW_UPDATE,
 * RST_STREAM) can arrive, so the session ends with it.
 */
function directPush(this: Fed, chunk: unknown): boolean {
  const s = this[SESSION];
  if (s === undefined) return false;
  if (chunk === null || chunk === undefined) s.destroy();
  // A turn of its own (common/deferred.ts): the steps this read defers run as it returns, no tick.
  else inTurn(s.onData, s, chunk as Buffer);
  // Reads paused (pauseReads): false stops node's reading, where pause() alone would not (a
  // socket that does not read into the shared buffer); the reader holds this one.
  return !s.readsPaused;
}



/** scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 section 3.1). */
function validScheme(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) | 0x20;
    if (c >= 0x61 && c <= 0x7a) continue;
    const d = s.charCodeAt(i);
    if (i === 0 || !((d >= 0x30 && d <= 0x39) || d === 0x2b || d === 0x2d || d === 0x2e)) return false;
  }
  return s.length > 0;
}


/** content-length as a number, or -1 when it is not one decimal (section 8.1.1). */
function parseLength(s: string): number {
  if (s.length === 0 || s.length > 15) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
  }
  return Number(s);
}
