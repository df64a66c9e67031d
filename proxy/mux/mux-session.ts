import type { TLSSocket } from 'node:tls';
import { nodeTimerMs, systemClock, type Clock, type Timer } from '../../common/clock.js';
import { deferred, inTurn } from '../../common/deferred.js';
import { setDirectReads, setSharedReads } from '../net/direct-reads.js';
import { carriedH2Code, CONTROL_PAYLOAD_BYTES, Deframer, EMPTY_PAYLOAD, FLAG_ACK, FLAG_FIN, FrameType, HEADER_BYTES, MAX_WINDOW, ResetCode, type FrameSink } from './frame.js';
import { BATCH_MAX_BYTES, FrameBatch } from './frame-batch.js';
import { releaseBody } from '../net/body-buffers.js';
import { MuxStream, StreamData, type StreamOwner } from './mux-stream.js';

/**
 * ALPN protocol id of the mesh multiplexer's first version (frame.ts: DATA, WINDOW, RESET,
 * GOAWAY), which every release with the multiplexer speaks.
 */
export const MUX_ALPN = 'wren-mux/1';
/**
 * `wren-mux/1` and PING (frame.ts), for the caller's keepalive (MuxSessionOptions.keepalive).
 * A peer of an older release knows only /1 and takes an unknown frame type as malformed
 * (closing the connection), so a caller offers both, /2 first (MUX_ALPNS), and PINGs only
 * on a connection that chose /2; the inbound takes both, /2 first.
 */
export const MUX_ALPN_2 = 'wren-mux/2';
/** What a caller offers, the newest first (the inbound's list has them in the same order: the server's order picks). */
export const MUX_ALPNS = [MUX_ALPN_2, MUX_ALPN] as const;
export type MuxAlpn = (typeof MUX_ALPNS)[number];

/** Whether a connection's ALPN protocol is one of the multiplexer's. */
export function isMuxAlpn(p: string | false | null | undefined): p is MuxAlpn {
  return p === MUX_ALPN_2 || p === MUX_ALPN;
}

/** Bytes waiting to be written to the socket above which streams send no more DATA until it drains. */
const DATA_BACKLOG_BYTES = 1 << 20;
/**
 * Bytes waiting to be written above which the peer is judged not to read its connection
 * (DATA stops at DATA_BACKLOG_BYTES, so only control frames answering the peer's own
 * frames could pile up past it: RESET and WINDOW floods, as HTTP/2's CVE-2019-9512/9514/9515).
 */
const MAX_BACKLOG_BYTES = 4 << 20;
/**
 * Frames written since the socket last had nothing waiting, above which the same holds: a
 * turn's frames leave in one buffer (frame-batch.ts), but while the peer does not read, each
 * turn's batch is a write request and a buffer entry in node's queue, so the bytes alone
 * would let a flood of tiny replies cost far more heap than they count (nghttp2 caps its
 * outbound control-frame queue at 10,000).
 */
const MAX_BACKLOG_FRAMES = 50_000;
/** Frames one callback wrote from which they leave at its end rather than at the turn's check phase (MuxSession.wrote). */
const EARLY_FLUSH_FRAMES = 4;
/**
 * After our FIN on a stream, or our end of the connection, the peer's time to end its half
 * too when MuxSessionOptions.closeTimeoutMs is not given (the sidecar gives
 * limits.delayedCloseTimeoutMs, on both ends): Envoy's delayed_close_timeout, 1 s by default.
 */
const CLOSE_TIMEOUT_MS = 1000;

/** Why a session gave up on its peer (or on one of its streams): each counted (the listener's limit metric). */
export type MuxLimit = 'request-headers-timeout' | 'idle-connection-timeout' | 'premature-resets' | 'mux-write-backlog' | 'delayed-close-timeout' | 'peer-keepalive-timeout' | 'max-concurrent-streams';

