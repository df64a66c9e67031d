import { FakeClock } from './clock.js';
import { WALL_CHECK_MS, WallDeadline } from './wall-deadline.js';

/** A FakeClock whose wall clock can be stepped apart from its timers (a suspend, an NTP step). */
class SteppableClock extends FakeClock {
  step = 0;
  override wallNow(): number {
    return super.wallNow() + this.step;
  }
}

describe('WallDeadline', () => {
  test('due by the monotonic clock when nothing jumps: fires once, at the delay', () => {
    const clock = new SteppableClock();
    let fired = 0;
    new WallDeadline(clock, { delayMs: 5 * WALL_CHECK_MS + 7 }, () => fired++);
    clock.advance(5 * WALL_CHECK_MS + 6);
    expect(fired).toBe(0);
    clock.advance(1);
    expect(fired).toBe(1);
    expect(clock.pending()).toBe(0);
  });

  test('the wall clock jumping past the deadline (a suspend) fires it at the next look, within WALL_CHECK_MS', () => {
    const clock = new SteppableClock();
    let fired = 0;
    const d = new WallDeadline(clock, { delayMs: 10 * 3_600_000 }, () => fired++);
    clock.step = 11 * 3_600_000;
    expect(d.leftMs).toBeLessThan(0);
    clock.advance(WALL_CHECK_MS - 1);
    expect(fired).toBe(0);
    clock.advance(1);
    expect(fired).toBe(1);
  });

  test('a wall clock stepped back does not postpone it; due by the wall clock only, it waits for the wall clock; cancel() disarms', () => {
    const clock = new SteppableClock();
    let fired = 0;
    new WallDeadline(clock, { delayMs: 3 * WALL_CHECK_MS }, () => fired++);
    clock.step = -3_600_000;
    clock.advance(3 * WALL_CHECK_MS);
    expect(fired).toBe(1);
    const wallOnly = new WallDeadline(clock, { dueWallMs: clock.wallNow() + 2 * WALL_CHECK_MS }, () => fired++);
    clock.step += WALL_CHECK_MS; // the wall clock gains a minute on the timers
    clock.advance(WALL_CHECK_MS);
    expect(fired).toBe(2);
    expect(wallOnly.leftMs).toBe(0);
    const cancelled = new WallDeadline(clock, { delayMs: 1 }, () => fired++);
    cancelled.cancel();
    clock.advance(10 * WALL_CHECK_MS);
    expect(fired).toBe(2);
    expect(clock.pending()).toBe(0);
  });

  test('its timer is unref()ed unless keepAlive (something awaits it: a sidecar\'s first certificate waiting for its notBefore)', () => {
    const unrefs: boolean[] = [];
    class RecordingClock extends FakeClock {
      override setTimeout(fn: () => void, ms: number) {
        const t = super.setTimeout(fn, ms);
        const i = unrefs.push(false) - 1;
        return { ...t, unref: () => (unrefs[i] = true) };
      }
    }
    const clock = new RecordingClock();
    new WallDeadline(clock, { delayMs: 2 * WALL_CHECK_MS }, () => undefined);
    new WallDeadline(clock, { delayMs: 2 * WALL_CHECK_MS, keepAlive: true }, () => undefined);
    clock.advance(WALL_CHECK_MS); // each looks again: the re-armed timer keeps the choice
    expect(unrefs).toEqual([true, false, true, false]);
  });
});
