import { FakeClock, seededRandom } from '../../common/clock.js';
import { WALL_CHECK_MS } from '../../common/wall-deadline.js';
import { ExpiryQueue } from './expiry-queue.js';

describe('ExpiryQueue', () => {
  test('random adds, moves and deletes: each item left is due exactly at its time, in order, with one timer pending at most', () => {
    const clock = new FakeClock(0);
    const random = seededRandom(7);
    const fired: { item: number; at: number }[] = [];
    const q = new ExpiryQueue<number>(clock, (item) => fired.push({ item, at: clock.wallNow() }));
    const want = new Map<number, number>();
    for (let n = 0; n < 2_000; n++) {
      const item = Math.floor(random() * 500);
      if (random() < 0.3) {
        q.delete(item);
        want.delete(item);
      } else {
        const due = 1 + Math.floor(random() * 100 * WALL_CHECK_MS);
        q.add(item, due);
        want.set(item, due);
      }
      expect(clock.pending()).toBeLessThanOrEqual(1);
    }
    expect(q.size).toBe(want.size);
    clock.advance(101 * WALL_CHECK_MS);
    expect(fired.map((f) => f.item).sort((a, b) => a - b)).toEqual([...want.keys()].sort((a, b) => a - b));
    expect(fired.filter((f) => f.at !== want.get(f.item))).toEqual([]);
    expect(fired.every((f, i) => i === 0 || fired[i - 1].at <= f.at)).toBe(true);
    expect(q.size).toBe(0);
    expect(clock.pending()).toBe(0);
  });
});
