import { H2FrameReader, type H2FrameSink } from './frame-reader.js';
import { frameHeader } from './frames.js';

/** A frame's bytes: 9-byte header (RFC 9113 section 4.1) and payload. */
const frame = (type: number, flags: number, id: number, payload: Buffer): Buffer => Buffer.concat([frameHeader(payload.length, type, flags, id), payload]);

type Got = [number, number, number, string, boolean];

/**
 * A sink that reads each payload at the call (as the contract says) and records whether it
 * was the reader's own copy (not a view of what was pushed), and whether `kept()` copied it.
 */
function recorder(stopAfter = Infinity): H2FrameSink & { got: Got[]; tooLarge: number[]; keptCopies: number; keptWrong: number; pushed: Buffer; reader: H2FrameReader | null } {
  const r = {
    got: [] as Got[],
    tooLarge: [] as number[],
    keptCopies: 0,
    keptWrong: 0,
    pushed: Buffer.alloc(0),
    reader: null as H2FrameReader | null,
    onFrame(type: number, flags: number, id: number, payload: Buffer): boolean {
      const owned = payload.buffer !== r.pushed.buffer;
      const kept = r.reader!.kept(payload);
      if (kept !== payload) r.keptCopies++;
      // A copy exactly for a non-empty view of a shared read; the same bytes either way.
      if ((kept !== payload) !== (r.reader!.viewReads && !owned && payload.length > 0) || !kept.equals(payload)) r.keptWrong++;
      r.got.push([type, flags, id, payload.toString('latin1'), owned]);
      return r.got.length < stopAfter;
    },
    onFrameTooLarge(length: number): void {
      r.tooLarge.push(length);
    },
  };
  return r;
}

/** A reader over `r`; `viewReads`: the pushes are views of a shared read buffer. */
function readerFor(r: ReturnType<typeof recorder>, viewReads = true): H2FrameReader {
  const reader = new H2FrameReader(r, 16_384);
  reader.viewReads = viewReads;
  r.reader = reader;
  return reader;
}

const wire = Buffer.concat([
  frame(4, 0, 0, Buffer.alloc(6, 1)), // SETTINGS
  frame(1, 4, 1, Buffer.from('head block')), // HEADERS
  frame(0, 0, 1, Buffer.from('x'.repeat(300))), // DATA
  frame(0, 1, 1, Buffer.alloc(0)), // empty DATA with END_STREAM
  frame(8, 0, 1, Buffer.from([0, 0, 0, 9])), // WINDOW_UPDATE
]);
const expected: [number, number, number, string][] = [
  [4, 0, 0, '\u0001'.repeat(6)],
  [1, 4, 1, 'head block'],
  [0, 0, 1, 'x'.repeat(300)],
  [0, 1, 1, ''],
  [8, 0, 1, '\u0000\u0000\u0000\u0009'],
];

test('the same frames however the reads cut them: views when within a read, the reader\'s own copy when spanning reads', () => {
  for (let cut = 0; cut <= wire.length; cut++) {
    // The reads land in one buffer, overwritten by each (the shared read buffer).
    const shared = Buffer.alloc(wire.length);
    const r = recorder();
    const reader = readerFor(r);
    for (const [from, to] of [[0, cut], [cut, wire.length]]) {
      shared.fill(0x7a);
      wire.copy(shared, 0, from, to);
      r.pushed = shared;
      reader.push(shared.subarray(0, to - from));
    }
    expect([cut, r.got.map((g) => g.slice(0, 4))]).toEqual([cut, expected]);
    // Exactly the frame the cut fell in (if any) was gathered; every other one was a view.
    const spanning = r.got.filter((g) => g[4]).length;
    let start = 0;
    let inside = 0;
    for (const e of expected) {
      const end = start + 9 + Buffer.byteLength(e[3], 'latin1');
      if (cut > start && cut < end) inside++;
      start = end;
    }
    expect([cut, spanning]).toEqual([cut, inside]);
    // kept() copied the non-empty frames that were views, and only those.
    expect(r.keptWrong).toBe(0);
    expect(r.keptCopies).toBe(r.got.filter((g) => !g[4] && g[3].length > 0).length);
    expect(reader.partialType).toBe(-1);
  }
});