export interface MuxSessionOptions {
  /** Client: opens streams (odd ids); server: accepts them (onStream). */
  readonly client: boolean;
  /** Server: the peer's SPIFFE ID, verified by the handshake (the caller of every request). */
  readonly peer?: string;
  /** Per-stream flow-control window, both directions (limits.http2InitialStreamWindowBytes): what one stream's unread bytes may cost. */
  readonly windowBytes: number;
  /**
   * Connection-level window, both directions (limits.http2InitialConnectionWindowBytes): the
   * bytes in flight on the connection. It paces the streams together and bounds no memory:
   * it is given back as DATA arrives (mux-stream.ts onData), as node:http2 does.
   */
  readonly connectionWindowBytes: number;
  /** Streams open at once (server: more are refused with RESET): with windowBytes, the bound on what the connection's unread bytes cost. */
  readonly maxStreams: number;
  /** Server: a peer opened a stream. */
  readonly onStream?: (s: MuxStream) => void;
  /**
   * A connection with no stream for this long is closed (0: never): a server's
   * (limits.idleConnectionTimeoutMs) is counted by onLimit and sends GOAWAY; a client's
   * (the pool's idle timeout) just ends. A client without one closes its connection as
   * soon as its last stream closes.
   */
  readonly idleTimeoutMs?: number;
  /** Server: the first stream must open within this (limits.requestHeadersTimeoutMs; 0: no bound), as a first request head must. */
  readonly firstStreamTimeoutMs?: number;
  /**
   * Server: streams the peer may reset before they end, a burst and a rate per second, as
   * the mTLS HTTP/2 sessions' backstop (CVE-2023-44487); past it the session closes.
   */
  readonly resetBudget?: { readonly burst: number; readonly perSecond: number };
  readonly clock?: Clock;
  /**
   * After our FIN on a stream (its end()), or our end of the connection, the peer's time to
   * end its half too (default CLOSE_TIMEOUT_MS; 0: no bound); then the stream goes (reset if
   * the peer is still sending, mux-stream.ts closeTimedOut) or the socket is destroyed,
   * counted by onLimit as 'delayed-close-timeout'.
   */
  readonly closeTimeoutMs?: number;
  /**
   * Client: once the connection speaks `wren-mux/2` (usePing), a PING every intervalMs
   * while the session is open (limits.peerKeepalive); when no byte at all arrives within
   * timeoutMs of one (its answer, or anything else: any byte shows the peer and the path
   * are there), the session closes, counted by onLimit as 'peer-keepalive-timeout', and
   * its streams fail as a lost connection. 0 in either: none. One timer per session, on
   * `clock`.
   */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
  /** A limit fired and the session closed (or, for the idle timeout, drained; for the close timeout, let the stream go). */
  readonly onLimit?: (limit: MuxLimit) => void;
  /** The connection closed or broke the protocol (the reason, for the log). */
  readonly onClose?: (why: string | null) => void;
}

/** An error like a TCP reset, so the layers above classify a lost session as a lost connection. */
function resetError(msg: string): Error {
  return Object.assign(new Error(msg), { code: 'ECONNRESET' });
}

/**
 * Many virtual connections (MuxStream) on one mTLS connection between two sidecars
 * (frames: proxy/mux/frame.ts). Everything written in one turn of the event loop, by every
 * stream, leaves in one write: the frames are laid out in one buffer as they come
 * (frame-batch.ts) and handed to the TLS socket at the turn's check phase (setImmediate), so
 * at load one TLS record, one syscall and one wake-up of the peer carry many requests (what
 * an HTTP/2 sender does; docs/benchmarks.md "The floor of a Node pair").
 */
