import { MAX_WINDOW } from './frames.js';

/** The 9-byte frame header (RFC 9113 section 4.1): length u24, type, flags, stream id u31. */
const HEADER = 9;

/** Where an H2FrameReader's frames go. */
export interface H2FrameSink {
  /**
   * A whole frame: a view of the bytes pushed, or of the reader's own copy when the frame
   * spanned reads; what the sink keeps past the call goes through `kept()`. False: stop
   * reading this push (the session closed or is shedding the peer), or, after the sink
   * called `pause()`, hold the rest of it for `resume()`.
   */
  onFrame(type: number, flags: number, id: number, payload: Buffer): boolean;
  /** A frame longer than the limit (section 4.2: a FRAME_SIZE_ERROR), seen from its header. */
  onFrameTooLarge(length: number): void;
}

/**
 * Bytes of an HTTP/2 connection in, whole frames out. A frame within one read is handed on
 * as a view of it; one that spans reads is gathered into one buffer of its exact size,
 * allocated once its header is here (a header split between reads waits in 9 bytes of the
 * reader's own): each byte of such a frame is copied once. Before, the server joined what
 * it held with every read (a 16 KiB frame trickled in byte by byte: 134 MB copied), and both
 * sessions copied each piece of a frame spanning the shared read buffer's reads, joined the
 * pieces, then copied the DATA again for the stream.
 */
export class H2FrameReader {
  private readonly head = Buffer.allocUnsafe(HEADER);
  private headHave = 0;
  /** The frame being gathered (header and payload), and how much of it is here. */
  private partial: Buffer | null = null;
  private have = 0;
  /** The frame being handed on is the reader's own copy (it spanned reads). */
  private owned = false;
  /** The bytes pushed are views of the thread's shared read buffer (setSharedReads), overwritten by the next read. */
  viewReads = false;
  /** The sink paused reading (pause()): what is pushed meanwhile, and the rest of the push it paused in, waits in `held`. */
  private paused = false;
  private held: Buffer | null = null;

  constructor(
    private readonly sink: H2FrameSink,
    private readonly maxFrame: number,
  ) {}

  /**
   * Part of the frame being handed on (a DATA payload, a header block fragment) as the sink
   * may keep it past the call: itself, unless it is a view of the shared read buffer.
   */
  kept(b: Buffer): Buffer {
    return this.viewReads && !this.owned && b.length > 0 ? Buffer.from(b) : b;
  }

  /** The type of the frame partly here, -1 when none is or its header has not come that far. */
  get partialType(): number {
    if (this.partial !== null) return this.partial[3];
    return this.headHave >= 4 ? this.head[3] : -1;
  }

  /**
   * From within onFrame (which then returns false): no frame more until resume(). The rest
   * of the push, and any push meanwhile, is kept as a copy (a push may be a view of the
   * shared read buffer); the frame being handed on is whole, so nothing is half-read.
   */
  pause(): void {
    this.paused = true;
  }

  /** Reading goes on: returns what was held, for the sink to push again (null: nothing). */
  resume(): Buffer | null {
    this.paused = false;
    const h = this.held;
    this.held = null;
    return h;
  }

  push(chunk: Buffer): void {
    if (this.paused) return this.hold(chunk, 0);
    const n = chunk.length;
    let off = 0;
    if (this.headHave > 0) {
      off = Math.min(HEADER - this.headHave, n);
      chunk.copy(this.head, this.headHave, 0, off);
      this.headHave += off;
      if (this.headHave < HEADER) return;
      this.headHave = 0;
      const len = (this.head[0] << 16) | (this.head[1] << 8) | this.head[2];
      if (len > this.maxFrame) return this.sink.onFrameTooLarge(len);
      this.partial = Buffer.allocUnsafe(HEADER + len);
      this.head.copy(this.partial, 0);
      this.have = HEADER;
    }
    if (this.partial !== null) {
      const f = this.partial;
      const take = Math.min(f.length - this.have, n - off);
      chunk.copy(f, this.have, off, off + take);
      this.have += take;
      off += take;
      if (this.have < f.length) return;
      this.partial = null;
      if (!this.deliver(f, 0, f.length - HEADER, true)) return this.hold(chunk, off);
    }
    while (n - off >= HEADER) {
      const len = (chunk[off] << 16) | (chunk[off + 1] << 8) | chunk[off + 2];
      if (len > this.maxFrame) return this.sink.onFrameTooLarge(len);
      if (n - off < HEADER + len) {
        this.partial = Buffer.allocUnsafe(HEADER + len);
        chunk.copy(this.partial, 0, off, n);
        this.have = n - off;
        return;
      }
      if (!this.deliver(chunk, off, len, false)) return this.hold(chunk, off + HEADER + len);
      off += HEADER + len;
    }
    if (off < n) {
      chunk.copy(this.head, 0, off, n);
      this.headHave = n - off;
    }
  }

  /** While paused: `chunk` from `from` on waits, copied, behind what waits already. */
  private hold(chunk: Buffer, from: number): void {
    if (!this.paused || from >= chunk.length) return;
    const rest = chunk.subarray(from);
    this.held = this.held === null ? Buffer.from(rest) : Buffer.concat([this.held, rest]);
  }

  private deliver(b: Buffer, at: number, len: number, owned: boolean): boolean {
    const id = b.readUInt32BE(at + 5) & MAX_WINDOW;
    this.owned = owned;
    return this.sink.onFrame(b[at + 3], b[at + 4], id, b.subarray(at + HEADER, at + HEADER + len));
  }
}
