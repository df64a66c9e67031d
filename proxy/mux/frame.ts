/**
 * Frames of the mesh multiplexer (ALPN `wren-mux/2`, or `wren-mux/1` with a peer of an older
 * release; proxy/mux/mux-session.ts): many virtual connections between two sidecars on one
 * mTLS connection, as yamux or SSH channels carry byte streams (HTTP/2's framing without its
 * header compression and stream semantics: each virtual connection carries HTTP/1.1 bytes,
 * parsed by the codec on both ends).
 *
 *     length u32 | type u8 | flags u8 | stream id u32 | payload (length bytes)
 *
 * DATA carries bytes of a stream (FIN: the sender's half is done; the first DATA of an
 * unknown id opens the stream, and closes every lower id not yet seen, as a new HTTP/2
 * stream id does, RFC 9113 section 5.1.1: a client opens its streams with an empty DATA
 * frame each, in id order, MuxSession.open()). WINDOW grants the peer more bytes to send on a stream
 * (payload u32), as HTTP/2's WINDOW_UPDATE (RFC 9113 section 6.9). RESET aborts a stream
 * (payload u32 code). GOAWAY: no new streams on this connection (payload u32: the last
 * stream id the sender will serve), as HTTP/2's GOAWAY. PING (`wren-mux/2` only; stream 0,
 * payload u32 opaque; flag ACK): the receiver answers every PING without ACK with a PING
 * with ACK and the same payload, as HTTP/2's PING (RFC 9113 section 6.7); the calling side
 * sends one every limits.peerKeepalive interval and closes a connection on which nothing
 * arrives within its timeout. `wren-mux/1` is the same without PING: a peer of an older
 * release takes an unknown frame type as malformed, so PING goes only on a connection
 * whose ALPN is `wren-mux/2` (Deframer.pings).
 */
export const HEADER_BYTES = 10;
export const MAX_PAYLOAD = 64 * 1024;
/** HTTP/2's largest window (RFC 9113 section 6.9.1): a grant past it is a flow-control error. */
export const MAX_WINDOW = 2 ** 31 - 1;

