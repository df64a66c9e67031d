/**
 * Frames of the mesh multiplexer (ALPN `wren-mux/1`, proxy/mux/mux-session.ts): many
 * virtual connections between two sidecars on one mTLS connection, as yamux or SSH
 * channels carry byte streams (HTTP/2's framing without its header compression and
 * stream semantics: each virtual connection carries HTTP/1.1 bytes, parsed by the codec
 * on both ends).
 *
 *     length u32 | type u8 | flags u8 | stream id u32 | payload (length bytes)
 *
 * DATA carries bytes of a stream (FIN: the sender's half is done; the first DATA of an
 * unknown id opens the stream). WINDOW grants the peer more bytes to send on a stream
 * (payload u32), as HTTP/2's WINDOW_UPDATE (RFC 9113 section 6.9). RESET aborts a stream
 * (payload u32 code). GOAWAY: no new streams on this connection (payload u32: the last
 * stream id the sender will serve), as HTTP/2's GOAWAY.
 */
export const HEADER_BYTES = 10;
export const MAX_PAYLOAD = 64 * 1024;
/** HTTP/2's largest window (RFC 9113 section 6.9.1): a grant past it is a flow-control error. */
export const MAX_WINDOW = 2 ** 31 - 1;

export const FrameType = { Data: 0, Window: 1, Reset: 2, GoAway: 3 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
export const FLAG_FIN = 1;

/** Codes carried by RESET. */
export const ResetCode = { Cancel: 0, FlowControl: 1, Refused: 2, Protocol: 3 } as const;

/** Writes a frame's header at `at` in `b` (the layout above): every writer of frames goes through it. */
export function writeFrameHeader(b: Buffer, at: number, type: FrameType, flags: number, id: number, length: number): void {
  b.writeUInt32BE(length, at);
  b[at + 4] = type;
  b[at + 5] = flags;
  b.writeUInt32BE(id, at + 6);
}

/** A control frame's payload: one u32. */
export const CONTROL_PAYLOAD_BYTES = 4;

/** Writes a whole control frame (WINDOW, RESET, GOAWAY) at `at` in `b`: a header and one u32. */
export function writeControlFrame(b: Buffer, at: number, type: FrameType, id: number, value: number): void {
  writeFrameHeader(b, at, type, 0, id, CONTROL_PAYLOAD_BYTES);
  b.writeUInt32BE(value >>> 0, at + HEADER_BYTES);
}

export function frameHeader(type: FrameType, flags: number, id: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  writeFrameHeader(h, 0, type, flags, id, length);
  return h;
}

/** A whole control frame (WINDOW, RESET, GOAWAY): a header and one u32. */
export function controlFrame(type: FrameType, id: number, value: number): Buffer {
  const f = Buffer.allocUnsafe(HEADER_BYTES + CONTROL_PAYLOAD_BYTES);
  writeControlFrame(f, 0, type, id, value);
  return f;
}

export interface FrameSink {
  frame(type: number, flags: number, id: number, payload: Buffer): void;
  /** The bytes are not frames (an unknown type, a payload over MAX_PAYLOAD, a bad control frame). */
  malformed(why: string): void;
}

/**
 * Incremental frame reader: bytes from the connection in, whole frames out. Payloads are
 * views of what was read (a Buffer node gave that read, or with `viewReads` the thread's
 * shared read buffer, valid for the call only), copied only when a frame spans reads: its
 * pieces are joined once it is whole, and with `viewReads` each piece is first copied as it
 * waits, so such a frame's bytes are copied twice.
 */
export class Deframer {
  /** The bytes of an incomplete frame, kept as they came: joined once the frame is whole. */
  private parts: Buffer[] = [];
  private have = 0;
  /** Bytes the incomplete frame needs (its header's, then header and payload). */
  private need = HEADER_BYTES;
  private failed = false;

  constructor(
    private readonly sink: FrameSink,
    /** The chunks pushed are views of a buffer the next read overwrites: a frame's start kept for the next read is copied. */
    private readonly viewReads = false,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    let buf: Buffer;
    if (this.parts.length > 0) {
      // A frame arriving in pieces is copied once, when whole (not once per piece).
      this.parts.push(this.viewReads ? Buffer.from(chunk) : chunk);
      this.have += chunk.length;
      if (this.have < this.need) return;
      buf = Buffer.concat(this.parts, this.have);
      this.parts = [];
      this.have = 0;
    } else buf = chunk;
    while (buf.length >= HEADER_BYTES) {
      const len = buf.readUInt32BE(0);
      const type = buf[4];
      if (len > MAX_PAYLOAD) return this.fail(`frame of ${len} bytes (the limit is ${MAX_PAYLOAD})`);
      if (type > FrameType.GoAway) return this.fail(`unknown frame type ${type}`);
      if (type !== FrameType.Data && len !== CONTROL_PAYLOAD_BYTES) return this.fail(`control frame of ${len} bytes`);
      if (buf.length < HEADER_BYTES + len) break;
      const payload = buf.subarray(HEADER_BYTES, HEADER_BYTES + len);
      const flags = buf[5];
      const id = buf.readUInt32BE(6);
      buf = buf.subarray(HEADER_BYTES + len);
      this.sink.frame(type, flags, id, payload);
      if (this.failed) return;
    }
    if (buf.length > 0) {
      this.parts = [this.viewReads ? Buffer.from(buf) : buf];
      this.have = buf.length;
      this.need = buf.length >= HEADER_BYTES ? HEADER_BYTES + buf.readUInt32BE(0) : HEADER_BYTES;
    }
  }

  private fail(why: string): void {
    this.failed = true;
    this.parts = [];
    this.have = 0;
    this.sink.malformed(why);
  }
}
