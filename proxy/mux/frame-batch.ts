import { releaseBody } from '../net/body-buffers.js';
import { CONTROL_PAYLOAD_BYTES, FrameType, HEADER_BYTES, writeControlFrame, writeFrameHeader } from './frame.js';

/** The first buffer a batch allocates: batches take consecutive slices of it (the next one allocates when it is used up). */
const SLAB_BYTES = 16 * 1024;
/** A batch this long is handed over at once, not kept to the end of the turn: a bulk transfer must not build megabyte buffers. */
export const BATCH_MAX_BYTES = 256 * 1024;
/**
 * A DATA payload this long is not copied into the batch: the batch keeps a reference to it
 * and hands the frames over as a list (takePieces). Copied, a bulk transfer's 16-64 KiB
 * payloads outgrew the slab every few frames (a new slab of twice the batch, the batch
 * copied into it): with the payload's own copy, 2.5 MiB of new buffers per MiB sent, each an
 * ArrayBuffer that only a mark-compact frees once V8's external-memory limit is passed
 * (docs/benchmarks.md, "Large bodies"). node's TLS socket joins a writev's buffers into one
 * native buffer for SSL_write (a malloc, not an ArrayBuffer).
 */
export const BY_REFERENCE_BYTES = 8 * 1024;

/**
 * The frames a multiplexer session writes in one turn of the event loop, laid out in one
 * buffer as they are written (frame.ts's wire format) and handed to the socket in one
 * write at the turn's end. Before, each frame was two socket writes on a corked TLS socket
 * (a header of its own and the payload): per frame two buffers, two entries in the
 * Writable's queue and two vectors that node's TLS wrap copied into one buffer anyway
 * before encrypting (SSL_write takes one). Here the payload is copied once, into the
 * batch, and the socket sees one buffer: node's single-buffer write path, no cork.
 *
 * A batch taken is a slice of a slab that is never written again; the next batch takes the
 * slab's rest, so small batches (a request head, a response) share one allocation.
 */
export class FrameBatch {
  private slab: Buffer | null = null;
  /** Where this batch starts in the slab, and its length. */
  private start = 0;
  private len = 0;
  /** The frames so far when payloads are held by reference: slab slices and payloads in order (dataFrame). */
  private pieces: Buffer[] = [];
  private piecesBytes = 0;
  /** Lent body buffers whose last part is in this batch (releaseAfterWrite). */
  private releases: Buffer[] | null = null;

  get length(): number {
    return this.piecesBytes + this.len;
  }

  /** The batch holds payloads by reference: take it with takePieces, not take. */
  get hasPieces(): boolean {
    return this.piecesBytes > 0;
  }

  /**
   * A whole DATA frame: a payload under BY_REFERENCE_BYTES is copied into the slab (a lent
   * body buffer, body-buffers.ts, then goes back at once); a longer one is kept by
   * reference (its owner must not change it until the batch is written, and the session
   * hands a lent one back after the write, mux-session.ts).
   */
  dataFrame(flags: number, id: number, payload: Buffer): void {
    const n = payload.length;
    if (n < BY_REFERENCE_BYTES) {
      this.dataHeader(flags, id, n);
      if (n > 0) {
        this.bytes(payload);
        releaseBody(payload);
      }
      return;
    }
    const b = this.room(HEADER_BYTES);
    writeFrameHeader(b, this.start + this.len, FrameType.Data, flags, id, n);
    this.len += HEADER_BYTES;
    const before = this.take()!;
    this.pieces.push(before, payload);
    this.piecesBytes += before.length + n;
  }

  /** A DATA frame's header for `length` payload bytes that the caller appends next. */
  dataHeader(flags: number, id: number, length: number): void {
    // room() first: it may move the batch to a new slab (start 0).
    const b = this.room(HEADER_BYTES + length);
    writeFrameHeader(b, this.start + this.len, FrameType.Data, flags, id, length);
    this.len += HEADER_BYTES;
  }

  /** Payload bytes (after dataHeader, which made room for them). */
  bytes(payload: Buffer): void {
    this.slab!.set(payload, this.start + this.len);
    this.len += payload.length;
  }

  /** Payload text as latin1 bytes, one byte per character (after dataHeader). */
  latin1(text: string): void {
    this.len += this.slab!.write(text, this.start + this.len, text.length, 'latin1');
  }

  /** A whole control frame (WINDOW, RESET, GOAWAY, PING): a header and one u32. */
  control(type: FrameType, id: number, value: number, flags = 0): void {
    const b = this.room(HEADER_BYTES + CONTROL_PAYLOAD_BYTES);
    writeControlFrame(b, this.start + this.len, type, id, value, flags);
    this.len += HEADER_BYTES + CONTROL_PAYLOAD_BYTES;
  }

  /** The batch's buffers in order when it holds payloads by reference (hasPieces); the batch starts anew after them. */
  takePieces(): Buffer[] {
    const out = this.pieces;
    const rest = this.take();
    if (rest !== null) out.push(rest);
    this.pieces = [];
    this.piecesBytes = 0;
    return out;
  }

  /** The batch's bytes (null when empty; not for a batch that hasPieces); the batch starts anew after them. */
  take(): Buffer | null {
    if (this.len === 0) return null;
    const out = this.slab!.subarray(this.start, this.start + this.len);
    this.start += this.len;
    this.len = 0;
    return out;
  }

  /**
   * `b`, a lent body buffer (body-buffers.ts) sent in parts, has its last part in this
   * batch: its writer hands it back once the batch is written (takeReleases), since the
   * parts before, kept by reference or waiting in the socket, are written by then too.
   */
  releaseAfterWrite(b: Buffer): void {
    (this.releases ??= []).push(b);
  }

  /** The buffers releaseAfterWrite gave since the last call (null: none). */
  takeReleases(): Buffer[] | null {
    const r = this.releases;
    this.releases = null;
    return r;
  }

  /** Drops what was not taken (the session closed). */
  clear(): void {
    this.releases = null;
    this.len = 0;
    this.pieces = [];
    this.piecesBytes = 0;
  }

  /** The slab, with `n` more bytes free after the batch (a batch that outgrows it moves to a larger one). */
  private room(n: number): Buffer {
    const s = this.slab;
    const need = this.len + n;
    if (s !== null && this.start + need <= s.length) return s;
    const next = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, 2 * need));
    if (s !== null && this.len > 0) s.copy(next, 0, this.start, this.start + this.len);
    this.slab = next;
    this.start = 0;
    return next;
  }
}
