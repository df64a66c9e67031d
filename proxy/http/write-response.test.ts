import { createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { writeH2Response } from './write-response.js';
import type { ProxyResponse } from './exchange.js';

/** A body whose producer has already pushed everything and its end (like the HTTP/1 pool's, once the parser saw the end). */
class Settled extends Readable {
  readonly settled = true;
  constructor(data: string) {
    super();
    this.push(data);
    this.push(null);
  }
  override _read(): void {}
}

const DATA = 0x0;
const HEADERS = 0x1;
const END_STREAM = 0x1;
interface Frame { type: number; flags: number; stream: number; payload: Buffer }

let server: Http2Server;
let onStream: (s: ServerHttp2Stream) => void;

beforeEach(async () => {
  server = createServer();
  server.on('stream', (s) => onStream(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterEach(() => new Promise((r) => server.close(r)));

/**
 * Sends one GET on stream 1 from a raw socket (prior knowledge h2c) and returns the frames
 * the server sent on stream 1, up to the one carrying END_STREAM: node's client would hide
 * how the end travelled, which is what is tested here.
 */
async function rawGet(): Promise<Frame[]> {
  const sock: Socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream, 5);
    return Buffer.concat([h, payload]);
  };
  // HPACK: indexed :method GET (2), :path / (4), :scheme http (6); literal :authority "x".
  const block = Buffer.from([0x82, 0x84, 0x86, 0x41, 0x01, 0x78]);
  sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0)), frame(HEADERS, 0x4 | END_STREAM, 1, block)]));
  const frames: Frame[] = [];
  let buf = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const f = { type: buf[3], flags: buf[4], stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) };
        buf = buf.subarray(9 + len);
        if (f.stream !== 1) continue;
        frames.push(f);
        if (f.flags & END_STREAM) {
          sock.destroy();
          resolve(frames);
        }
      }
    });
  });
}

const respondWith = (res: ProxyResponse) => {
  onStream = (s) => writeH2Response(s, res);
};
const types = (fs: Frame[]) => fs.map((f) => `${f.type === DATA ? 'DATA' : f.type === HEADERS ? 'HEADERS' : f.type}${f.flags & END_STREAM ? '+END' : ''}`);

test('a body that has wholly arrived goes out as one DATA frame carrying END_STREAM', async () => {
  respondWith({ status: 200, headers: { 'content-type': 'text/plain' }, body: new Settled('hello'), trailers: () => undefined });
  const frames = await rawGet();
  expect(types(frames)).toEqual(['HEADERS', 'DATA+END']);
  expect(frames[1].payload.toString()).toBe('hello');
});

test('a settled body with trailers still sends them, after the data', async () => {
  respondWith({ status: 200, headers: {}, body: new Settled('hello'), trailers: () => ({ 'x-checksum': '~{}~' }) });
  const frames = await rawGet();
  expect(types(frames)).toEqual(['HEADERS', 'DATA', 'HEADERS+END']);
  expect(frames[1].payload.toString()).toBe('hello');
  // '~{}~' is longer Huffman-coded than raw, so HPACK carries it as is.
  expect(frames[2].payload.includes(Buffer.from('~{}~'))).toBe(true);
});

test('a body still streaming is piped, and its end still reaches the client', async () => {
  const body = new Readable({ read() {} });
  respondWith({ status: 200, headers: {}, body, trailers: () => undefined });
  const got = rawGet();
  setTimeout(() => {
    body.push('one,');
    setTimeout(() => {
      body.push('two');
      body.push(null);
    }, 20);
  }, 20);
  const frames = await got;
  expect(frames[0].type).toBe(HEADERS);
  expect(Buffer.concat(frames.filter((f) => f.type === DATA).map((f) => f.payload)).toString()).toBe('one,two');
  expect(frames.at(-1)!.flags & END_STREAM).toBe(END_STREAM);
});
