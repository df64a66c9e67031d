import { bodyBufferStats, isLent, keepable, lentCopy, releaseBody, SocketReleases } from './body-buffers.js';

const view = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

test('a lent copy holds the bytes of the view, which may then change; released, its block serves the next copy of its size', () => {
  const v = view(10_000, 0x61);
  const a = lentCopy(v);
  v.fill(0x62); // the read buffer's next read
  expect(a.equals(Buffer.alloc(10_000, 0x61))).toBe(true);
  expect(isLent(a)).toBe(true);
  releaseBody(a);
  expect(isLent(a)).toBe(false);
  const b = lentCopy(view(16 * 1024, 0x63));
  expect(b.buffer).toBe(a.buffer);
  expect(b.length).toBe(16 * 1024);
  expect(b.every((x) => x === 0x63)).toBe(true);
  // A 64 KiB read takes a block of the larger size, not the 16 KiB one released.
  releaseBody(b);
  const c = lentCopy(view(64 * 1024, 0x64));
  expect(c.buffer).not.toBe(a.buffer);
  expect(c.buffer.byteLength).toBe(64 * 1024);
  releaseBody(c);
});

test('only the Buffer that was lent takes its block back, once: a slice of it, a second release and a plain buffer change nothing', () => {
  const a = lentCopy(view(8192, 1));
  releaseBody(a.subarray(0, 4096));
  releaseBody(Buffer.from(a.buffer, 0, a.length)); // same memory, another Buffer
  expect(isLent(a)).toBe(true);
  // Still lent: the next copy must not get its block.
  const b = lentCopy(view(8192, 2));
  expect(b.buffer).not.toBe(a.buffer);
  expect(a.every((x) => x === 1)).toBe(true);
  releaseBody(a);
  releaseBody(a);
  // Released twice, but on the free list once: two copies now get two different blocks.
  const c = lentCopy(view(8192, 3));
  const d = lentCopy(view(8192, 4));
  expect(c.buffer).toBe(a.buffer);
  expect(d.buffer).not.toBe(a.buffer);
  expect(c.every((x) => x === 3) && d.every((x) => x === 4)).toBe(true);
  for (const x of [b, c, d]) releaseBody(x);
});

test('views under 4 KiB or over 64 KiB are plain copies, never lent', () => {
  for (const n of [0, 100, 4095, 64 * 1024 + 1]) {
    const v = view(n, 7);
    const c = lentCopy(v);
    expect(c.equals(v)).toBe(true);
    expect(c.buffer === v.buffer && c.byteOffset === v.byteOffset).toBe(false);
    expect(isLent(c)).toBe(false);
  }
});

test('keepable gives a lent buffer as a copy of its own, anything else as it is', () => {
  const a = lentCopy(view(8192, 5));
  const k = keepable(a);
  expect(k).not.toBe(a);
  expect(k.buffer).not.toBe(a.buffer);
  expect(k.equals(a)).toBe(true);
  const plain = Buffer.alloc(8192, 6);
  expect(keepable(plain)).toBe(plain);
  expect(keepable(a.subarray(1))).not.toBe(k);
  releaseBody(a);
});

test('SocketReleases: a buffer goes back once the socket holds nothing written: at once, or at the next write or drain that finds it empty', () => {
  const socket = { writableLength: 0 };
  const r = new SocketReleases(socket);
  const a = lentCopy(view(8192, 1));
  r.wrote(a);
  expect(isLent(a)).toBe(false);
  // Written while node still holds bytes: kept until the socket has written everything.
  socket.writableLength = 100;
  const b = lentCopy(view(8192, 2));
  const c = lentCopy(view(8192, 3));
  r.wrote(b);
  r.settle();
  r.wrote(c);
  expect([isLent(b), isLent(c)]).toEqual([true, true]);
  socket.writableLength = 0;
  r.settle();
  expect([isLent(b), isLent(c)]).toEqual([false, false]);
  // A buffer that is not lent is never held.
  socket.writableLength = 5;
  r.wrote(Buffer.alloc(8192));
  const d = lentCopy(view(8192, 4));
  socket.writableLength = 0;
  r.wrote(d);
  expect(isLent(d)).toBe(false);
});

test('after a burst the free list keeps at most 32 large blocks (2 MiB): the rest are left to the garbage collector', () => {
  const burst = Array.from({ length: 40 }, () => lentCopy(view(64 * 1024, 9)));
  for (const b of burst) releaseBody(b);
  const before = bodyBufferStats();
  const again = Array.from({ length: 40 }, () => lentCopy(view(64 * 1024, 10)));
  const after = bodyBufferStats();
  expect(after.reused - before.reused).toBe(32);
  expect(after.made - before.made).toBe(8);
  for (const b of again) releaseBody(b);
});
