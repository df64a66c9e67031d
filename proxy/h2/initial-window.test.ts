import { applyInitialWindow } from './initial-window.js';

const MAX = 0x7fffffff;

test('every open window changes by the last value less the one before (RFC 9113 section 6.9.2), negative included', () => {
  const streams = [{ sendWindow: 65_535 }, { sendWindow: 10 }];
  expect(applyInitialWindow(streams, 65_535, 1000, 70_000)).toBe(true);
  expect(streams.map((s) => s.sendWindow)).toEqual([1000, 10 - 64_535]);
});

test('a value on the way that takes a window past 2^31-1 is an error even when the last comes back down', () => {
  expect(applyInitialWindow([{ sendWindow: MAX - 100 }], 65_535, 1000, 65_535 + 101)).toBe(false);
  expect(applyInitialWindow([{ sendWindow: MAX - 100 }], 65_535, 1000, 65_535 + 100)).toBe(true);
});
