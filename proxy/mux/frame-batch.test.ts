import { FrameBatch, BATCH_MAX_BYTES, BY_REFERENCE_BYTES } from './frame-batch.js';
import { controlFrame, Deframer, FLAG_FIN, frameHeader, FrameType } from './frame.js';
import { frameRecorder } from './mux-test-pair.js';
import { isLent, lentCopy, releaseBody } from '../net/body-buffers.js';

/** What a deframer makes of `bytes`: [type, flags, id, payload as latin1] per frame. */
function frames(bytes: Buffer): [number, number, number, string][] {
  const rec = frameRecorder();
  new Deframer(rec).push(bytes);
  return rec.frames;
}

test('frames laid out in one buffer are byte for byte what the frame functions make', () => {
  const b = new FrameBatch();
  b.dataHeader(0, 1, 5);
  b.bytes(Buffer.from('hello'));
  b.control(FrameType.Window, 1, 70000);
  b.dataHeader(FLAG_FIN, 3, 4);
  b.latin1('\u00e9t\u00e9!');
  b.dataHeader(FLAG_FIN, 5, 0);
  b.control(FrameType.Reset, 7, 2);
  const out = b.take()!;
  expect(out).toEqual(
    Buffer.concat([
      frameHeader(FrameType.Data, 0, 1, 5),
      Buffer.from('hello'),
      controlFrame(FrameType.Window, 1, 70000),
      frameHeader(FrameType.Data, FLAG_FIN, 3, 4),
      Buffer.from('\u00e9t\u00e9!', 'latin1'),
      frameHeader(FrameType.Data, FLAG_FIN, 5, 0),
      controlFrame(FrameType.Reset, 7, 2),
    ]),
  );
  expect(b.length).toBe(0);
  expect(b.take()).toBeNull();
});

test('a batch taken is never written again: the next one takes the rest of the slab or a new one', () => {
  const b = new FrameBatch();
  b.dataHeader(0, 1, 3);
  b.bytes(Buffer.from('one'));
  const first = b.take()!;
  const copy = Buffer.from(first);
  // Many small batches, then one that outgrows the slab (it moves to a larger buffer whole).
  for (let i = 0; i < 100; i++) {
    b.dataHeader(0, 3, 100);
    b.bytes(Buffer.alloc(100, 0x61 + (i % 26)));
    expect(frames(b.take()!)).toEqual([[FrameType.Data, 0, 3, String.fromCharCode(0x61 + (i % 26)).repeat(100)]]);
  }
  b.control(FrameType.Window, 0, 1);
  const big = Buffer.alloc(40_000, 0x7a);
  b.dataHeader(0, 9, big.length);
  b.bytes(big);
  const last = b.take()!;
  expect(frames(last)).toEqual([
    [FrameType.Window, 0, 0, '00000001'],
    [FrameType.Data, 0, 9, 'z'.repeat(40_000)],
  ]);
  expect(first).toEqual(copy);
});

test('clear drops what was not taken; the bound a session hands over at is well above one frame', () => {
  const b = new FrameBatch();
  b.dataHeader(0, 1, 2);
  b.bytes(Buffer.from('no'));
  b.clear();
  expect(b.take()).toBeNull();
  b.dataHeader(0, 1, 3);
  b.bytes(Buffer.from('yes'));
  expect(frames(b.take()!)).toEqual([[FrameType.Data, 0, 1, 'yes']]);
  expect(BATCH_MAX_BYTES).toBeGreaterThan(64 * 1024 + 10);
});

test('a long DATA payload is kept by reference, not copied: the batch is then a list of buffers that deframes to the same frames', () => {
  const b = new FrameBatch();
  const small = Buffer.from('head');
  const large = Buffer.alloc(BY_REFERENCE_BYTES, 0x6c);
  const larger = Buffer.alloc(64 * 1024, 0x4c);
  b.dataFrame(0, 1, small);
  b.dataFrame(0, 1, large);
  b.control(FrameType.Window, 3, 9);
  b.dataFrame(FLAG_FIN, 1, larger);
  b.dataFrame(FLAG_FIN, 5, Buffer.alloc(0));
  expect(b.hasPieces).toBe(true);
  expect(b.length).toBe(4 * 10 + 14 + 4 + large.length + larger.length);
  const pieces = b.takePieces();
  // The long payloads are the caller's buffers themselves; the small one was copied into the slab.
  expect(pieces.filter((p) => p === large || p === larger)).toHaveLength(2);
  expect(pieces.some((p) => p === small)).toBe(false);
  expect(frames(Buffer.concat(pieces))).toEqual([
    [FrameType.Data, 0, 1, 'head' + 'l'.repeat(large.length)],
    [FrameType.Window, 0, 3, '00000009'],
    [FrameType.Data, FLAG_FIN, 1, 'L'.repeat(larger.length)],
    [FrameType.Data, FLAG_FIN, 5, ''],
  ]);
  expect(b.length).toBe(0);
  expect(b.hasPieces).toBe(false);
  expect(b.take()).toBeNull();
  // A payload under the bound is copied: a batch of one buffer again.
  b.dataFrame(0, 7, Buffer.alloc(BY_REFERENCE_BYTES - 1, 0x61));
  expect(b.hasPieces).toBe(false);
  expect(frames(b.take()!)).toEqual([[FrameType.Data, 0, 7, 'a'.repeat(BY_REFERENCE_BYTES - 1)]]);
});

test('a lent body buffer (body-buffers.ts) copied into the batch goes back at once; one kept by reference stays lent', () => {
  const b = new FrameBatch();
  const short = lentCopy(Buffer.alloc(BY_REFERENCE_BYTES - 1, 0x73));
  const long = lentCopy(Buffer.alloc(BY_REFERENCE_BYTES, 0x6c));
  b.dataFrame(0, 1, short);
  b.dataFrame(0, 1, long);
  expect(isLent(short)).toBe(false);
  expect(isLent(long)).toBe(true);
  // The short one's block is reused and overwritten: the batch's frame kept its own copy.
  const next = lentCopy(Buffer.alloc(BY_REFERENCE_BYTES - 1, 0x78));
  expect(next.buffer).toBe(short.buffer);
  expect(frames(Buffer.concat(b.takePieces()))).toEqual([[FrameType.Data, 0, 1, 's'.repeat(short.length) + 'l'.repeat(long.length)]]);
  releaseBody(next);
  releaseBody(long);
});
