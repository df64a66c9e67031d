import type { Socket } from 'node:net';
import { appendFields, type Headers } from '../http/headers.js';
import { FLAG, FRAME, frameHeader, wordsFrame } from './frames.js';
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
 * The write side of an HTTP/2 connection (RFC 9113) shared by the frame-level client and
 * server sessions: the socket, corked per turn (FlushAt), the HPACK encoder (hpack-encoder.ts:
 * no dynamic table, so one encoder per connection and no state per stream), and the frames
 * streams write. Header blocks over the peer's frame size are split into HEADERS and
 * CONTINUATION frames (section 6.10). No closure, promise or copy per frame: a frame is its
 * 9-byte header and the caller's buffer (or a slice of it), written one after the other into
 * the corked socket.
 */
export class FrameWriter {
  /** A read is being processed: its reader flushes at its end (flush()), nothing is scheduled. */
  reading = false;
  private corked = false;
  private readonly encoder = new HpackEncoder();
  private readonly atTick: boolean;

  constructor(
    private readonly socket: Socket,
    private readonly owner: WriterOwner,
    flushAt: FlushAt,
  ) {
    this.atTick = flushAt === 'tick';
  }

  /** Writes `b` into the corked socket; nothing once the session is destroyed or the socket ended. */
  write(b: Buffer, done?: () => void): void {
    if (this.owner.destroyed || this.socket.writableEnded) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      if (!this.reading) {
        if (this.atTick) process.nextTick(uncork, this);
        else setImmediate(uncork, this);
      }
    }
    this.socket.write(b, done);
  }

  /** What the turn wrote leaves now (one writev). */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  /**
   * A header block: `fields` (flat name, value pairs; pseudo-headers first, section 8.3)
   * followed by `more`'s fields. HEADERS, then CONTINUATION frames when the block is over
   * the peer's frame size: END_STREAM on the HEADERS frame, END_HEADERS on the last (section 6.10).
   */
  headers(id: number, fields: string[], more: Headers | undefined, endStream: boolean): void {
    if (more !== undefined) appendFields(fields, more, undefined);
    const block = this.encoder.block(fields);
    const max = this.owner.peerMaxFrame;
    const es = endStream ? FLAG.END_STREAM : 0;
    if (block.length <= max) {
      this.write(frameHeader(block.length, FRAME.HEADERS, es | FLAG.END_HEADERS, id));
      this.write(block);
      return;
    }
    for (let off = 0; off < block.length; off += max) {
      const part = block.subarray(off, off + max);
      const last = off + max >= block.length;
      this.write(frameHeader(part.length, off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (off === 0 ? es : 0) | (last ? FLAG.END_HEADERS : 0), id));
      this.write(part);
    }
  }

  /** A DATA frame (section 6.1); the caller keeps it within the windows and the peer's frame size. */
  data(id: number, data: Buffer, endStream: boolean): void {
    this.write(frameHeader(data.length, FRAME.DATA, endStream ? FLAG.END_STREAM : 0, id));
    if (data.length > 0) this.write(data);
  }

  /** Trailers: a header block with END_STREAM and no pseudo-header (section 8.1). */
  trailers(id: number, t: Headers): void {
    this.headers(id, [], t, true);
  }

  /** RST_STREAM with `code` (section 6.4). */
  reset(id: number, code: number): void {
    this.write(wordsFrame(FRAME.RST_STREAM, 0, id, code));
  }
}

function uncork(w: FrameWriter): void {
  w.flush();
}
