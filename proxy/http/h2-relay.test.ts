import { connect, constants, createServer, type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { BodyStream } from './exchange.js';
import { relayDestOf, relayH2Body, stopSending } from './h2-relay.js';

let server: Http2Server;
let session: ClientHttp2Session;
let onStream: (s: ServerHttp2Stream) => void;

beforeEach(async () => {
  server = createServer();
  server.on('stream', (s) => onStream(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  session.on('error', () => undefined);
});

afterEach(async () => {
  session.destroy();
  await new Promise((r) => server.close(r));
});

/**
 * Everything the server reads on the next stream, and how the stream ended. `respond`: a
 * 200 once the body has ended; without it the stream ends only by a reset (node's
 * close(code) ends the writable side before its RST_STREAM, so a server answering at the
 * body's end could not tell a reset from a whole body).
 */
function received(read = true, respond = true): Promise<{ body: Buffer; aborted: boolean }> {
  return new Promise((resolve) => {
    onStream = (s) => {
      const parts: Buffer[] = [];
      s.on('error', () => undefined);
      const go = () => {
        s.on('data', (d: Buffer) => parts.push(d));
        if (respond) s.on('end', () => s.respond({ ':status': 200 }, { endStream: true }));
      };
      if (read) go();
      else setTimeout(go, 100);
      s.on('close', () => resolve({ body: Buffer.concat(parts), aborted: s.aborted || s.rstCode !== constants.NGHTTP2_NO_ERROR }));
    };
  });
}

const noError = (): void => undefined;

test('an explicitly paused body is resumed, relayed whole and the stream ended after it', async () => {
  const got = received();
  const body = new Readable({ read() {} });
  body.pause();
  body.push('hel');
  body.push('lo');
  body.push(null);
  const st = session.request({ ':method': 'POST', ':path': '/' });
  relayH2Body(body, st, noError, false);
  st.resume();
  const r = await got;
  expect(r.body.toString()).toBe('hello');
  expect(r.aborted).toBe(false);
});

test('backpressure: the body pauses while the stream is full and resumes on drain', async () => {
  // Default stream window 64 KiB: 1 MiB cannot go before the server reads.
  const got = received(false);
  const chunk = Buffer.alloc(16 * 1024, 7);
  let pushed = 0;
  const body: Readable = new Readable({
    read() {
      if (pushed === 64) return void this.push(null);
      pushed++;
      this.push(chunk);
    },
  });
  const st = session.request({ ':method': 'POST', ':path': '/' });
  relayH2Body(body, st, noError, false);
  st.resume();
  await new Promise((r) => setTimeout(r, 50));
  // The server has not read yet: the relay paused the body short of its end.
  expect(body.readableFlowing).toBe(false);
  expect(pushed).toBeLessThan(64);
  const r = await got;
  expect(r.body.length).toBe(64 * chunk.length);
});

test("a body that fails calls the caller's handler with the body, which finds the stream", async () => {
  const got = received(true, false);
  const body = new Readable({ read() {} });
  const st = session.request({ ':method': 'POST', ':path': '/' });
  st.on('error', () => undefined);
  let seen: unknown;
  relayH2Body(body, st, function (this: BodyStream) {
    seen = relayDestOf(this);
    relayDestOf(this)?.close(constants.NGHTTP2_CANCEL);
  }, false);
  body.push('part');
  setTimeout(() => body.destroy(new Error('upstream died')), 20);
  const r = await got;
  expect(seen).toBe(st);
  expect(r.aborted).toBe(true);
});

test('destroySrc: the stream closing early destroys the body; without it the body is only paused', async () => {
  for (const destroySrc of [true, false]) {
    onStream = (s) => {
      s.on('error', () => undefined);
      s.close(constants.NGHTTP2_CANCEL);
    };
    const body = new Readable({ read() {} });
    const st = session.request({ ':method': 'POST', ':path': '/' });
    st.on('error', () => undefined);
    relayH2Body(body, st, noError, destroySrc);
    body.push('x');
    await new Promise<void>((r) => st.on('close', () => r()));
    expect(body.destroyed).toBe(destroySrc);
    expect(relayDestOf(body)).toBeUndefined();
    if (!destroySrc) {
      // Let go of as after an unpipe(): paused, no relay listener left, so another consumer gets every later byte.
      expect(body.readableFlowing).toBe(false);
      expect(body.listenerCount('data')).toBe(0);
      body.push('late');
      const next: Buffer[] = [];
      body.on('data', (d: Buffer) => next.push(d));
      body.resume();
      await new Promise((r) => setImmediate(r));
      expect(Buffer.concat(next).toString()).toMatch(/late$/);
      body.destroy();
    }
  }
});

test('a stream closed before the body ended leaves the body paused for a retry; after stopSending the rest is read and dropped to its end', async () => {
  // The server answers at once and resets NO_ERROR ("stop sending", RFC 9113 section 8.1).
  onStream = (s) => {
    s.on('error', () => undefined);
    s.respond({ ':status': 200 });
    s.end('done', () => s.close(constants.NGHTTP2_NO_ERROR));
  };
  const relayed = async (stop: boolean): Promise<Readable> => {
    let left = 64;
    const body = new Readable({
      read() {
        this.push(left-- > 0 ? Buffer.alloc(16 * 1024) : null);
      },
    });
    const st = session.request({ ':method': 'POST', ':path': '/' });
    // Marked ahead here; h2-call.ts marks it once the response has ended, before 'close'.
    if (stop) stopSending(st);
    relayH2Body(body, st, noError, false);
    st.resume();
    await new Promise((r) => st.on('close', r));
    return body;
  };
  const kept = await relayed(false);
  await new Promise((r) => setTimeout(r, 50));
  expect(kept.isPaused()).toBe(true);
  expect(kept.readableEnded).toBe(false);
  const dropped = await relayed(true);
  if (!dropped.readableEnded) await new Promise((r) => dropped.once('end', r));
  expect(dropped.readableEnded).toBe(true);
});
