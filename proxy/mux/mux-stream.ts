import { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { nodeTimerMs } from '../../common/clock.js';
import { isLent, releaseBody } from '../net/body-buffers.js';
import { BY_REFERENCE_BYTES } from './frame-batch.js';
import { EMPTY_PAYLOAD, MAX_PAYLOAD, MAX_WINDOW, ResetCode, upstreamResetCode } from './frame.js';

/** What MuxStream.onData made of a DATA payload. */
export const StreamData = {
  Taken: 0,
  /** More than the window we granted (a flow-control error): the session resets the stream. */
  OverWindow: 1,
  /** DATA after the peer's FIN (STREAM_CLOSED): the stream has reset itself. */
  AfterFin: 2,
} as const;
export type StreamData = (typeof StreamData)[keyof typeof StreamData];

/** What a stream needs from its session (proxy/mux/mux-session.ts). */
export interface StreamOwner {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** The verified SPIFFE ID of the peer (server side; '' on the client side). */
  readonly peer: string;
  /** DATA payloads are views of the session's read buffer, which the next read overwrites (net/direct-reads.ts setSharedReads). */
  readonly viewReads: boolean;
  /**
   * A DATA frame. A long payload is kept by reference until written (frame-batch.ts): as a
   * Writable's chunk, it is not the caller's to change. `ends`: the lent body buffer whose
   * last part `payload` is, handed back once this frame is written (body-buffers.ts).
   */
  sendData(id: number, payload: Buffer, fin: boolean, ends?: Buffer): void;
  /** sendData of text as latin1 bytes (one per character), without a buffer of its own. */
  sendLatin1(id: number, text: string): void;
  /** One DATA frame of `bytes` bytes: `parts` in order (text as latin1), copied into the frame (a lent body buffer then goes back). */
  sendParts(id: number, parts: readonly (string | Buffer)[], bytes: number): void;
  /** Connection-level flow control: bytes the peer lets us send on the whole connection now. */
  readonly connSendWindow: number;
  /** This stream waits for connection-level window (onWindow is called when it opens). */
  blockedOnConnection(s: MuxStream): void;
  /** Grants the peer `bytes` more on this stream. */
  sendWindow(id: number, bytes: number): void;
  /** `bytes` received on the connection reached a stream's buffer, or were dropped: the connection's window (batched there). */
  returnConnectionWindow(bytes: number): void;
  /** After our FIN, the peer's time to send its own before the stream goes (ms; 0: no bound). */
  readonly closeTimeoutMs: number;
  /** The peer did not end its half within closeTimeoutMs of our FIN (counted). */
  closeTimedOut(): void;
  sendReset(id: number, code: number): void;
  removed(id: number): void;
}

/**
 * One virtual connection of a mesh multiplexer session: a socket-like Duplex that the
 * HTTP/1.1 pool (client side) and the HTTP/1.1 server (peer side) use as they use a TCP
 * or TLS socket, long-lived like one (many keep-alive exchanges per stream), so nothing
 * here is made per request.
 *
 * Flow control both ways, as HTTP/2's (RFC 9113 section 5.2): the sender sends at most
 * the window the receiver granted, for the stream and for the whole connection. The
 * receiver gives the connection's window back as DATA arrives in a stream's buffer, and
 * the stream's only as its reader consumes it, as nghttp2's automatic flow control does
 * for node:http2: what waits in memory is bounded per stream by its window plus the
 * Duplex's buffer (what it took in while its reader was not behind), so per connection by
 * its streams (maxStreams) × that, and a reader that stops holds its own stream's sender only: flow control is there for a
 * receiver "unable to process data on one stream yet [that] wants to continue to process
 * other streams in the same connection" (RFC 9113 section 5.2.2). Were the connection's
 * window given back only as readers consume (as it was), a few streams whose readers
 * stopped would hold all of it, and nothing more would cross the connection for any
 * stream: the responses of every other request to that peer waited until the stalled ones
 * timed out (head-of-line blocking).
 * destroy() before both halves ended resets the stream at the peer (RESET), as closing a
 * TCP socket with unread data resets it. After our FIN (end()) the peer has the owner's
 * closeTimeoutMs to end its half too (closeTimedOut()).
 */
export class MuxStream extends Duplex {
  /** Bytes the peer may still send us before we grant more. */
  private recvWindow: number;
  /** Bytes pushed to our reader while its buffer was full: granted once it reads again. */
  private owed = 0;
  /** Bytes our reader took that the peer has not been granted yet (sent at half the window). */
  private consumed = 0;
  /** Bytes we may still send. */
  private sendWindow: number;
  /** A write waiting for window: its buffer (`buf` from `off` on is still to go) and its callback. */
  private blocked: { buf: Buffer; off: number; cb: (e?: Error | null) => void } | null = null;
  private finSent = false;
  private finReceived = false;
  /** The peer needs no RESET when the stream goes: it reset it itself, or the stream was let go after our FIN (closeTimedOut). */
  private noReset = false;
  /** resetForUpstream's code: the RESET carries it instead of Cancel. */
  private upstreamH2Code: number | undefined = undefined;
  /** DATA came after our FIN: the peer is still sending (closeTimedOut resets it then). */
  private dataAfterFin = false;
  /** Armed at our FIN (_final): the stream must be gone by then (closeTimedOut). */
  private closeTimer: NodeJS.Timeout | null = null;
  /**
   * The peer has shown it took this stream: it granted window on it or sent DATA. A peer
   * refuses a stream (RESET Refused) at its first DATA, before either, so a request body
   * kept for a refusal (h1-pool.ts refusedReplayBytes) can be let go once this is true.
   */
  accepted = false;
  /** Client: the session's streams open when this one was opened (mux-session.ts, the peer's limit learnt at a refusal). */
  openBefore = 0;
  /** The inactivity timer (setTimeout): armed for `timeoutMs`, checked against `lastActive` when it fires. */
  private timer: NodeJS.Timeout | null = null;
  private timeoutMs = 0;
  private lastActive = 0;
  /** The timer fired ('timeout' emitted): the next byte arms it again, as net.Socket's does. */
  private expired = false;
  /**
   * The reader's own function for DATA (setSink): called with each payload directly while
   * the stream flows with nothing buffered, instead of the Readable's push and 'data' emit
   * (and the maybeReadMore tick each push schedules). Paused, or with bytes still buffered,
   * payloads take the Readable's way, so they reach the reader in order either way.
   */
  private sink: ((d: Buffer) => void) | null = null;
  readonly connecting = false;
  /** A turn's writes leave in one frame batch (frame-batch.ts): the HTTP/1.1 serialiser need not cork a head and a long body together (serialize.ts H1Sink). */
  readonly batchesWrites = true;
  /**
   * The writes made since a cork() that found nothing queued, in order (text kept as latin1
   * strings), sent at the uncork as one DATA frame whose payload the session writes straight
   * into its batch (null: not gathering). A corked Writable instead queued each write as a
   * request of its own, made a Buffer of each string and joined them in _writev (Buffer.concat):
   * two copies of every byte and a few objects per write, for the head, body chunk and tail
   * of a chunked message (a gRPC call's request and response, h1-pool.ts and h1-connection.ts).
   */
  private gathered: (string | Buffer)[] | null = null;
  private gatheredBytes = 0;

  constructor(
    readonly id: number,
    readonly owner: StreamOwner,
    private readonly window: number,
  ) {
    super({ allowHalfOpen: true, decodeStrings: true, highWaterMark: 64 * 1024 });
    this.recvWindow = window;
    this.sendWindow = window;
  }

  get remoteAddress(): string | undefined {
    return this.owner.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.owner.remotePort;
  }

  /** The caller of every request on this stream: the session's verified peer. */
  get peer(): string {
    return this.owner.peer;
  }

  /**
   * DATA from the peer: StreamData.Taken, or how the peer broke the stream's rules (the
   * session resets the stream for OverWindow; AfterFin has reset it already), which the
   * session counts against the peer's reset budget.
   */
  onData(payload: Buffer, fin: boolean): StreamData {
    if (payload.length > this.recvWindow) return StreamData.OverWindow;
    if (this.finReceived && payload.length > 0) {
      // The peer's half had ended (RFC 9113 section 5.1, half-closed (remote): STREAM_CLOSED).
      // Checked before either read path: the sink would hand the bytes to the parser as more
      // requests, where a push after EOF resets the stream.
      this.owner.returnConnectionWindow(payload.length);
      this.destroy(Object.assign(new Error('DATA after the stream ended (FIN)'), { code: 'ECONNRESET' }));
      return StreamData.AfterFin;
    }
    this.touch();
    this.accepted = true;
    if (payload.length > 0) {
      this.recvWindow -= payload.length;
      // The connection's window comes back as the bytes arrive in this stream, whatever its
      // reader does (when a receiver grants is its own choice, RFC 9113 section 5.2.1), as
      // nghttp2's automatic flow control does for node:http2; the stream's window bounds
      // what they cost (grant()).
      this.owner.returnConnectionWindow(payload.length);
      if (this.finSent) this.dataAfterFin = true;
      const sink = this.sink;
      if (sink !== null && this.readableFlowing === true && this.readableLength === 0 && !this.destroyed) {
        sink(payload);
        this.grant(payload.length);
      } else if (this.push(this.owner.viewReads ? Buffer.from(payload) : payload)) this.grant(payload.length);
      else this.owed += payload.length;
    }
    if (fin && !this.finReceived) {
      this.finReceived = true;
      this.push(null);
    }
    return StreamData.Taken;
  }

  /**
   * Hands DATA to `fn` directly, as net.Socket's `onread` does (null: the Readable's way
   * again). The reader also listens to 'data', which gets what arrived while it was paused
   * (copies of their own). True: `fn` gets views of the session's read buffer, and copies
   * what it keeps past a call.
   */
  setSink(fn: ((d: Buffer) => void) | null): boolean {
    this.sink = fn;
    return fn !== null && this.owner.viewReads;
  }

  /**
   * A write that can leave at once (not corked, nothing queued, within both windows, one
   * frame) goes to the session directly, without the Writable's bookkeeping and the
   * afterWrite tick it schedules for each write; anything else takes the Writable's way
   * (order kept: a direct write is only taken when nothing is queued there).
   */
  override write(chunk: unknown, encoding?: BufferEncoding | ((error: Error | null | undefined) => void), cb?: (error: Error | null | undefined) => void): boolean {
    if (this.gathered !== null) {
      if (typeof encoding !== 'function' && cb === undefined && this.gather(chunk, encoding)) return true;
      this.spill(); // corked: this write and the ones after it queue in the Writable, behind the gathered ones
    }
    if (typeof encoding !== 'function' && cb === undefined && this.writableCorked === 0 && this.nothingQueued()) {
      const part = payloadOf(chunk, encoding);
      const n = part === null ? 0 : part.length;
      if (n > 0 && n <= MAX_PAYLOAD && n <= this.sendWindow && n <= this.owner.connSendWindow) {
        this.touch();
        if (typeof part === 'string') this.owner.sendLatin1(this.id, part);
        else this.owner.sendData(this.id, part!, false);
        this.sendWindow -= n;
        return true;
      }
    }
    return super.write(chunk, encoding as BufferEncoding, cb);
  }

  /** Gathers its writes until the matching uncork() when nothing is queued (gathered); else the Writable's cork. */
  override cork(): void {
    if (this.writableCorked === 0 && this.nothingQueued()) this.gathered = [];
    super.cork();
  }

  /** Open for writing with nothing waiting (no write blocked on window, none in the Writable's queue): a write may leave ahead of the Writable. */
  private nothingQueued(): boolean {
    return this.blocked === null && this.writableLength === 0 && !this.writableEnded && !this.destroyed;
  }

  override uncork(): void {
    if (this.gathered !== null && this.writableCorked === 1) this.sendGathered();
    super.uncork();
  }

  /** Keeps a corked write; false (nothing kept) for one that would make the frame too long to copy. */
  private gather(chunk: unknown, encoding: BufferEncoding | undefined): boolean {
    const part = payloadOf(chunk, encoding);
    if (part === null || this.gatheredBytes + part.length >= BY_REFERENCE_BYTES) return false;
    if (part.length > 0) {
      this.gathered!.push(part);
      this.gatheredBytes += part.length;
    }
    return true;
  }

  /** The gathered writes as one frame, or (beyond a window) into the Writable's queue, which the uncork then flushes. */
  private sendGathered(): void {
    const parts = this.gathered!;
    const n = this.gatheredBytes;
    if (n === 0 || n > this.sendWindow || n > this.owner.connSendWindow) return this.spill();
    this.gathered = null;
    this.gatheredBytes = 0;
    this.touch();
    this.owner.sendParts(this.id, parts, n);
    this.sendWindow -= n;
  }

  /** The gathered writes into the Writable's queue (corked), in order; gathering stops. */
  private spill(): void {
    const parts = this.gathered!;
    this.gathered = null;
    this.gatheredBytes = 0;
    if (this.destroyed) return;
    for (const p of parts) super.write(p, 'latin1'); // the encoding applies to the strings only
  }

  /**
   * Our reader took `n` bytes: the stream grants them back (WINDOW, RFC 9113 section 6.9)
   * once half its window is consumed, as nghttp2 sends WINDOW_UPDATE: a grant per message
   * would be a frame, and at a low rate a write, of its own per response. (The connection
   * had them back on arrival, onData.)
   */
  private grant(n: number): void {
    if (this.destroyed || this.finReceived) return;
    this.consumed += n;
    if (this.consumed < this.window / 2) return;
    const g = this.consumed;
    this.consumed = 0;
    this.recvWindow += g;
    this.owner.sendWindow(this.id, g);
  }

  /**
   * WINDOW from the peer for this stream (n > 0), or the connection's window opened (n = 0).
   * False: the window would pass 2^31-1 (RFC 9113 section 6.9.1), a flow-control error.
   */
  onWindow(n: number): boolean {
    if (this.sendWindow + n > MAX_WINDOW) return false;
    if (n > 0) this.accepted = true;
    this.sendWindow += n;
    const b = this.blocked;
    if (b === null) return true;
    this.blocked = null;
    this.sendSome(b.buf, b.cb, b.off);
    return true;
  }

  /** RESET from the peer, or the session is gone. */
  onReset(err: Error): void {
    this.noReset = true;
    this.destroy(err);
  }

  override _read(): void {
    if (this.owed > 0) {
      const n = this.owed;
      this.owed = 0;
      this.grant(n);
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.touch();
    this.sendSome(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    // Corked writes (a request head and its body) leave as one frame: one TLS record.
    this.touch();
    if (chunks.length === 1) return this.sendSome(chunks[0].chunk, cb);
    const joined = Buffer.concat(chunks.map((c) => c.chunk));
    // Copied: lent body buffers among them go back now (body-buffers.ts).
    for (let i = 0; i < chunks.length; i++) releaseBody(chunks[i].chunk);
    this.sendSome(joined, cb);
  }

  private sendSome(buf: Buffer, cb: (e?: Error | null) => void, from = 0): void {
    let off = from;
    while (off < buf.length) {
      const room = Math.min(this.sendWindow, this.owner.connSendWindow);
      if (room <= 0) break;
      const n = Math.min(buf.length - off, room, MAX_PAYLOAD);
      if (off === 0 && n === buf.length) this.owner.sendData(this.id, buf, false);
      else {
        // A buffer sent in parts: its last part's frame carries it, so that a lent body
        // buffer goes back once every part has been written (body-buffers.ts).
        const last = off + n === buf.length;
        this.owner.sendData(this.id, buf.subarray(off, off + n), false, last && isLent(buf) ? buf : undefined);
      }
      this.sendWindow -= n;
      off += n;
    }
    if (off === buf.length) return cb();
    this.blocked = { buf, off, cb };
    if (this.sendWindow > 0) this.owner.blockedOnConnection(this);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.finSent = true;
    this.owner.sendData(this.id, EMPTY_PAYLOAD, true);
    // Our half is done (the writes before it have all been handed to the session): the
    // stream must be gone within the close timeout, as Envoy bounds the wait for a peer's
    // FIN after it closes a connection (delayed_close_timeout). Without it a peer that never
    // ends its half kept the stream, its reader (an HTTP/1.1 connection) and a slot of
    // maxStreams for good. One timer per stream end, not per request.
    const ms = this.owner.closeTimeoutMs;
    if (ms > 0) {
      this.closeTimer = setTimeout(onCloseTimer, ms, this);
      this.closeTimer.unref();
    }
    cb();
  }

  /**
   * The close timeout after our FIN ran out with the stream still here. The peer that has
   * not ended its half is counted (the owner's limit). A RESET makes the peer drop what it
   * has not read yet (the last window of a response to a slow client), so it goes only to
   * a peer still sending, or that left bytes here unread, as TCP's close() sends RST only
   * over unread data; else the stream is let go quietly, the peer reading what it has at
   * its own pace, and what it sends later is dropped as a closed stream's (mux-session.ts
   * data()). A peer that did end its half, but whose bytes our reader never took to their
   * end (a paused HTTP/1.1 connection that is closing), is let go too: both halves ended,
   * no RESET.
   */
  closeTimedOut(): void {
    this.closeTimer = null;
    if (this.destroyed) return;
    if (!this.finReceived) {
      this.owner.closeTimedOut();
      if (!this.dataAfterFin && this.readableLength === 0) this.noReset = true;
    }
    this.destroy();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.clearTimer();
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.gathered = null;
    this.sink = null;
    const b = this.blocked;
    this.blocked = null;
    b?.cb(err ?? new Error('stream destroyed'));
    if (!this.noReset && !(this.finSent && this.finReceived)) this.owner.sendReset(this.id, this.upstreamH2Code === undefined ? ResetCode.Cancel : upstreamResetCode(this.upstreamH2Code));
    // Bytes never read: the connection had them back on arrival (onData), the stream's window goes with it.
    this.owed = 0;
    this.owner.removed(this.id);
    cb(err);
  }

  /**
   * net.Socket's inactivity timer: 'timeout' after `ms` without a byte either way (0: off).
   * A byte only notes the time (touch); the timer, when it fires, arms itself again for
   * what is left if there was activity since. Refreshing a Node timer on every read and
   * write relinks it in the timer list, and a busy virtual connection moves bytes several
   * times per request (1.3 % of a sidecar's busy time under HTTP/1.1 load, docs/benchmarks.md).
   */
  setTimeout(ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    this.clearTimer();
    this.timeoutMs = ms;
    if (ms > 0 && !this.destroyed) {
      this.lastActive = performance.now();
      this.arm(ms);
    }
    return this;
  }

  private arm(ms: number): void {
    this.expired = false;
    // At most 24.8 days a time: timerFired re-arms for what is left, so a longer timeout still holds whole.
    this.timer = setTimeout(onStreamTimer, nodeTimerMs(ms), this);
    this.timer.unref();
  }

  /** The timer fired: 'timeout' if the stream has been idle for the whole period, else wait for the rest. */
  timerFired(): void {
    if (this.timer === null || this.destroyed) return;
    const left = this.timeoutMs - (performance.now() - this.lastActive);
    if (left > 0) return this.arm(Math.ceil(left));
    this.expired = true;
    this.emit('timeout');
  }

  private touch(): void {
    if (this.timer === null) return;
    this.lastActive = performance.now();
    if (this.expired) this.arm(this.timeoutMs);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.expired = false;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  /** A virtual connection has no RST of its own to send before destroying: RESET is what destroy() sends. */
  resetAndDestroy(): this {
    return this.destroy();
  }

  /**
   * Destroys the stream because the response it carries was cut by its upstream's
   * RST_STREAM with `h2Code`: the RESET carries the code to the caller's sidecar (frame.ts
   * ResetCode.UpstreamH2), which ends its caller's stream with what the code means.
   */
  resetForUpstream(h2Code: number): void {
    this.upstreamH2Code = h2Code;
    this.destroy();
  }

}

function onStreamTimer(s: MuxStream): void {
  s.timerFired();
}

function onCloseTimer(s: MuxStream): void {
  s.closeTimedOut();
}

/**
 * A write's bytes as a frame payload: latin1 text as it is (an HTTP/1.1 head, which the
 * session writes into its batch without a buffer of its own), other text encoded, a Buffer
 * as it is; null for anything else (the Writable's way).
 */
function payloadOf(chunk: unknown, encoding: BufferEncoding | undefined): string | Buffer | null {
  if (typeof chunk === 'string') return encoding === 'latin1' ? chunk : Buffer.from(chunk, encoding ?? 'utf8');
  return Buffer.isBuffer(chunk) ? chunk : null;
}
