import { jest } from '@jest/globals';
import { constants, createServer as h2server, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { FrameWriter } from './frame-writer.js';
import { DEFAULT_MAX_FRAME, FLAG, FRAME, H2_ERROR, PREFACE, frameHeader, settingsFrame } from './frames.js';
import { HpackDecoder } from './hpack-decoder.js';
import { HpackEncoder } from './hpack-encoder.js';
import { FrameReader } from '../../test/helpers/h2-frames.js';

/**
 * FrameWriter: the frames as octets (a fake socket records cork, write and uncork), the
 * flush timing of each strategy (RFC 9113 frames of a turn in one write), the header block
 * split into HEADERS and CONTINUATION (section 6.10), nothing written once the session is
 * gone; and a real node:http2 server (nghttp2) reading what it writes.
 */

interface Owner {
  destroyed: boolean;
  peerMaxFrame: number;
}

/** What node:http2 saw of a stream. */
interface Seen {
  headers: IncomingHttpHeaders;
  body: string;
  trailers?: IncomingHttpHeaders;
  rstCode?: number;
}

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A socket that records what the writer does to it: 'cork', 'uncork', and each write's bytes. */
class FakeSocket {
  readonly events: string[] = [];
  readonly written: Buffer[] = [];
  writableEnded = false;
  private corks = 0;
  cork(): void {
    this.corks++;
    this.events.push('cork');
  }
  uncork(): void {
    this.corks--;
    this.events.push('uncork');
  }
  write(b: Buffer, done?: () => void): boolean {
    this.events.push(`write ${b.length}`);
    this.written.push(b);
    done?.();
    return true;
  }
  get corked(): boolean {
    return this.corks > 0;
  }
  /** Every frame written so far. */
  frames(): Frame[] {
    const out: Frame[] = [];
    new FrameReader((type, flags, id, payload) => out.push({ type, flags, id, payload: Buffer.from(payload) })).push(Buffer.concat(this.written));
    return out;
  }
}

function fake(flushAt: 'tick' | 'check', owner: Owner = { destroyed: false, peerMaxFrame: DEFAULT_MAX_FRAME }): { w: FrameWriter; sock: FakeSocket; owner: Owner } {
  const sock = new FakeSocket();
  return { w: new FrameWriter(sock as unknown as Socket, owner, flushAt), sock, owner };
}

/** A value whose block `['n', value]` (the connection's first) is `size` bytes long. */
function valueFor(size: number): string {
  for (let n = 0; ; n++) if (new HpackEncoder().encodedLength(['n', 'v'.repeat(n)]) === size) return 'v'.repeat(n);
}

const nextTick = (): Promise<void> => new Promise((r) => process.nextTick(r));
const checkPhase = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('FrameWriter: when a turn\'s frames leave', () => {
  it("'tick': corked at the first frame, uncorked once, on the next tick", async () => {
    const { w, sock } = fake('tick');
    w.data(1, Buffer.from('abc'), false);
    w.reset(3, H2_ERROR.CANCEL);
    w.data(1, Buffer.from('de'), true);
    expect(sock.corked).toBe(true);
    await nextTick();
    expect(sock.corked).toBe(false);
    // The turn's three frames in one write (12 + 13 + 11 octets).
    expect(sock.events).toEqual(['cork', 'write 36', 'uncork']);
    // A later turn corks again.
    w.data(1, Buffer.from('f'), false);
    await nextTick();
    expect(sock.events.slice(3)).toEqual(['cork', 'write 10', 'uncork']);
  });

  it("'check': still corked after the next tick, uncorked at the check phase (a response's head, DATA and end written over several ticks leave together)", async () => {
    const { w, sock } = fake('check');
    w.headers(1, [':status', '200'], undefined, false);
    await nextTick();
    w.data(1, Buffer.from('body'), false);
    await Promise.resolve();
    w.data(1, Buffer.alloc(0), true);
    expect(sock.corked).toBe(true);
    await checkPhase();
    expect(sock.corked).toBe(false);
    expect(sock.events.filter((e) => e === 'cork' || e === 'uncork')).toEqual(['cork', 'uncork']);
    expect(sock.frames().map((f) => f.type)).toEqual([FRAME.HEADERS, FRAME.DATA, FRAME.DATA]);
  });

  it('while `reading`, nothing is scheduled: the reader\'s flush() sends the frames and no uncork follows', async () => {
    for (const flushAt of ['tick', 'check'] as const) {
      const { w, sock } = fake(flushAt);
      const ticks = jest.spyOn(process, 'nextTick');
      const immediates = jest.spyOn(globalThis, 'setImmediate');
      w.reading = true;
      w.write(frameHeader(0, FRAME.SETTINGS, FLAG.ACK, 0));
      w.reset(1, H2_ERROR.REFUSED_STREAM);
      w.reading = false;
      // No callback per read: its end is the flush.
      expect([ticks.mock.calls.length, immediates.mock.calls.length]).toEqual([0, 0]);
      ticks.mockRestore();
      immediates.mockRestore();
      expect(sock.corked).toBe(true);
      w.flush();
      expect(sock.corked).toBe(false);
      w.flush();
      await checkPhase();
      expect(sock.events).toEqual(['cork', 'write 22', 'uncork']);
    }
  });

  it('writes nothing once its session is destroyed or the socket has ended, and passes a write callback on (ACK accounting)', async () => {
    const { w, sock, owner } = fake('tick');
    let done = 0;
    w.write(frameHeader(0, FRAME.SETTINGS, FLAG.ACK, 0), () => done++);
    expect(done).toBe(1);
    owner.destroyed = true;
    w.reset(1, H2_ERROR.CANCEL);
    w.data(1, Buffer.from('x'), true);
    owner.destroyed = false;
    sock.writableEnded = true;
    w.headers(1, [':status', '200'], undefined, true);
    await nextTick();
    expect(sock.written.map((b) => b.length)).toEqual([9]);
  });

  it('drops what a turn buffered when the socket ends before the flush', async () => {
    const { w, sock } = fake('tick');
    w.data(1, Buffer.from('x'), true);
    sock.writableEnded = true;
    await nextTick();
    expect(sock.written).toEqual([]);
  });

  it('writes a payload over 1 KiB as it is (no copy), after what the turn buffered before it, and keeps the frames in order', async () => {
    const { w, sock } = fake('tick');
    const big = Buffer.alloc(5000, 0x62);
    w.headers(1, [':status', '200'], undefined, false);
    w.data(1, big, false);
    w.data(1, Buffer.from('tail'), true);
    await nextTick();
    // The HEADERS frame and the big DATA frame's header, the payload itself, then the last frame.
    expect(sock.written.map((b) => b.length)).toEqual([9 + 2 + 9, 5000, 13]);
    expect(sock.written[1]).toBe(big);
    expect(sock.frames().map((f) => [f.type, f.flags, f.payload.length])).toEqual([
      [FRAME.HEADERS, FLAG.END_HEADERS, 2],
      [FRAME.DATA, 0, 5000],
      [FRAME.DATA, FLAG.END_STREAM, 4],
    ]);
  });

  it('starts a new buffer when a turn writes more than one holds, the bytes already handed over untouched', async () => {
    const { w, sock } = fake('tick');
    const chunk = Buffer.alloc(1000, 0x61);
    for (let i = 0; i < 40; i++) w.data(1, chunk, false);
    await nextTick();
    // 40 frames of 1009 octets: 3 to a buffer of 4000.
    expect(sock.written.map((b) => b.length)).toEqual([...Array<number>(13).fill(3 * 1009), 1009]);
    const fs = sock.frames();
    expect(fs).toHaveLength(40);
    expect(fs.every((f) => f.type === FRAME.DATA && f.payload.equals(chunk))).toBe(true);
  });
});

describe('FrameWriter: frames', () => {
  it('DATA: the header and the payload; an empty one with END_STREAM is its header alone', () => {
    const { w, sock } = fake('tick');
    w.data(5, Buffer.from('hello'), false);
    w.data(5, Buffer.alloc(0), true);
    w.flush();
    expect(sock.written.map((b) => b.length)).toEqual([9 + 5 + 9]);
    expect(sock.frames()).toEqual([
      { type: FRAME.DATA, flags: 0, id: 5, payload: Buffer.from('hello') },
      { type: FRAME.DATA, flags: FLAG.END_STREAM, id: 5, payload: Buffer.alloc(0) },
    ]);
  });

  it('RST_STREAM: the stream and the code (section 6.4)', () => {
    const { w, sock } = fake('tick');
    w.reset(7, H2_ERROR.FLOW_CONTROL_ERROR);
    w.flush();
    const [f] = sock.frames();
    expect([f.type, f.flags, f.id, f.payload.readUInt32BE(0), f.payload.length]).toEqual([FRAME.RST_STREAM, 0, 7, H2_ERROR.FLOW_CONTROL_ERROR, 4]);
  });

  it('a header block within the frame size: one HEADERS frame with END_HEADERS (and END_STREAM when asked); `more` follows `fields`', () => {
    const { w, sock } = fake('tick');
    w.headers(1, [':status', '204'], { 'x-a': '1', 'x-b': ['2', '3'] }, true);
    w.headers(3, [':status', '200'], undefined, false);
    w.flush();
    const [a, b] = sock.frames();
    expect([a.type, a.flags, a.id]).toEqual([FRAME.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1]);
    expect([b.type, b.flags, b.id]).toEqual([FRAME.HEADERS, FLAG.END_HEADERS, 3]);
    const dec = new HpackDecoder(4096);
    expect(dec.decode(a.payload)).toEqual([':status', '204', 'x-a', '1', 'x-b', '2', 'x-b', '3']);
    expect(dec.decode(b.payload)).toEqual([':status', '200']);
  });

  it('trailers: one header block with END_STREAM and no pseudo-header (section 8.1)', () => {
    const { w, sock } = fake('tick');
    w.trailers(9, { 'grpc-status': '0', 'grpc-message': 'ok' });
    w.flush();
    const [f] = sock.frames();
    expect([f.type, f.flags, f.id]).toEqual([FRAME.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 9]);
    expect(new HpackDecoder(4096).decode(f.payload)).toEqual(['grpc-status', '0', 'grpc-message', 'ok']);
  });

  it('a block over the peer\'s frame size: HEADERS then CONTINUATION frames of at most that size, END_STREAM on the first, END_HEADERS on the last only (section 6.10)', () => {
    for (const [size, frames] of [
      [100, 1],
      [101, 2],
      [200, 2],
      [201, 3],
    ] as const) {
      const owner = { destroyed: false, peerMaxFrame: 100 };
      const { w, sock } = fake('tick', owner);
      const value = valueFor(size);
      w.headers(1, ['n', value], undefined, true);
      w.flush();
      const fs = sock.frames();
      expect(fs.length).toBe(frames);
      expect(fs.map((f) => f.type)).toEqual([FRAME.HEADERS, ...Array<number>(frames - 1).fill(FRAME.CONTINUATION)]);
      expect(fs.map((f) => f.flags)).toEqual(frames === 1 ? [FLAG.END_STREAM | FLAG.END_HEADERS] : [FLAG.END_STREAM, ...Array<number>(frames - 2).fill(0), FLAG.END_HEADERS]);
      expect(fs.every((f) => f.id === 1 && f.payload.length <= 100)).toBe(true);
      expect(fs.reduce((n, f) => n + f.payload.length, 0)).toBe(size);
      expect(new HpackDecoder(4096).decode(Buffer.concat(fs.map((f) => f.payload)))).toEqual(['n', value]);
    }
  });
});

describe('FrameWriter against node:http2', () => {
  let server: Http2Server;
  let port: number;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    server = h2server({ maxHeaderListPairs: 256, settings: { maxHeaderListSize: 128 * 1024 } });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it('nghttp2 reads a request split into HEADERS and two CONTINUATIONs, its DATA and trailers, and our RST_STREAM of another stream', async () => {
    const big = 'b'.repeat(40_000);
    const seen = new Map<number, Seen>();
    const done = new Promise<void>((resolve) => {
      let closed = 0;
      server.on('stream', (stream: ServerHttp2Stream, headers) => {
        const s: Seen = { headers, body: '' };
        seen.set(stream.id!, s);
        stream.on('data', (c: Buffer) => (s.body += c.toString()));
        stream.on('trailers', (t: IncomingHttpHeaders) => (s.trailers = t));
        stream.on('error', () => undefined);
        stream.on('end', () => {
          if (!stream.closed) stream.respond({ ':status': 200 }, { endStream: true });
        });
        stream.on('close', () => {
          s.rstCode = stream.rstCode;
          if (++closed === 2) resolve();
        });
      });
    });
    const sock = netConnect(port, '127.0.0.1');
    sockets.push(sock);
    await new Promise<void>((r) => sock.once('connect', r));
    const received: Frame[] = [];
    let answered!: () => void;
    const answer = new Promise<void>((r) => (answered = r));
    const owner = { destroyed: false, peerMaxFrame: DEFAULT_MAX_FRAME };
    const w = new FrameWriter(sock, owner, 'tick');
    const reader = new FrameReader((type, flags, id, payload) => {
      received.push({ type, flags, id, payload });
      if (type === FRAME.HEADERS && id === 1) answered();
      if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) w.write(frameHeader(0, FRAME.SETTINGS, FLAG.ACK, 0));
    });
    sock.on('data', (d: Buffer) => reader.push(d));
    w.write(PREFACE);
    w.write(settingsFrame([]));
    w.headers(1, [':method', 'POST', ':scheme', 'http', ':authority', 'x', ':path', '/up'], { 'x-big': big, te: 'trailers' }, false);
    w.data(1, Buffer.from('hello'), false);
    w.data(1, Buffer.from(' world'), false);
    w.trailers(1, { 'x-sum': 'abc' });
    w.headers(3, [':method', 'GET', ':scheme', 'http', ':authority', 'x', ':path', '/gone'], undefined, false);
    w.reset(3, H2_ERROR.CANCEL);
    await done;
    await answer;
    const one = seen.get(1)!;
    expect(one.headers[':path']).toBe('/up');
    expect(one.headers['x-big']).toBe(big);
    expect(one.body).toBe('hello world');
    expect(one.trailers?.['x-sum']).toBe('abc');
    expect(one.rstCode).toBe(constants.NGHTTP2_NO_ERROR);
    expect(seen.get(3)!.headers[':path']).toBe('/gone');
    expect(seen.get(3)!.rstCode).toBe(constants.NGHTTP2_CANCEL);
    // The server took every frame: it answered stream 1 and sent no GOAWAY (no connection error).
    expect(received.some((f) => f.type === FRAME.GOAWAY)).toBe(false);
  });
});
