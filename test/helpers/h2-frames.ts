import { connect as netConnect, type Socket } from 'node:net';

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

/** A frame as a raw peer received it; `fields` is the decoded header block of a HEADERS frame (no CONTINUATION). */
export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly id: number;
  readonly payload: Buffer;
  readonly fields?: string[];
}

/** A raw TCP peer's view of an HTTP/2 connection: every frame received, kept in order. */
export interface RawPeer {
  readonly sock: Socket;
  readonly frames: RawFrame[];
  /** The first frame (received or to come) matching `p`; rejects after `ms`, listing what came. */
  until(p: (f: RawFrame) => boolean, ms?: number): Promise<RawFrame>;
  readonly closed: Promise<void>;
}

/**
 * Connects to `port` on loopback and records every frame the other side sends, header blocks
 * decoded with a decoder of `decoder` (the default table size, 4096, RFC 7541 section 4.2).
 */
export function rawPeer(port: number, decoder: { decode(block: Buffer): unknown }): RawPeer {
  const sock = netConnect(port, '127.0.0.1');
  const frames: RawFrame[] = [];
  const waiters: (() => void)[] = [];
  const reader = new FrameReader((type, flags, id, payload) => {
    const fields = type === FRAME.HEADERS ? (decoder.decode(payload) as string[]) : undefined;
    frames.push({ type, flags, id, payload: Buffer.from(payload), fields });
    for (const w of waiters.splice(0)) w();
  });
  sock.on('data', (d: Buffer) => reader.push(d));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  const until = (p: (f: RawFrame) => boolean, ms = 3000): Promise<RawFrame> =>
    new Promise<RawFrame>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no such frame; got ${frames.map((f) => `${f.type}/${f.flags}@${f.id}`).join(' ')}`)), ms);
      const check = (): void => {
        const f = frames.find(p);
        if (f) {
          clearTimeout(t);
          resolve(f);
        } else waiters.push(check);
      };
      check();
    });
  return { sock, frames, until, closed };
}

/** The error code of a RST_STREAM frame (RFC 9113 section 6.4). */
export const rstCode = (f: { payload: Buffer }): number => f.payload.readUInt32BE(0);
/** The error code of a GOAWAY frame (section 6.8). */
export const goawayCode = (f: { payload: Buffer }): number => f.payload.readUInt32BE(4);
export const isRst = (id: number) => (f: { type: number; id: number }): boolean => f.type === FRAME.RST_STREAM && f.id === id;
export const isGoaway = (f: { type: number }): boolean => f.type === FRAME.GOAWAY;

/** A 32-bit big-endian word (a WINDOW_UPDATE increment, an error code). */
export function word(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** A SETTINGS frame of `[id, value]` pairs, written by hand (section 6.5.1). */
export function settings(...pairs: [number, number][]): Buffer {
  const p = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([k, v], i) => {
    p.writeUInt16BE(k, 6 * i);
    p.writeUInt32BE(v >>> 0, 6 * i + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, p);
}
