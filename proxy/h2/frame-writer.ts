import type { Socket } from 'node:net';
import { appendFields, type Headers } from '../http/headers.js';
import { FLAG, FRAME } from './frames.js';
import { HpackEncoder } from './hpack-encoder.js';

/**
 * When the frames of a turn leave the socket, corked from the first of them (one write, one
 * syscall, for everything a turn writes):
 * - 'tick': on the next tick. The client to the app (h2-client-session.ts) writes in bursts
 *   its caller makes synchronously: a request's HEADERS and settled body (open()), a read's
 *   ACKs and WINDOW_UPDATEs, a request body chunk's DATA. The tick queue runs once the turn's
 *   microtasks are done, so the requests the inbound dispatched in one turn share a write,
 *   and none waits for the loop's other phases before it reaches the app.
 * - 'check': at the loop's check phase (setImmediate), as node:http2's writes are (nghttp2's
 *   are flushed from a native immediate). The server for the local app (h2-server-session.ts)
 *   writes a response over several turns: its head in a promise callback, its DATA from the
 *   upstream's read, its end at the upstream body's 'end' a tick later. Flushed on the next
 *   tick they went out in three writes, at the check phase in one (test/request-cost: 1502
 *   writes for 500 requests, then 502).
 * Either way, while `reading` is set nothing is scheduled: the reader flushes at the end of its read.
 */
type FlushAt = 'tick' | 'check';

/** The session's state the writer consults: once destroyed nothing is written; the peer's SETTINGS_MAX_FRAME_SIZE. */
interface WriterOwner {
  readonly destroyed: boolean;
  readonly peerMaxFrame: number;
}

/**
 * The buffer a turn's small frames are written into; a new one when it is full (the old one
 * is the socket's until written). Under half of node's Buffer pool, so that it is a slice
 * of the pool (no allocation of its own), and an idle connection keeps no more than this.
 */
const TURN_BYTES = 4000;
/** A payload up to this is copied next to its frame header; a larger one is written as it is (no copy). */
const COPY_MAX = 1024;

/**
 * The write side of an HTTP/2 connection (RFC 9113) shared by the frame-level client and
 * server sessions: the socket, corked per turn (FlushAt), the connection's HPACK encoder
 * (hpack-encoder.ts, its dynamic table sized by the peer's SETTINGS), and the frames
 * streams write. Header blocks over the peer's frame size are split into HEADERS and
 * CONTINUATION frames (section 6.10).
 *
 * A turn's frames go into one buffer (`turn`): frame headers and header blocks are written
 * in place (encoded straight into it), payloads up to COPY_MAX copied after their header,
 * and what the turn wrote leaves in one socket write at the flush, as nghttp2 serialises a
 * session's frames into one buffer. A larger payload is written as it is, after what the
 * turn buffered before it. Before, each frame was two writes (its 9-byte header, its
 * payload) into the corked socket, and node's Writable bookkeeping per write was 2-3 % of a
 * sidecar at gRPC saturation (docs/benchmarks.md, "One write per turn"). No closure,
 * promise or allocation per frame; the bytes buffered and not yet written are at most
 * TURN_BYTES, which the congestion checks (socket.writableLength) see at the next flush.
 */
export class FrameWriter {
  /** A read is being processed: its reader flushes at its end (flush()), nothing is scheduled. */
  reading = false;
  private corked = false;
  private readonly encoder = new HpackEncoder();
  private readonly atTick: boolean;
  /** The turn's buffer: [start, end) is written but not yet handed to the socket; end onwards is free. */
  private turn: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;

  constructor(
    private readonly socket: Socket,
    private readonly owner: WriterOwner,
    flushAt: FlushAt,
  ) {
    this.atTick = flushAt === 'tick';
  }

  /** Writes `b` (copied if small); `done` when the socket has written it. Nothing once the session is destroyed or the socket ended. */
  write(b: Buffer, done?: () => void): void {
    if (!this.open()) return;
    if (b.length <= COPY_MAX) {
      this.room(b.length);
      b.copy(this.turn, this.end);
      this.end += b.length;
      if (done !== undefined) this.handOver(done);
      return;
    }
    this.handOver();
    this.socket.write(b, done);
  }

