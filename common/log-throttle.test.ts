import { FakeClock } from './clock.js';
import { LogThrottle } from './log-throttle.js';

test('at most perSecond lines per key a second; the next one let through says how many were dropped', () => {
  const clock = new FakeClock(0);
  const t = new LogThrottle(clock, 3);
  expect(Array.from({ length: 5 }, () => t.admit('a'))).toEqual([0, 0, 0, null, null]);
  // Another key has its own allowance.
  expect(t.admit('b')).toBe(0);
  clock.advance(999);
  expect(t.admit('a')).toBeNull();
  clock.advance(1);
  expect(t.admit('a')).toBe(3);
  expect(t.admit('a')).toBe(0);
});
