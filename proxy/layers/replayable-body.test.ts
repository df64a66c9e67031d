import { PassThrough, Readable } from 'node:stream';
import type { BodyStream } from '../http/exchange.js';
import { ReplayableBody } from './replayable-body.js';
import { lentCopy, releaseBody } from '../net/body-buffers.js';

const drain = async (r: BodyStream): Promise<string> => {
  let s = '';
  for await (const c of r) s += String(c);
  return s;
};

test('a failed attempt that read part of the body is replayed in full, then continues from the client', async () => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 1024);
  const first = body.attempt();
  src.write('hello ');
  await new Promise<void>((r) => first.once('data', () => r()));
  expect(body.started).toBe(true);
  const second = body.attempt();
  expect(first.destroyed).toBe(true);
  src.end('world');
  expect(await drain(second)).toBe('hello world');
  expect(body.replayable).toBe(true);
  expect(await drain(body.attempt())).toBe('hello world');
});

test('a body larger than the limit streams through and is no longer replayable', async () => {
  const big = Buffer.alloc(3000, 120);
  const body = new ReplayableBody(Readable.from([big.subarray(0, 1000), big.subarray(1000)]), 1500);
  const got = await drain(body.attempt());
  expect(got.length).toBe(3000);
  expect(body.replayable).toBe(false);
});

test('limit 0: an attempt that never read can be redone, one that read cannot', async () => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 0);
  body.attempt(); // connect failed: never read
  expect(body.started).toBe(false);
  expect(body.replayable).toBe(true);
  const second = body.attempt();
  src.end('abc');
  expect(await drain(second)).toBe('abc');
  expect(body.replayable).toBe(false);
});

test('a client body error reaches the current attempt', async () => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 100);
  const a = body.attempt();
  const failed = new Promise<Error>((r) => a.once('error', r));
  a.resume();
  src.destroy(new Error('client went away'));
  expect((await failed).message).toBe('client went away');
});

test('limit 0: the first attempt is the client body itself (no second stream); once read, it cannot be redone', async () => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 0);
  expect(body.attempt()).toBe(src);
  expect(body.started).toBe(false);
  expect(body.replayable).toBe(true);
  src.end('abc');
  expect(await drain(src)).toBe('abc');
  expect(body.started).toBe(true);
  expect(body.replayable).toBe(false);
});

test("a lent body buffer (body-buffers.ts) that the first attempt's writer hands back is replayed as it was: the replay keeps a copy", async () => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 64 * 1024);
  const first = body.attempt();
  const chunk = lentCopy(Buffer.alloc(8192, 0x61));
  src.write(chunk);
  const sent = await new Promise<Buffer>((r) => first.once('data', r));
  expect(sent).toBe(chunk);
  // The first attempt's writer is done with it: the block goes back and serves another copy.
  releaseBody(sent);
  expect(lentCopy(Buffer.alloc(8192, 0x7a)).buffer).toBe(chunk.buffer);
  const second = body.attempt();
  src.end();
  expect(await drain(second)).toBe('a'.repeat(8192));
});
