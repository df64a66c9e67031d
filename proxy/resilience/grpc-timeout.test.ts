import { deadlineSpent, formatGrpcTimeout, parseGrpcTimeout } from './grpc-timeout.js';

test('parses every unit of the gRPC spec', () => {
  expect(parseGrpcTimeout('2H')).toBe(7_200_000);
  expect(parseGrpcTimeout('3M')).toBe(180_000);
  expect(parseGrpcTimeout('1S')).toBe(1_000);
  expect(parseGrpcTimeout('100m')).toBe(100);
  expect(parseGrpcTimeout('2500u')).toBeCloseTo(2.5);
  expect(parseGrpcTimeout('99999999n')).toBeCloseTo(99.999999);
});

test('rejects malformed values: more than 8 digits, unknown unit, sign, empty', () => {
  for (const bad of ['123456789m', '10s', '-1S', '', 'S', '1.5S', '10 m']) expect(parseGrpcTimeout(bad)).toBeNull();
});

test('formats a remaining deadline rounded down, in a unit that fits 8 digits', () => {
  expect(formatGrpcTimeout(99.9)).toBe('99m');
  expect(formatGrpcTimeout(0.3)).toBe('1m');
  expect(formatGrpcTimeout(-5)).toBe('1m');
  expect(formatGrpcTimeout(1e8 + 5)).toBe('100000S');
  expect(formatGrpcTimeout(1e11 * 1.5)).toBe('2500000M');
  expect(parseGrpcTimeout(formatGrpcTimeout(12_345))).toBe(12_345);
});

test('a deadline with less than 1 ms left is spent (0m, 1n, 500u), 1 ms is not', () => {
  for (const raw of ['0m', '0n', '1n', '500u', '999999n']) expect([raw, deadlineSpent(parseGrpcTimeout(raw)!)]).toEqual([raw, true]);
  for (const raw of ['1m', '1000u', '2S']) expect([raw, deadlineSpent(parseGrpcTimeout(raw)!)]).toEqual([raw, false]);
  expect(deadlineSpent(-3)).toBe(true);
});