test('a frame trickled in byte by byte is copied once: one buffer of its size, no joins', () => {
  const payload = Buffer.alloc(16_384);
  for (let i = 0; i < payload.length; i++) payload[i] = i % 253;
  const bytes = frame(0, 1, 3, payload);
  const r = recorder();
  const reader = readerFor(r);
  const allocUnsafe = Buffer.allocUnsafe;
  const concat = Buffer.concat;
  let allocated = 0;
  let joined = 0;
  Buffer.allocUnsafe = ((n: number) => {
    allocated += n;
    return allocUnsafe(n);
  }) as typeof Buffer.allocUnsafe;
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    joined++;
    return concat(list, total);
  }) as typeof Buffer.concat;
  try {
    for (let i = 0; i < bytes.length; i++) reader.push(bytes.subarray(i, i + 1));
  } finally {
    Buffer.allocUnsafe = allocUnsafe;
    Buffer.concat = concat;
  }
  expect(joined).toBe(0);
  expect(allocated).toBe(bytes.length);
  expect(r.got).toHaveLength(1);
  expect(r.got[0][4]).toBe(true);
  expect(Buffer.from(r.got[0][3], 'latin1').equals(payload)).toBe(true);
});

test('a frame over the limit is refused from its header, whole or split, and nothing of it is delivered', () => {
  const big = frame(0, 0, 1, Buffer.alloc(16_385));
  for (const cut of [0, 4, 9, 20]) {
    const r = recorder();
    const reader = readerFor(r);
    if (cut > 0) reader.push(big.subarray(0, cut));
    if (cut < 9) reader.push(big.subarray(cut, 9));
    expect([cut, r.tooLarge]).toEqual([cut, [16_385]]);
    expect(r.got).toEqual([]);
  }
});

test('partialType names the frame partly here once its type byte is', () => {
  const r = recorder();
  const reader = readerFor(r);
  const headers = frame(1, 0, 1, Buffer.from('abc'));
  reader.push(headers.subarray(0, 3));
  expect(reader.partialType).toBe(-1);
  reader.push(headers.subarray(3, 5));
  expect(reader.partialType).toBe(1);
  reader.push(headers.subarray(5, 10));
  expect(reader.partialType).toBe(1);
  reader.push(headers.subarray(10));
  expect(reader.partialType).toBe(-1);
  expect(r.got.map((g) => g.slice(0, 4))).toEqual([[1, 0, 1, 'abc']]);
});

test('a sink that says stop gets no more frames of that read', () => {
  const r = recorder(2);
  readerFor(r).push(wire);
  expect(r.got).toHaveLength(2);
});

test("over node's own reads (a Buffer each, not a shared one) kept() copies nothing", () => {
  const r = recorder();
  const reader = readerFor(r, false);
  r.pushed = Buffer.from(wire);
  reader.push(r.pushed);
  expect(r.got).toHaveLength(expected.length);
  expect(r.keptCopies).toBe(0);
  expect(r.keptWrong).toBe(0);
});

test('a sink that pauses gets no more frames until resume(): the rest of the read, and reads meanwhile, wait as a copy, in order', () => {
  for (const cut of [9 + 6 + 3, 9 + 6 + 9 + 10, wire.length]) {
    const shared = Buffer.alloc(wire.length);
    const r = recorder();
    const reader = readerFor(r);
    // Paused at the second frame (the HEADERS), as the session pauses at a frame's end.
    const onFrame = r.onFrame;
    r.onFrame = (...a) => {
      const more = onFrame(...a);
      if (r.got.length !== 2) return more;
      reader.pause();
      return false;
    };
    for (const [from, to] of [[0, cut], [cut, wire.length]]) {
      shared.fill(0x7a);
      wire.copy(shared, 0, from, to);
      r.pushed = shared;
      reader.push(shared.subarray(0, to - from));
    }
    // The shared buffer is overwritten by the next read: what waits is the reader's own.
    shared.fill(0x7a);
    expect([cut, r.got.length]).toEqual([cut, 2]);
    const held = reader.resume();
    reader.push(held ?? Buffer.alloc(0));
    expect([cut, r.got.map((g) => g.slice(0, 4))]).toEqual([cut, expected]);
    expect(reader.resume()).toBeNull();
  }
});
