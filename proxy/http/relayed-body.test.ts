import { Readable } from 'node:stream';
import { RelayedBody } from './relayed-body.js';

const chunk = (n: number, fill = 1) => Buffer.alloc(n, fill);

function source(): Readable {
  return new Readable({ read() {} });
}

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('passes every byte on in order, calls onChunk per chunk, and ends with its source', async () => {
  const src = source();
  let chunks = 0;
  const relay = new RelayedBody(src, () => chunks++);
  src.push(Buffer.from('hello '));
  src.push(Buffer.from('world'));
  src.push(null);
  expect((await readAll(relay)).toString()).toBe('hello world');
  expect(chunks).toBe(2);
});

test('backpressure: the source pauses while the relay is full and goes on once it is read', async () => {
  const src = source();
  const relay = new RelayedBody(src, () => undefined);
  for (let i = 0; i < 8; i++) src.push(chunk(32 * 1024, i));
  await new Promise((r) => setImmediate(r));
  // 64 KiB (the relay's high-water mark) taken, the source paused with the rest.
  expect(src.isPaused()).toBe(true);
  expect(relay.readableLength).toBeGreaterThanOrEqual(relay.readableHighWaterMark);
  expect(relay.readableLength).toBeLessThan(8 * 32 * 1024);
  src.push(null);
  const all = await readAll(relay);
  expect(all.length).toBe(8 * 32 * 1024);
  for (let i = 0; i < 8; i++) expect(all[i * 32 * 1024]).toBe(i);
});

test('detach: what was relayed stays readable, later bytes are not taken, and the relay can end on its own', async () => {
  const src = source();
  const relay = new RelayedBody(src, () => undefined);
  src.push(Buffer.from('before'));
  await new Promise((r) => setImmediate(r));
  relay.detach();
  src.push(Buffer.from('after'));
  relay.push(null);
  expect((await readAll(relay)).toString()).toBe('before');
  expect(src.listenerCount('data')).toBe(0);
});

test('destroyed by its reader: detached from the source, which is left paused for its owner', async () => {
  const src = source();
  const relay = new RelayedBody(src, () => undefined);
  src.push(Buffer.from('x'));
  await new Promise((r) => setImmediate(r));
  relay.destroy();
  await new Promise((r) => setImmediate(r));
  expect(src.listenerCount('data')).toBe(0);
  expect(src.listenerCount('end')).toBe(0);
  expect(src.isPaused()).toBe(true);
  expect(src.destroyed).toBe(false);
});

test("the source's error destroys the relay with it while it relays; after detach it is the caller's, and never unhandled", async () => {
  const src = source();
  const relay = new RelayedBody(src, () => undefined);
  const failed = new Promise<Error>((resolve) => relay.once('error', resolve));
  src.destroy(new Error('upstream reset'));
  expect((await failed).message).toBe('upstream reset');

  const src2 = source();
  const relay2 = new RelayedBody(src2, () => undefined);
  relay2.detach();
  src2.destroy(new Error('after the deadline'));
  await new Promise((r) => setImmediate(r));
  expect(relay2.destroyed).toBe(false);
});
