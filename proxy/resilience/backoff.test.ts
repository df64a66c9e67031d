import { seededRandom } from '../../common/clock.js';
import { exponentialBackoff, fullJitterBackoff } from './backoff.js';

describe('fullJitterBackoff (Envoy / AWS full jitter)', () => {
  it('draws uniformly below min(cap, (2^n - 1) × base)', () => {
    const random = seededRandom(1);
    for (const [retry, ceiling] of [
      [1, 25],
      [2, 75],
      [3, 175],
      [4, 250],
      [20, 250],
    ]) {
      let max = 0;
      let sum = 0;
      for (let i = 0; i < 2000; i++) {
        const d = fullJitterBackoff(retry, 25, 250, random);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
        max = Math.max(max, d);
        sum += d;
      }
      expect(max).toBeGreaterThan(ceiling * 0.9); // uses the whole range
      expect(Math.abs(sum / 2000 - ceiling / 2)).toBeLessThan(ceiling * 0.1); // mean ≈ half
    }
  });

  it('is exact at the edges of the random range', () => {
    expect(fullJitterBackoff(2, 25, 250, () => 0)).toBe(0);
    expect(fullJitterBackoff(2, 25, 250, () => 0.999999)).toBe(74);
    expect(fullJitterBackoff(1000, 25, 250, () => 0.5)).toBe(125);
  });
});

describe('exponentialBackoff (Linkerd failure-accrual probation)', () => {
  it('doubles from 1 s to the 60 s cap, jitter adds up to half', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => exponentialBackoff(n, 1000, 60_000, 0.5, () => 0))).toEqual([
      1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000,
    ]);
    expect(exponentialBackoff(0, 1000, 60_000, 0.5, () => 0.999)).toBeCloseTo(1499.5, 1);
    expect(exponentialBackoff(5, 1000, 60_000, 0.5, () => 0.999)).toBeCloseTo(32_000 + 15_984, 6);
    expect(exponentialBackoff(6, 1000, 60_000, 0.5, () => 0.999)).toBe(60_000); // jitter never exceeds the cap
  });
});