export class MuxSession implements StreamOwner, FrameSink {
  private readonly streams = new Map<number, MuxStream>();
  private readonly deframer: Deframer;
  /** Reads are views of the thread's shared read buffer (setSharedReads): what outlives a read is copied. */
  readonly viewReads: boolean;
  private nextId: number;
  /** Server: the highest stream id the peer has opened (new ones must be higher). */
  private lastPeerId = 0;
  /** This turn's frames, not yet handed to the socket. */
  private readonly batch = new FrameBatch();
  /** What each write of a batch hands back after its callback (flush): its payloads held by reference and the lent buffers its frames end, oldest first. */
  private readonly written: Buffer[][] = [];
  private readonly piecesWritten = (err?: Error | null): void => {
    // A failed write (the socket destroyed) may leave a buffer with node: let the garbage collector have them all.
    if (err) return void (this.written.length = 0);
    const pieces = this.written.shift();
    if (pieces !== undefined) for (let i = 0; i < pieces.length; i++) releaseBody(pieces[i]);
  };
  /** The batch's hand-over is queued for the end of this turn (setImmediate). */
  private flushQueued = false;
  /** Frames written since the last look at the batch on the tick queue (EARLY_FLUSH_FRAMES); -1: no look queued. */
  private framesThisTick = -1;
  private closed = false;
  private emptyTimer: NodeJS.Timeout | null = null;
  private firstTimer: NodeJS.Timeout | null = null;
  /** Armed when we end the connection (end()): the peer's time to end its side. */
  private endTimer: NodeJS.Timeout | null = null;
  /** What the socket still had to write when endTimer last fired (a flush still progressing earns more time). */
  private endBacklog = 0;
  readonly closeTimeoutMs: number;
  /** The keepalive's one timer (MuxSessionOptions.keepalive): the next PING, or the deadline of the one sent. */
  private pingTimer: Timer | null = null;
  /** socket.bytesRead when the PING awaiting an answer went (-1: none awaiting): any byte read since is the peer. */
  private readAtPing = -1;
  /** The payload of the last PING sent. */
  private pingSeq = 0;
  /** Bytes the peer may still send on the connection before we grant more. */
  private connRecvWindow: number;
  /** Bytes received on the connection (in a stream's buffer, or dropped), not yet granted back (grantConnection). */
  private connConsumed = 0;
  /** Bytes the peer lets us send on the connection. */
  private connWindow: number;
  /** Client: streams the peer takes at once, learnt from its refusals (REFUSED). */
  private limit: number;
  /** Server: the peer's reset budget left, and when it was last refilled. */
  private resetTokens: number;
  private resetAt = 0;
  /** Keepalive timers and the reset budget's refill (options.clock, else the system's). */
  private readonly clock: Clock;
  /** Frames written since the socket last had nothing waiting (MAX_BACKLOG_FRAMES). */
  private queued = 0;
  /** Streams waiting for connection-level window, woken in order when it opens. */
  private waitingForWindow: MuxStream[] = [];
  /** GOAWAY sent or received: no new streams. */
  goingAway = false;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly peer: string;

  constructor(
    readonly socket: TLSSocket,
    private readonly o: MuxSessionOptions,
  ) {
    this.nextId = o.client ? 1 : 2;
    this.clock = o.clock ?? systemClock;
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.peer = o.peer ?? '';
    // Armed with Node's setTimeout here and per stream (mux-stream.ts _final): a config's "720h" must not become 1 ms.
    this.closeTimeoutMs = nodeTimerMs(o.closeTimeoutMs ?? CLOSE_TIMEOUT_MS);
    this.connRecvWindow = o.connectionWindowBytes;
    this.connWindow = o.connectionWindowBytes;
    this.limit = o.maxStreams;
    this.resetTokens = o.resetBudget?.burst ?? Infinity;
    socket.setNoDelay(true);
    socket.on('drain', () => {
      this.queued = 0;
      this.wake();
    });
    const onData = (d: Buffer): void => inTurn(this.deframer.push, this.deframer, d);
    socket.on('data', onData);
    // Each read straight to the deframer (net/direct-reads.ts), not through the socket's
    // Readable, and into the thread's shared buffer: the deframer copies a frame cut by the
    // read's end, the streams what their readers keep.
    this.viewReads = setSharedReads(socket, onData);
    if (!this.viewReads) setDirectReads(socket, onData);
    this.deframer = new Deframer(this);
    socket.on('error', (e) => this.close(e.message, e));
    socket.on('close', () => this.close(null));
    socket.on('end', () => this.close(null));
    this.emptied();
    const first = o.firstStreamTimeoutMs ?? 0;
    if (!o.client && first > 0) {
      this.firstTimer = setTimeout(() => {
        this.firstTimer = null;
        if (this.lastPeerId === 0) this.giveUp('request-headers-timeout', `no stream within ${first} ms`);
      }, nodeTimerMs(first));
      this.firstTimer.unref();
    }
  }

  /** What the peer lets us send now: nothing while the socket holds a backlog (it drains first). */
  get connSendWindow(): number {
    return this.socket.writableLength + this.batch.length >= DATA_BACKLOG_BYTES ? 0 : this.connWindow;
  }

