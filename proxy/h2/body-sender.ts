import type { Headers } from '../http/headers.js';
import type { FrameWriter } from './frame-writer.js';

const EMPTY = Buffer.alloc(0);

/** What sending a body needs of its session (both h2 sessions implement it). */
export interface SendHost {
  /** The connection's send window (RFC 9113 section 6.9.1), shared by its streams. */
  sendWindow: number;
  /** SETTINGS_MAX_FRAME_SIZE of the peer: the most a DATA frame may carry (section 4.2). */
  readonly peerMaxFrame: number;
  readonly out: FrameWriter;
  /** The stream is short of window: its flush() runs when a WINDOW_UPDATE gives some. */
  blocked(st: BodySender): void;
}

/**
 * The outgoing body of a stream, for the client's requests (h2-client-stream.ts) and the
 * server's responses (h2-server-stream.ts): DATA under the stream's and the connection's
 * send windows and the peer's frame size (RFC 9113 section 5.2), the rest queued in order
 * until a WINDOW_UPDATE (flush()), the end on the last DATA frame, or on the trailers
 * (section 8.1), or on an empty DATA frame. A base class rather than an object per stream:
 * nothing more is allocated per request, and the subclasses' hooks are plain methods.
 */
export abstract class BodySender {
  abstract readonly id: number;
  abstract readonly session: SendHost;
  /** What the peer lets this stream send (section 6.9.1). */
  abstract sendWindow: number;
  abstract readonly closed: boolean;
  /** Our END_STREAM has been written. */
  abstract readonly localEnded: boolean;
  /** Body bytes waiting for window, in order; `endQueued`: the end follows them. */
  protected queued: Buffer[] | null = null;
  protected endQueued = false;

  /** The trailers to send after the body (undefined or empty: none). */
  protected abstract outgoingTrailers(): Headers | undefined;
  /** Our END_STREAM went out (this.localEnded is still false). */
  protected abstract localEnd(): void;
  /** Everything queued went out: a body paused for window may go on. */
  protected abstract drained(): void;

  /** Writes what the windows allow; the rest waits in `queued` until WINDOW_UPDATE (flush()). False when some waits. */
  write(chunk: Buffer, end: boolean): boolean {
    if (this.closed) return false;
    if (this.queued !== null) {
      if (chunk.length > 0) this.queued.push(chunk);
      if (end) this.endQueued = true;
      return false;
    }
    const s = this.session;
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, this.sendWindow, s.sendWindow, s.peerMaxFrame);
      if (n <= 0) {
        this.queued = [chunk.subarray(off)];
        this.endQueued = end;
        s.blocked(this);
        return false;
      }
      const last = off + n === chunk.length;
      s.out.data(this.id, chunk.subarray(off, off + n), end && last && !any(this.outgoingTrailers()));
      this.sendWindow -= n;
      s.sendWindow -= n;
      off += n;
    }
    if (end) this.end(chunk.length === 0);
    return true;
  }

  /** Window came back: writes what waited; once nothing does, the body goes on (drained()). */
  flush(): void {
    const q = this.queued;
    if (q === null || this.closed) return;
    this.queued = null;
    const end = this.endQueued;
    this.endQueued = false;
    for (let i = 0; i < q.length; i++) {
      if (!this.write(q[i], end && i === q.length - 1)) {
        // Still short of window: the rest goes back behind what write() queued.
        for (let j = i + 1; j < q.length; j++) this.queued!.push(q[j]);
        if (end) this.endQueued = true;
        return;
      }
    }
    this.drained();
  }

  /** The body's end went out with its last DATA (or an empty one: `emptyEnd`), or its trailers carry it now. */
  private end(emptyEnd: boolean): void {
    if (this.localEnded) return;
    const t = this.outgoingTrailers();
    if (any(t)) this.session.out.trailers(this.id, t);
    // write() sent nothing for an empty last chunk: an empty DATA frame carries the end.
    else if (emptyEnd) this.session.out.data(this.id, EMPTY, true);
    this.localEnd();
  }
}

/**
 * Window came back (WINDOW_UPDATE, a larger SETTINGS_INITIAL_WINDOW_SIZE; RFC 9113 section
 * 6.9): the streams `blocked` holds send what waited, in the order they blocked, while the
 * connection has window. A stream still short of its own stays in the set.
 */
export function flushBlocked(host: SendHost, blocked: Set<BodySender>): void {
  for (const st of [...blocked]) {
    if (host.sendWindow <= 0) return;
    if (st.sendWindow <= 0) continue;
    blocked.delete(st);
    st.flush();
  }
}

/** Whether `t` has a field (an object walk without a key array). */
function any(t: Headers | undefined): t is Headers {
  if (t === undefined) return false;
  for (const _ in t) return true;
  return false;
}