  /** What the turn wrote leaves now (one write, or one writev after a large payload). */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.handOver();
    this.socket.uncork();
  }

  /**
   * A header block: `fields` (flat name, value pairs; pseudo-headers first, section 8.3)
   * followed by `more`'s fields. HEADERS, then CONTINUATION frames when the block is over
   * the peer's frame size: END_STREAM on the HEADERS frame, END_HEADERS on the last (section 6.10).
   */
  headers(id: number, fields: string[], more: Headers | undefined, endStream: boolean): void {
    if (more !== undefined) appendFields(fields, more, undefined);
    if (!this.open()) return;
    const max = this.owner.peerMaxFrame;
    const es = endStream ? FLAG.END_STREAM : 0;
    const bound = this.encoder.bound(fields);
    if (bound <= max && bound <= COPY_MAX * 8) {
      // Encoded in place after room for its frame header: it fits one frame whatever it encodes to.
      this.room(9 + bound);
      const at = this.end;
      const end = this.encoder.encode(fields, this.turn, at + 9, bound);
      this.header(at, end - at - 9, FRAME.HEADERS, es | FLAG.END_HEADERS, id);
      this.end = end;
      return;
    }
    const block = this.encoder.block(fields);
    for (let off = 0; off < block.length; off += max) {
      const part = block.subarray(off, off + max);
      const last = off + max >= block.length;
      this.frame(part.length, off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (off === 0 ? es : 0) | (last ? FLAG.END_HEADERS : 0), id);
      this.write(part);
    }
  }

  /** A DATA frame (section 6.1); the caller keeps it within the windows and the peer's frame size. */
  data(id: number, data: Buffer, endStream: boolean): void {
    if (!this.open()) return;
    const n = data.length;
    if (n <= COPY_MAX) {
      this.room(9 + n);
      this.header(this.end, n, FRAME.DATA, endStream ? FLAG.END_STREAM : 0, id);
      data.copy(this.turn, this.end + 9);
      this.end += 9 + n;
      return;
    }
    this.frame(n, FRAME.DATA, endStream ? FLAG.END_STREAM : 0, id);
    this.handOver();
    this.socket.write(data);
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE, after each SETTINGS frame: the encoder's dynamic table (hpack-encoder.ts). */
  tableLimit(peerSetting: number): void {
    this.encoder.setLimit(peerSetting);
  }

  /** Trailers: a header block with END_STREAM and no pseudo-header (section 8.1). */
  trailers(id: number, t: Headers): void {
    this.headers(id, [], t, true);
  }

  /** RST_STREAM with `code` (section 6.4). */
  reset(id: number, code: number): void {
    this.word(FRAME.RST_STREAM, id, code);
  }

  /** A frame whose payload is one 32-bit word, no flags: RST_STREAM, WINDOW_UPDATE (sections 6.4, 6.9). */
  word(type: number, id: number, value: number): void {
    if (!this.open()) return;
    this.room(13);
    this.header(this.end, 4, type, 0, id);
    this.turn.writeUInt32BE(value >>> 0, this.end + 9);
    this.end += 13;
  }

  /** Whether writing is still possible; if so, the socket is corked and the turn's flush scheduled. */
  private open(): boolean {
    if (this.owner.destroyed || this.socket.writableEnded) return false;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      if (!this.reading) {
        if (this.atTick) process.nextTick(uncork, this);
        else setImmediate(uncork, this);
      }
    }
    return true;
  }

  /** A frame header alone, in the turn's buffer (its payload follows by another call). */
  private frame(length: number, type: number, flags: number, id: number): void {
    this.room(9);
    this.header(this.end, length, type, flags, id);
    this.end += 9;
  }

  /** The 9 octets of a frame header at turn[at] (section 4.1). */
  private header(at: number, length: number, type: number, flags: number, id: number): void {
    const b = this.turn;
    b[at] = (length >>> 16) & 0xff;
    b[at + 1] = (length >>> 8) & 0xff;
    b[at + 2] = length & 0xff;
    b[at + 3] = type;
    b[at + 4] = flags;
    b.writeUInt32BE(id & 0x7fffffff, at + 5);
  }

  /** Room for `n` more octets in the turn's buffer: what is in it goes to the socket first when there is not. */
  private room(n: number): void {
    if (this.end + n <= this.turn.length) return;
    this.handOver();
    this.turn = Buffer.allocUnsafe(Math.max(TURN_BYTES, n));
    this.start = this.end = 0;
  }

  /** Hands what the turn buffered to the (corked) socket. */
  private handOver(done?: () => void): void {
    // The session closed the socket meanwhile: what the turn buffered is dropped, as corked writes are.
    if (this.owner.destroyed || this.socket.writableEnded) this.start = this.end;
    if (this.end === this.start) {
      if (done !== undefined && !this.socket.writableEnded) this.socket.write(EMPTY, done);
      return;
    }
    this.socket.write(this.turn.subarray(this.start, this.end), done);
    this.start = this.end;
  }
}

const EMPTY = Buffer.alloc(0);

function uncork(w: FrameWriter): void {
  w.flush();
}