  /** Client: no new stream fits (the peer's limit as learnt, or ours). */
  get full(): boolean {
    return this.streams.size >= this.limit;
  }

  /** Client: the peer has refused a stream, so `full` is its limit, not only ours: wait for a stream of this session rather than open another. */
  get limitLearnt(): boolean {
    return this.limit < this.o.maxStreams;
  }

  private giveUp(limit: MuxLimit, why: string): void {
    if (this.closed) return;
    this.o.onLimit?.(limit);
    this.socket.destroy();
    this.close(why);
  }

  /** Streams waiting for window (the connection's, or the socket to drain) try again. */
  private wake(): void {
    const waiting = this.waitingForWindow;
    if (waiting.length === 0) return;
    this.waitingForWindow = [];
    for (const st of waiting) if (!st.destroyed) st.onWindow(0);
  }

  /**
   * No stream open: the session starts counting towards its idle timeout. A client's
   * streams are the pool's virtual connections, idle ones included, so it has none left
   * only when its last requests were cancelled (each takes its virtual connection with it):
   * it stays for the next request rather than costing it a TLS handshake (a flood of
   * cancellations, a rapid reset relayed by the outbound, would otherwise be one per
   * request), as an HTTP/2 session to the peer stays.
   */
  private emptied(): void {
    const ms = this.o.idleTimeoutMs ?? 0;
    if (ms <= 0 || this.closed) return;
    if (this.emptyTimer !== null) return void this.emptyTimer.refresh();
    this.emptyTimer = setTimeout(() => {
      if (this.streams.size > 0 || this.closed) return;
      if (this.o.client) return this.end();
      this.o.onLimit?.('idle-connection-timeout');
      this.goAway();
    }, nodeTimerMs(ms));
    this.emptyTimer.unref();
  }

