import { jest } from '@jest/globals';
import { systemClock } from './clock.js';

describe('systemClock timers longer than Node can hold (2^31-1 ms, 24.8 days)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('a 30-day timer fires after 30 days, not after 1 ms', () => {
    const fn = jest.fn();
    systemClock.setTimeout(fn, 30 * 86_400_000);
    jest.advanceTimersByTime(1000);
    expect(fn).not.toHaveBeenCalled();
    jest.advanceTimersByTime(2 ** 31 - 1);
    expect(fn).not.toHaveBeenCalled();
    jest.advanceTimersByTime(30 * 86_400_000 - (2 ** 31 - 1) - 1001);
    expect(fn).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  test('cleared in the middle of its chain, it never fires; Infinity never fires', () => {
    const fn = jest.fn();
    const t = systemClock.setTimeout(fn, 3 * 2 ** 31);
    jest.advanceTimersByTime(2 ** 31 + 5);
    systemClock.clearTimeout(t);
    jest.advanceTimersByTime(4 * 2 ** 31);
    systemClock.setTimeout(fn, Infinity);
    jest.advanceTimersByTime(10 * 2 ** 31);
    expect(fn).not.toHaveBeenCalled();
  });

  test('short timers are plain Node timers', () => {
    const fn = jest.fn();
    const t = systemClock.setTimeout(fn, 10);
    expect(typeof (t as { refresh?: unknown }).refresh).toBe('function');
    jest.advanceTimersByTime(10);
    expect(fn).toHaveBeenCalledTimes(1);
  });
});
