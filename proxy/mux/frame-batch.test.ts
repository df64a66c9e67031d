import { FrameBatch, BATCH_MAX_BYTES } from './frame-batch.js';
import { controlFrame, Deframer, FLAG_FIN, frameHeader, FrameType } from './frame.js';

/** What a deframer makes of `bytes`: [type, flags, id, payload as latin1] per frame. */
function frames(bytes: Buffer): [number, number, number, string][] {
  const out: [number, number, number, string][] = [];
  const d = new Deframer({ frame: (type, flags, id, payload) => void out.push([type, flags, id, payload.toString('latin1')]), malformed: (why) => void out.push([-1, 0, 0, why]) });
  d.push(bytes);
  return out;
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
    [FrameType.Window, 0, 0, '\u0000\u0000\u0000\u0001'],
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