  get size(): number {
    return this.streams.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Client: a new virtual connection, or null when this session takes no more. */
  open(): MuxStream | null {
    if (this.closed || this.goingAway || this.streams.size >= this.limit) return null;
    const id = this.nextId;
    this.nextId += 2;
    const s = new MuxStream(id, this, this.o.windowBytes);
    s.openBefore = this.streams.size;
    this.streams.set(id, s);
    // The id's first use on the wire, now, in the order streams are opened: an empty DATA
    // frame opens it at the peer. A peer takes a new id as closing every lower one it has not
    // seen (data() below, as RFC 9113 section 5.1.1), and the stream's own first bytes may
    // leave after those of a stream opened later (a request with a body waits for the
    // session's handshake, a bodyless one does not): its request would be dropped unanswered.
    this.sendData(id, EMPTY_PAYLOAD, false);
    return s;
  }

  /** No new streams (drain, certificate rotation); the peer is told, open streams finish. */
  goAway(): void {
    if (this.goingAway || this.closed) return;
    this.goingAway = true;
    this.sendControl(FrameType.GoAway, 0, 0);
    if (this.streams.size === 0) this.end();
  }

  private end(): void {
    // Ending: no new stream may start on it (a pool asking now must open another connection).
    this.goingAway = true;
    // Nothing more is written after our FIN (a PING would be a write after end): the close
    // timeout bounds the rest.
    this.stopPings();
    this.flush();
    this.socket.end();
    // The peer ends its side in turn (its socket's 'end'), or is made to: a peer that never
    // did kept the connection for good (after an idle GOAWAY too). Envoy's
    // delayed_close_timeout, with its rule that a flush still under way restarts the timer.
    const ms = this.closeTimeoutMs;
    if (ms <= 0 || this.endTimer !== null || this.closed) return;
    this.endBacklog = this.socket.writableLength;
    this.endTimer = setTimeout(onEndTimer, ms, this);
    this.endTimer.unref();
  }

  /** The close timeout after end() ran out: the socket goes, unless what it still writes is draining. */
  endTimedOut(): void {
    if (this.closed) return;
    const left = this.socket.writableLength;
    if (left > 0 && left < this.endBacklog) {
      this.endBacklog = left;
      return void this.endTimer!.refresh();
    }
    this.o.onLimit?.('delayed-close-timeout');
    this.socket.destroy();
    this.close(`the peer did not close the connection within ${this.closeTimeoutMs} ms of ours`);
  }

  /** Closes the connection now; its streams fail with `cause` (a lost connection without one). */
  destroy(cause?: Error): void {
    this.socket.destroy();
    this.close(cause?.message ?? null, cause);
  }

  // FrameSink
  control(type: FrameType, id: number, value: number, flags: number): void {
    if (type === FrameType.Window) {
      if (id !== 0) {
        const st = this.streams.get(id);
        if (st !== undefined && !st.onWindow(value)) {
          this.sendControl(FrameType.Reset, id, ResetCode.FlowControl);
          st.onReset(resetError('stream window over 2^31-1 (flow-control error)'));
          this.peerBrokeStream();
        }
        return;
      }
      if (this.connWindow + value > MAX_WINDOW) return this.malformed('connection window over 2^31-1');
      this.connWindow += value;
      return this.wake();
    }
    if (type === FrameType.Reset) {
      const st = this.streams.get(id);
      if (st === undefined) return;
      // Only a server refuses a stream (it is the one that did not process it): on the
      // server, a client's RESET with REFUSED is a reset like any other, and spends the
      // budget below. Taken as a refusal there too, it skipped the budget, and a peer
      // resetting its streams with that code had rapid reset without bound (CVE-2023-44487).
      if (value === ResetCode.Refused && this.o.client) {
        // Never processed (RFC 9113 section 8.7: safe to retry whatever the method): the
        // retry layer sees REFUSED_STREAM, and this connection takes no more than the peer
        // did. The peer refused it with its limit's worth open, of the streams we had open
        // when we opened it (openBefore: the frames arrive in order, so it knew of no later
        // one). Not the streams open now: those opened after it in the same burst would
        // count, and the next burst be refused again. An estimate from above: a stream the
        // peer had closed may count, and a later refusal lowers it further.
        this.limit = Math.max(1, Math.min(this.limit, st.openBefore));
        return st.onReset(Object.assign(resetError('stream refused by the peer (REFUSED_STREAM)'), { refusedStream: true }));
      }
      if (!this.o.client && !this.spendReset()) return this.giveUp('premature-resets', 'the peer reset streams past its budget');
      const h2Code = carriedH2Code(value);
      if (h2Code === undefined) return st.onReset(resetError(`stream reset by the peer (code ${value})`));
      // The peer's app reset its stream: its code goes on to the one error mapping (toProxyError).
      return st.onReset(Object.assign(resetError(`stream reset by the peer's upstream (code ${h2Code})`), { resetCode: h2Code }));
    }
    else if (type === FrameType.GoAway) {
      this.goingAway = true;
      if (this.streams.size === 0) this.end();
    } else if (type === FrameType.Ping) {
      // Only on wren-mux/2 (the deframer refuses the type otherwise). As HTTP/2 (RFC 9113
      // section 6.7): on the connection, not a stream; answered with its payload unless it
      // is an answer, which needs nothing more (its bytes were the keepalive's sign of life).
      if (id !== 0) return this.malformed(`PING on stream ${id}`);
      if ((flags & FLAG_ACK) === 0) this.sendPing(value, true);
    }
  }

  /** A reset from the peer costs a token; the budget refills at perSecond (a token bucket). */
  private spendReset(): boolean {
    const b = this.o.resetBudget;
    if (b === undefined) return true;
    const now = this.clock.now();
    this.resetTokens = Math.min(b.burst, this.resetTokens + ((now - this.resetAt) / 1000) * b.perSecond);
    this.resetAt = now;
    if (this.resetTokens < 1) return false;
    this.resetTokens -= 1;
    return true;
  }

  malformed(why: string): void {
    this.socket.destroy();
    this.close(`protocol error: ${why}`);
  }

  /** DATA, in pieces as it arrives (frame.ts): windows, stream opening and resets go by the piece. */
  data(id: number, payload: Buffer, fin: boolean): void {
    // The connection's window first: a peer that overruns it breaks the protocol for all its streams.
    if (payload.length > this.connRecvWindow) return this.malformed(`${payload.length} bytes of DATA over the connection window (${this.connRecvWindow} left)`);
    this.connRecvWindow -= payload.length;
    let s = this.streams.get(id);
    if (s === undefined) {
      // A stream that was open and is closed here (reset, timed out): what was in flight when it
      // closed is dropped, and the connection's window given back (HTTP/2's STREAM_CLOSED, RFC 9113
      // section 5.1). Never a new stream: the rest of an old request body must not be read as
      // requests of a new virtual connection.
      if (this.o.client ? id % 2 === 1 && id < this.nextId : id % 2 === 1 && id <= this.lastPeerId) return this.grantConnection(payload.length);
      // A new stream: only a server accepts them, with the client's parity and ids that only grow.
      if (this.o.client || id % 2 !== 1) return this.malformed(`DATA for unknown stream ${id}`);
      this.lastPeerId = id;
      if (this.goingAway || this.streams.size >= this.o.maxStreams) {
        // Past maxStreams (limits.maxConcurrentStreams) counted; a stream refused by a drain is no limit.
        if (!this.goingAway) this.o.onLimit?.('max-concurrent-streams');
        this.sendControl(FrameType.Reset, id, ResetCode.Refused);
        return this.grantConnection(payload.length);
      }
      s = new MuxStream(id, this, this.o.windowBytes);
      this.streams.set(id, s);
      this.o.onStream?.(s);
    }
    const taken = s.onData(payload, fin);
    if (taken === StreamData.Taken) return;
    if (taken === StreamData.OverWindow) {
      this.sendControl(FrameType.Reset, id, ResetCode.FlowControl);
      s.onReset(resetError('flow-control window exceeded'));
      this.grantConnection(payload.length);
    }
    this.peerBrokeStream();
  }

  /**
   * The peer broke a stream's rules and the stream was reset for it (DATA past its window or
   * after its FIN, a window grant past 2^31-1): as its own RESET would, this frees the
   * stream's slot and cuts its request at the app, so it spends the reset budget. Else a
   * peer had rapid reset (CVE-2023-44487) without bound by breaking streams instead of
   * resetting them (Envoy takes invalid messaging on a stream as a connection error by
   * default: stream_error_on_invalid_http_messaging).
   */
  private peerBrokeStream(): void {
    if (!this.o.client && !this.spendReset()) this.giveUp('premature-resets', 'the peer broke streams past its reset budget');
  }

  returnConnectionWindow(n: number): void {
    this.grantConnection(n);
  }

  /**
   * Bytes received on the connection reached a stream's buffer (or were dropped): the peer
   * may send as many again (WINDOW on stream 0, RFC 9113 section 6.9), granted once half the
   * connection's window has been (nghttp2's rule; a grant per message would cost a frame
   * each). Not when a reader consumes them: the stream windows bound what unread bytes
   * cost (maxStreams × windowBytes), and a connection window held by stalled readers would
   * stop every stream of the connection (mux-stream.ts).
   */
  private grantConnection(n: number): void {
    if (n <= 0 || this.closed) return;
    this.connConsumed += n;
    if (this.connConsumed < this.o.connectionWindowBytes / 2) return;
    const g = this.connConsumed;
    this.connConsumed = 0;
    this.connRecvWindow += g;
    this.sendControl(FrameType.Window, 0, g);
  }

  // StreamOwner
  sendData(id: number, payload: Buffer, fin: boolean, ends?: Buffer): void {
    if (!this.writable()) return;
    this.connWindow -= payload.length;
    this.batch.dataFrame(fin ? FLAG_FIN : 0, id, payload);
    if (ends !== undefined) this.batch.releaseAfterWrite(ends);
    this.wrote(HEADER_BYTES + payload.length);
  }

  /** sendData for text sent as latin1 (an HTTP/1.1 head): written into the batch, no buffer of its own. */
  sendLatin1(id: number, text: string): void {
    if (!this.writable()) return;
    this.connWindow -= text.length;
    this.batch.dataHeader(0, id, text.length);
    this.batch.latin1(text);
    this.wrote(HEADER_BYTES + text.length);
  }

  sendParts(id: number, parts: readonly (string | Buffer)[], bytes: number): void {
    if (!this.writable()) return;
    this.connWindow -= bytes;
    this.batch.dataHeader(0, id, bytes);
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (typeof p === 'string') this.batch.latin1(p);
      else {
        this.batch.bytes(p);
        releaseBody(p);
      }
    }
    this.wrote(HEADER_BYTES + bytes);
  }