export const FrameType = { Data: 0, Window: 1, Reset: 2, GoAway: 3, Ping: 4 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
/** DATA: the sender's half of the stream is done. */
export const FLAG_FIN = 1;
/** PING: the answer to a PING (its payload echoed). */
export const FLAG_ACK = 1;

/**
 * Codes carried by RESET. `UpstreamH2 + c`: the stream is reset because the sender's
 * upstream (the app) reset its HTTP/2 stream with error code `c` (RFC 9113 section 7) after
 * the response began, so the caller's sidecar can give its caller what `c` means (a gRPC
 * CANCEL is CANCELLED, not a lost upstream: errors/proxy-error.ts grpcStatusOfReset). A
 * peer of an older release takes such a code as any other reset (Cancel).
 */
export const ResetCode = { Cancel: 0, FlowControl: 1, Refused: 2, Protocol: 3, UpstreamH2: 0x100 } as const;
/** The largest HTTP/2 error code a RESET carries (UpstreamH2 + code); RFC 9113's end at 0xd. */
const MAX_CARRIED_H2_CODE = 0xff;

/** The RESET code that carries an upstream's HTTP/2 error code `h2Code`. */
export function upstreamResetCode(h2Code: number): number {
  return ResetCode.UpstreamH2 + Math.min(h2Code >>> 0, MAX_CARRIED_H2_CODE);
}

/** The upstream's HTTP/2 error code a RESET code carries, if it carries one. */
export function carriedH2Code(resetCode: number): number | undefined {
  return resetCode >= ResetCode.UpstreamH2 && resetCode <= ResetCode.UpstreamH2 + MAX_CARRIED_H2_CODE ? resetCode - ResetCode.UpstreamH2 : undefined;
}

/** Writes a frame's header at `at` in `b` (the layout above): every writer of frames goes through it. */
export function writeFrameHeader(b: Buffer, at: number, type: FrameType, flags: number, id: number, length: number): void {
  b.writeUInt32BE(length, at);
  b[at + 4] = type;
  b[at + 5] = flags;
  b.writeUInt32BE(id, at + 6);
}

/** A control frame's payload: one u32. */
export const CONTROL_PAYLOAD_BYTES = 4;

/** Writes a whole control frame (WINDOW, RESET, GOAWAY, PING) at `at` in `b`: a header and one u32. */
export function writeControlFrame(b: Buffer, at: number, type: FrameType, id: number, value: number, flags = 0): void {
  writeFrameHeader(b, at, type, flags, id, CONTROL_PAYLOAD_BYTES);
  b.writeUInt32BE(value >>> 0, at + HEADER_BYTES);
}

export function frameHeader(type: FrameType, flags: number, id: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  writeFrameHeader(h, 0, type, flags, id, length);
  return h;
}

/** A whole control frame (WINDOW, RESET, GOAWAY, PING): a header and one u32. */
export function controlFrame(type: FrameType, id: number, value: number, flags = 0): Buffer {
  const f = Buffer.allocUnsafe(HEADER_BYTES + CONTROL_PAYLOAD_BYTES);
  writeControlFrame(f, 0, type, id, value, flags);
  return f;
}

export interface FrameSink {
  /**
   * A piece of a DATA frame's payload, as it arrived: a frame that spans reads comes in
   * pieces, in order, `fin` on the last piece of a frame with FIN; an empty frame is one
   * empty piece. A piece is a view of the bytes pushed (valid for the call only when those
   * are the thread's shared read buffer): the deframer never copies a payload.
   */
  data(id: number, piece: Buffer, fin: boolean): void;
  /** A control frame (WINDOW, RESET, GOAWAY; PING when Deframer.pings), its u32 and its flags. */
  control(type: FrameType, id: number, value: number, flags: number): void;
  /** The bytes are not frames (an unknown type, a payload over MAX_PAYLOAD, a bad control frame). */
  malformed(why: string): void;
}

/** An empty DATA payload: an empty frame read (the Deframer), a stream's opening frame and its FIN (mux-session.ts, mux-stream.ts). */
export const EMPTY_PAYLOAD = Buffer.alloc(0);

/**
 * Incremental frame reader: bytes from the connection in, frames out. A DATA payload goes
 * to the sink in pieces as its bytes arrive, each a view of what was pushed, as nghttp2
 * hands a DATA frame's chunks to `on_data_chunk_recv_callback`: a 64 KiB frame spans four or
 * more TLS reads, and joining it first cost a copy of every piece kept (the shared read
 * buffer is overwritten by the next read) and a copy to join them, before the stream's own.
 * Only a header (or a control frame) split between reads is copied, into 14 bytes kept here.
 */
export class Deframer {
  /** The start of a header or control frame split between reads. */
  private readonly stage = Buffer.allocUnsafe(HEADER_BYTES + CONTROL_PAYLOAD_BYTES);
  private staged = 0;
  /** Payload bytes of the current DATA frame still to come (0: a header is next). */
  private dataLeft = 0;
  private dataId = 0;
  private dataFin = false;
  private failed = false;
  /**
   * The connection speaks `wren-mux/2`: PING is a frame type (MuxSession.usePing); on
   * `wren-mux/1` it is an unknown one, as for a peer of the release before it.
   */
  pings = false;

  constructor(private readonly sink: FrameSink) {}

  push(chunk: Buffer): void {
    const n = chunk.length;
    let off = 0;
    while (off < n && !this.failed) {
      if (this.dataLeft > 0) {
        const take = Math.min(this.dataLeft, n - off);
        this.dataLeft -= take;
        this.sink.data(this.dataId, chunk.subarray(off, off + take), this.dataFin && this.dataLeft === 0);
        off += take;
        continue;
      }
      let b = chunk;
      let at = off;
      if (this.staged > 0 || n - off < HEADER_BYTES) {
        // A header split between reads: gathered in the stage (a control frame's u32 too).
        const need = this.staged >= HEADER_BYTES ? HEADER_BYTES + CONTROL_PAYLOAD_BYTES : HEADER_BYTES;
        const take = Math.min(need - this.staged, n - off);
        chunk.copy(this.stage, this.staged, off, off + take);
        this.staged += take;
        off += take;
        if (this.staged < need) return;
        b = this.stage;
        at = 0;
      }
      const len = b.readUInt32BE(at);
      const type = b[at + 4];
      if (len > MAX_PAYLOAD) return this.fail(`frame of ${len} bytes (the limit is ${MAX_PAYLOAD})`);
      if (type > FrameType.GoAway && (type !== FrameType.Ping || !this.pings)) return this.fail(`unknown frame type ${type}`);
      if (type !== FrameType.Data && len !== CONTROL_PAYLOAD_BYTES) return this.fail(`control frame of ${len} bytes`);
      const id = b.readUInt32BE(at + 6);
      if (type === FrameType.Data) {
        const fin = (b[at + 5] & FLAG_FIN) !== 0;
        if (b === chunk) off += HEADER_BYTES;
        this.staged = 0;
        if (len === 0) this.sink.data(id, EMPTY_PAYLOAD, fin);
        else {
          this.dataLeft = len;
          this.dataId = id;
          this.dataFin = fin;
        }
        continue;
      }
      if (b === chunk) {
        if (n - off < HEADER_BYTES + CONTROL_PAYLOAD_BYTES) {
          // The header is here, its u32 is not: both wait in the stage.
          chunk.copy(this.stage, 0, off, n);
          this.staged = n - off;
          return;
        }
        off += HEADER_BYTES + CONTROL_PAYLOAD_BYTES;
      } else if (this.staged < HEADER_BYTES + CONTROL_PAYLOAD_BYTES) continue; // the u32 is next
      this.staged = 0;
      this.sink.control(type as FrameType, id, b.readUInt32BE(at + HEADER_BYTES), b[at + 5]);
    }
  }

  private fail(why: string): void {
    this.failed = true;
    this.sink.malformed(why);
  }

  /**
   * The connection is gone (its session closed): the rest of the bytes pushed, this read's
   * included, are not read. A session that gave up on its peer in the middle of a read (a
   * reset budget spent, a window overrun) otherwise went on opening the streams of the
   * frames behind it, each served with nobody to answer or reset it.
   */
  stop(): void {
    this.failed = true;
  }
}
