import { TokenBucket } from './token-bucket.js';

/** The bucket on a fake timeline (plain numbers of ms): full at start, refill at the rate, capped at burst. */
describe('TokenBucket', () => {
  test('starts full with burst tokens, each take removes one, and it refills at requestsPerSecond', () => {
    const b = new TokenBucket({ requestsPerSecond: 10, burst: 3 }, 1000);
    for (let i = 0; i < 3; i++) {
      expect(b.available(1000)).toBeGreaterThanOrEqual(1);
      b.take();
    }
    expect(b.available(1000)).toBe(0);
    // 10/s: one token per 100 ms.
    expect(b.waitMs(1000)).toBe(100);
    expect(b.available(1050)).toBeCloseTo(0.5);
    expect(b.waitMs(1050)).toBeCloseTo(50);
    expect(b.available(1100)).toBeCloseTo(1);
    expect(b.waitMs(1100)).toBe(0);
  });

  test('never holds more than burst, however long it idles', () => {
    const b = new TokenBucket({ requestsPerSecond: 100, burst: 5 }, 0);
    b.take();
    expect(b.available(3_600_000)).toBe(5);
  });

  test('a fractional rate: 0.5/s gives one token per two seconds', () => {
    const b = new TokenBucket({ requestsPerSecond: 0.5, burst: 1 }, 0);
    b.take();
    expect(b.waitMs(0)).toBe(2000);
    expect(b.available(1999)).toBeLessThan(1);
    expect(b.available(2000)).toBeCloseTo(1);
  });

  test('time going backwards (a clock step) neither adds nor removes tokens', () => {
    const b = new TokenBucket({ requestsPerSecond: 10, burst: 2 }, 5000);
    b.take();
    expect(b.available(4000)).toBe(1);
  });
});