  sendWindow(id: number, bytes: number): void {
    this.sendControl(FrameType.Window, id, bytes);
  }

  blockedOnConnection(s: MuxStream): void {
    this.waitingForWindow.push(s);
  }

  sendReset(id: number, code: number): void {
    this.sendControl(FrameType.Reset, id, code);
  }

  closeTimedOut(): void {
    this.o.onLimit?.('delayed-close-timeout');
  }

  removed(id: number): void {
    this.streams.delete(id);
    if (this.streams.size > 0 || this.closed) return;
    if (this.goingAway || (this.o.client && (this.o.idleTimeoutMs ?? 0) <= 0)) this.end();
    else this.emptied();
  }

  private sendControl(type: FrameType, id: number, value: number): void {
    if (!this.writable()) return;
    this.batch.control(type, id, value);
    this.wrote(HEADER_BYTES + CONTROL_PAYLOAD_BYTES);
  }

  private sendPing(value: number, ack: boolean): void {
    // Not after our FIN (a PING crossing our end of the connection): a write after end.
    if (!this.writable() || this.socket.writableEnded) return;
    this.batch.control(FrameType.Ping, 0, value, ack ? FLAG_ACK : 0);
    this.wrote(HEADER_BYTES + CONTROL_PAYLOAD_BYTES);
  }

