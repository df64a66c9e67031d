/**
 * A small HTTP/2 frame writer and reader for abuse and fuzz tests (RFC 9113 §4.1):
 * clients that send what node:http2 will not (rapid resets, half-sent HEADERS, malformed
 * frames). Header blocks use HPACK literals without indexing (RFC 7541 §6.2.2), so no
 * encoder state is needed.
 */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  if (b.length > 126) throw new Error('header too long for this tiny encoder');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

/** A header block of literal fields without indexing, new names (RFC 7541 §6.2.2). */
export function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(fields.flatMap(([n, v]) => [Buffer.from([0]), hpackString(n), hpackString(v)]));
}

export function request(streamId: number, authority: string, path = '/', method = 'GET', endStream = true): Buffer {
  const block = headerBlock([[':method', method], [':scheme', 'http'], [':path', path], [':authority', authority]]);
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), streamId, block);
}

export function rstStream(streamId: number, code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
}

/** The client's connection start: preface and an empty SETTINGS frame. */
export function clientStart(): Buffer {
  return Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]);
}

/** Reads frames from a byte stream; calls back with each complete frame. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (type: number, flags: number, streamId: number, payload: Buffer) => void) {}
  push(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) return;
      const f = this.buf.subarray(0, 9 + len);
      this.buf = this.buf.subarray(9 + len);
      this.onFrame(f[3], f[4], f.readUInt32BE(5) & 0x7fffffff, f.subarray(9));
    }
  }
}
