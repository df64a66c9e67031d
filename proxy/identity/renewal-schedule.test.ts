import { seededRandom } from '../../common/clock.js';
import { DEFAULT_RENEWAL_POLICY as P, MIN_RETRY_MS, refreshDelay, retryDelay } from './renewal-schedule.js';

const HOUR = 3_600_000;

describe('refreshDelay', () => {
  test('renews between 65% and 75% of the remaining lifetime, spread by the jitter', () => {
    const r = seededRandom(42);
    const delays = Array.from({ length: 2000 }, () => refreshDelay(0, 24 * HOUR, r));
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(0.65 * 24 * HOUR);
      expect(d).toBeLessThanOrEqual(0.75 * 24 * HOUR);
    }
    // The jitter actually spreads a fleet: both ends of the window are used.
    expect(Math.min(...delays)).toBeLessThan(0.66 * 24 * HOUR);
    expect(Math.max(...delays)).toBeGreaterThan(0.74 * 24 * HOUR);
    expect(refreshDelay(0, 24 * HOUR, () => 0.5)).toBeCloseTo(0.7 * 24 * HOUR, 0);
  });

  test('measures from now, not from issuance, and respects min and max', () => {
    expect(refreshDelay(10_000, 20_000, () => 0.5)).toBeCloseTo(7000, 6);
    expect(refreshDelay(0, 100, () => 0.5)).toBe(P.minRefreshMs);
    expect(refreshDelay(0, 0, () => 0.5)).toBe(P.minRefreshMs);
    expect(refreshDelay(0, 90 * 24 * HOUR, () => 0.5)).toBe(P.maxRefreshMs);
  });
});

describe('retryDelay', () => {
  test('capped exponential backoff with jitter in [cap/2, cap]', () => {
    const r = seededRandom(7);
    for (let attempt = 0; attempt < 12; attempt++) {
      const cap = Math.min(P.retryMaxMs, P.retryInitialMs * 2 ** attempt);
      for (let i = 0; i < 200; i++) {
        const d = retryDelay(attempt, 0, r);
        expect(d).toBeGreaterThanOrEqual(cap / 2);
        expect(d).toBeLessThanOrEqual(cap);
      }
    }
    expect(retryDelay(1000, 0, () => 1)).toBe(P.retryMaxMs);
  });

  test('while the certificate is valid, never waits more than half of what is left (and never less than the floor)', () => {
    expect(retryDelay(10, 8000, () => 1)).toBe(4000);
    expect(retryDelay(10, 100, () => 1)).toBe(MIN_RETRY_MS);
    expect(retryDelay(0, 60_000, () => 1)).toBe(P.retryInitialMs);
    // Expired: back to the plain capped backoff.
    expect(retryDelay(10, -5000, () => 1)).toBe(P.retryMaxMs);
  });
});
