import { jest } from '@jest/globals';
import { FakeClock, systemClock } from './clock.js';
import { deferred, deferredPending } from './deferred.js';

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

describe('approxNow: the clock read once per turn', () => {
  const busy = (ms: number): void => {
    const end = performance.now() + ms;
    while (performance.now() < end);
  };

  it('gives the first reading of a turn with deferred work to every later call in it, and reads again once that work ran', async () => {
    // A turn of its own (a timer's), so no reading is cached from the test's own start.
    await new Promise((r) => setTimeout(r, 1));
    deferred(() => undefined, undefined);
    const first = systemClock.approxNow();
    expect(Math.abs(first - systemClock.now())).toBeLessThan(50);
    busy(3);
    expect(systemClock.approxNow()).toBe(first);
    expect(systemClock.now() - first).toBeGreaterThanOrEqual(3);
    // The reading was cleared by a step of the deferred queue's tick, queued before this one.
    await new Promise((r) => process.nextTick(r));
    expect(deferredPending()).toBe(false);
    deferred(() => undefined, undefined);
    const next = systemClock.approxNow();
    expect(next - first).toBeGreaterThanOrEqual(3);
    busy(2);
    expect(systemClock.approxNow()).toBe(next);
  });

  it('is now() in a turn that defers nothing, and queues no tick of its own there', async () => {
    await new Promise((r) => setTimeout(r, 1));
    expect(deferredPending()).toBe(false);
    const a = systemClock.approxNow();
    busy(2);
    const b = systemClock.approxNow();
    expect(b - a).toBeGreaterThanOrEqual(2);
    expect(deferredPending()).toBe(false);
  });

  it('never goes back: readings of later turns are not earlier', async () => {
    let last = systemClock.approxNow();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setImmediate(r));
      const t = systemClock.approxNow();
      expect(t).toBeGreaterThanOrEqual(last);
      last = t;
    }
  });

  it('is now() on a fake clock', () => {
    const c = new FakeClock(5000);
    expect(c.approxNow()).toBe(5000);
    c.advance(250);
    expect(c.approxNow()).toBe(5250);
  });
});
