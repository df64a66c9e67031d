import { constants, createServer, type Http2Server } from 'node:http2';
import { connect, type Socket, type AddressInfo } from 'node:net';
import { FakeClock } from '../../common/clock.js';
import { guardH2Session, type LimitName } from './h2-session-guard.js';
import { FRAME, FLAG, clientStart, frame, headerBlock, request, rstStream } from '../../test/helpers/h2-frames.js';

/** A guarded h2c server on a fake clock, and a raw client socket to it. */
async function setup(prematureResets: { totalStreamCount: number; minStreamLifetimeMs: number } | null = null, respond = true) {
  const clock = new FakeClock();
  const limits: LimitName[] = [];
  let closed = false;
  const server: Http2Server = createServer();
  server.on('session', (s) => {
    guardH2Session(s, { clock, headersTimeoutMs: 1000, idleTimeoutMs: 3_600_000, streamIdleTimeoutMs: 0, prematureResets, onLimit: (l) => limits.push(l) });
    s.once('close', () => (closed = true));
  });
  server.on('stream', (st) => {
    st.on('error', () => undefined);
    if (!respond) return; // as a proxy still waiting on its upstream
    st.respond({ ':status': 200 });
    st.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock: Socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  sock.on('error', () => undefined);
  sock.on('data', () => undefined);
  await new Promise((r) => sock.once('connect', r));
  sock.write(Buffer.concat([clientStart(), frame(FRAME.SETTINGS, FLAG.ACK, 0)]));
  const settle = () => new Promise((r) => setTimeout(r, 100));
  const done = () => {
    sock.destroy();
    return new Promise((r) => server.close(r));
  };
  return { clock, limits, sock, settle, done, closed: () => closed };
}

test('a header block begun after the first stream must complete within the headers timeout', async () => {
  const t = await setup();
  t.sock.write(request(1, 'x'));
  await t.settle();
  // HEADERS without END_HEADERS, and no CONTINUATION.
  t.sock.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 3, headerBlock([[':method', 'GET']])));
  await t.settle();
  t.clock.advance(900);
  expect(t.closed()).toBe(false);
  t.clock.advance(700); // 1.6 timeouts: at most 1.5 timeouts after the block began
  await t.settle();
  expect(t.limits).toEqual(['request-headers-timeout']);
  expect(t.closed()).toBe(true);
  await t.done();
});

test('an idle connection with completed streams is not taken for an open header block', async () => {
  const t = await setup();
  t.sock.write(request(1, 'x'));
  await t.settle();
  t.sock.write(frame(FRAME.PING, 0, 0, Buffer.alloc(8)));
  await t.settle();
  t.clock.advance(10_000);
  await t.settle();
  expect(t.limits).toEqual([]);
  expect(t.closed()).toBe(false);
  await t.done();
});

test('RST_STREAM(NO_ERROR) before the response is a premature reset', async () => {
  const t = await setup({ totalStreamCount: 100, minStreamLifetimeMs: 1000 }, false);
  const frames: Buffer[] = [];
  for (let id = 1; id < 2 * 60; id += 2) frames.push(request(id, 'x'), rstStream(id, constants.NGHTTP2_NO_ERROR));
  t.sock.write(Buffer.concat(frames));
  await t.settle();
  expect(t.limits).toEqual(['premature-resets']);
  await t.done();
});

test('RST_STREAM(NO_ERROR) once the response has ended is not premature', async () => {
  const t = await setup({ totalStreamCount: 100, minStreamLifetimeMs: 1000 });
  const frames: Buffer[] = [];
  // A request body still open: the response ends first, then the client stops the stream.
  for (let id = 1; id < 2 * 60; id += 2) frames.push(request(id, 'x', '/', 'POST', false));
  t.sock.write(Buffer.concat(frames));
  await t.settle();
  frames.length = 0;
  for (let id = 1; id < 2 * 60; id += 2) frames.push(rstStream(id, constants.NGHTTP2_NO_ERROR));
  t.sock.write(Buffer.concat(frames));
  await t.settle();
  expect(t.limits).toEqual([]);
  await t.done();
});