  /**
   * The connection speaks `wren-mux/2` (its ALPN; a client learns it at the handshake, a
   * server at once): PING is a frame type, answered; a client with a keepalive starts it.
   */
  usePing(): void {
    if (this.closed) return;
    this.deframer.pings = true;
    const ka = this.o.keepalive;
    if (!this.o.client || ka === undefined || ka.intervalMs <= 0 || ka.timeoutMs <= 0 || this.pingTimer !== null || this.goingAway) return;
    this.armPing(ka.intervalMs);
  }

  private armPing(ms: number): void {
    this.pingTimer = this.clock.setTimeout(this.pingTimerFired, ms);
    this.pingTimer.unref?.();
  }

  private stopPings(): void {
    this.readAtPing = -1;
    if (this.pingTimer === null) return;
    this.clock.clearTimeout(this.pingTimer);
    this.pingTimer = null;
  }

  /**
   * The keepalive's timer: the interval passed (a PING goes, and the peer has timeoutMs to
   * send anything), or the PING's deadline. Judged by the connection's bytes read (a
   * counter node keeps): any byte shows the peer and the path are there, the ACK or not,
   * and the reads cost the keepalive nothing (no mark per read, no timer per request).
   */
  private readonly pingTimerFired = (): void => {
    this.pingTimer = null;
    if (this.closed || this.socket.destroyed) return;
    const ka = this.o.keepalive!;
    if (this.readAtPing < 0) {
      this.readAtPing = this.socket.bytesRead;
      this.pingSeq = (this.pingSeq + 1) >>> 0;
      this.sendPing(this.pingSeq, false);
      return this.armPing(ka.timeoutMs);
    }
    // The deadline. Bytes the peer sent in time may still wait to be read: a turn of the
    // event loop that ran long (a GC pause, a burst of work) reaches its timers before its
    // reads. The verdict waits for this turn's reads (the check phase comes after them).
    if (this.socket.bytesRead === this.readAtPing) return void setImmediate(pingVerdict, this);
    this.answered();
  };

  /** The peer sent something since the PING: the next one an interval after the last. */
  private answered(): void {
    const ka = this.o.keepalive!;
    this.readAtPing = -1;
    this.armPing(Math.max(0, ka.intervalMs - ka.timeoutMs));
  }

  /** The PING's deadline passed and this turn's reads are in: nothing from the peer means the connection is gone. */
  pingJudged(): void {
    if (this.closed || this.socket.destroyed || this.pingTimer !== null || this.readAtPing < 0) return;
    if (this.socket.bytesRead !== this.readAtPing) return this.answered();
    this.giveUp('peer-keepalive-timeout', `nothing from the peer within ${this.o.keepalive!.timeoutMs} ms of a PING`);
  }

