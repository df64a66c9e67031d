import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { forwardH2 } from './h2-forward.js';
import type { ProxyRequest } from './exchange.js';
import type { Headers } from './headers.js';
import { FLAG, FRAME, FrameReader, frame } from '../../test/helpers/h2-frames.js';

/** A request body whose producer has already pushed everything and its end (exchange.ts SettledBody). */
class Settled extends Readable {
  readonly settled = true;
  constructor(data: string) {
    super();
    this.push(data);
    this.push(null);
  }
  override _read(): void {}
}

interface Seen { type: number; flags: number; payload: Buffer }

let server: Server;
let session: ClientHttp2Session;
/** Frames the raw server saw on stream 1, until END_STREAM; resolved then. */
let stream1: Promise<Seen[]>;

beforeEach(async () => {
  let done!: (f: Seen[]) => void;
  stream1 = new Promise((r) => (done = r));
  server = createServer((sock: Socket) => {
    const seen: Seen[] = [];
    // Server preface: SETTINGS, and an ACK of the client's; then answer stream 1 with 200 + END_STREAM.
    sock.write(Buffer.concat([frame(FRAME.SETTINGS, 0, 0), frame(FRAME.SETTINGS, FLAG.ACK, 0)]));
    let skip = 24; // the client's connection preface
    const reader = new FrameReader((type, flags, id, payload) => {
      if (id !== 1) return;
      seen.push({ type, flags, payload: Buffer.from(payload) });
      if (flags & FLAG.END_STREAM) {
        // HPACK: indexed :status 200 (static index 8).
        sock.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, Buffer.from([0x88])));
        done(seen);
      }
    });
    sock.on('data', (d: Buffer) => {
      if (skip > 0) {
        const n = Math.min(skip, d.length);
        skip -= n;
        d = d.subarray(n);
      }
      if (d.length) reader.push(d);
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  session = h2connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  session.on('error', () => undefined);
});

afterEach(async () => {
  session.destroy();
  await new Promise((r) => server.close(r));
});

function post(body: Readable, trailers?: Headers): ProxyRequest {
  return {
    method: 'POST', scheme: 'http', authority: 'x', path: '/', headers: {}, body, trailers: () => trailers,
    origProto: 'HTTP/1.1', source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
  };
}

test('a settled request body goes out as one DATA frame carrying END_STREAM', async () => {
  const res = await forwardH2(session, post(new Settled('hello')), {});
  expect(res.status).toBe(200);
  const frames = await stream1;
  expect(frames.map((f) => [f.type, f.flags & FLAG.END_STREAM])).toEqual([
    [FRAME.HEADERS, 0],
    [FRAME.DATA, FLAG.END_STREAM],
  ]);
  expect(frames[1].payload.toString()).toBe('hello');
});

test('a settled body with trailers: DATA, then the trailers ending the stream', async () => {
  const res = await forwardH2(session, post(new Settled('hello'), { 'x-sum': '5' }), {});
  expect(res.status).toBe(200);
  const frames = await stream1;
  expect(frames.map((f) => [f.type, f.flags & FLAG.END_STREAM])).toEqual([
    [FRAME.HEADERS, 0],
    [FRAME.DATA, 0],
    [FRAME.HEADERS, FLAG.END_STREAM],
  ]);
});

test('a streamed body is piped, its end in a frame of its own', async () => {
  const body = new Readable({ read() {} });
  const sent = forwardH2(session, post(body), {});
  body.push('hel');
  setTimeout(() => {
    body.push('lo');
    body.push(null);
  }, 20);
  expect((await sent).status).toBe(200);
  const frames = await stream1;
  expect(Buffer.concat(frames.filter((f) => f.type === FRAME.DATA).map((f) => f.payload)).toString()).toBe('hello');
  expect(frames.at(-1)!.flags & FLAG.END_STREAM).toBe(FLAG.END_STREAM);
});