  private writable(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  /** A frame of `bytes` went into the batch: its hand-over at the turn's end, and the backlog's bounds. */
  private wrote(bytes: number): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      // At the end of the event loop's turn (its check phase), not on the next tick: node's
      // TLS socket completes every write on a native immediate (TLSWrap::OnStreamAfterWrite),
      // and a write made while one is in flight waits for that immediate anyway. Flushed on
      // the tick, the first callback's frames of a turn left alone and the rest of the
      // turn's followed at the check phase: two TLS records, two syscalls and two wake-ups
      // of the peer. Here every frame of the turn leaves in one: 19,613 against 17,271
      // requests/s and 24 / 24 against 29 / 29 µs per request per sidecar at HTTP/1.1
      // saturation (docs/benchmarks.md, "Issue 12, 2026-12-05 tenth session").
      setImmediate(flushBatch, this);
    }
    // A callback that wrote many frames (a read of many HTTP/2 calls) hands them over at its
    // end, as before: they are worth a write of their own, and holding them to the check
    // phase only made the peer wait for this turn's other callbacks (gRPC at saturation:
    // 16,745 against 17,921 calls/s with every batch held).
    if (this.framesThisTick < 0) {
      this.framesThisTick = 0;
      deferred(lookAtBatch, this);
    }
    this.framesThisTick++;
    const waiting = this.socket.writableLength;
    if (waiting === 0 && this.batch.length === bytes) this.queued = 0;
    if (++this.queued > MAX_BACKLOG_FRAMES || waiting + this.batch.length > MAX_BACKLOG_BYTES) return this.giveUp('mux-write-backlog', 'the peer does not read its connection');
    // A bulk transfer hands over as it goes: the batch never grows past BATCH_MAX_BYTES.
    if (this.batch.length >= BATCH_MAX_BYTES) this.flush();
  }

  /** The tick after a callback that wrote frames: many of them go now, a few wait for the check phase. */
  looked(): void {
    const n = this.framesThisTick;
    this.framesThisTick = -1;
    if (n >= EARLY_FLUSH_FRAMES) this.flush();
  }

  /** The turn's check phase: its frames go. */
  flushed(): void {
    this.flushQueued = false;
    this.flush();
  }

  /** Hands this turn's frames to the socket, in one write (a corked writev when the batch holds large payloads by reference). */
  flush(): void {
    if (this.batch.hasPieces) {
      const pieces = this.batch.takePieces();
      if (!this.writable()) return;
      const s = this.socket;
      const last = pieces.length - 1;
      s.cork();
      for (let i = 0; i < last; i++) s.write(pieces[i]);
      // The write's callback says node is done with these buffers: the lent body buffers
      // among them (body-buffers.ts) go back then. Callbacks come in write order.
      s.write(pieces[last], this.piecesWritten);
      const after = this.batch.takeReleases();
      this.written.push(after === null ? pieces : pieces.concat(after));
      s.uncork();
      return;
    }
    const b = this.batch.take();
    const after = this.batch.takeReleases();
    if (b === null || !this.writable()) return;
    if (after === null) this.socket.write(b);
    else {
      this.socket.write(b, this.piecesWritten);
      this.written.push(after);
    }
  }

  private close(why: string | null, cause?: Error): void {
    if (this.closed) return;
    this.closed = true;
    // Not a frame more: those behind the one that closed it, in the same read, included.
    this.deframer.stop();
    this.batch.clear();
    if (this.emptyTimer !== null) clearTimeout(this.emptyTimer);
    if (this.firstTimer !== null) clearTimeout(this.firstTimer);
    if (this.endTimer !== null) clearTimeout(this.endTimer);
    this.stopPings();
    const err = cause ?? resetError(why ?? 'mesh connection closed');
    for (const s of [...this.streams.values()]) s.onReset(err);
    this.streams.clear();
    this.o.onClose?.(why);
  }
}

function lookAtBatch(s: MuxSession): void {
  s.looked();
}

function flushBatch(s: MuxSession): void {
  s.flushed();
}

function onEndTimer(s: MuxSession): void {
  s.endTimedOut();
}

function pingVerdict(s: MuxSession): void {
  s.pingJudged();
}
