import type { Random } from '../../common/clock.js';

/**
 * Retry backoff with "full jitter" (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"; Envoy router retry backoff): retry N (1-based) waits a uniform random time in
 * [0, min(max, (2^N − 1) × base)). Envoy's numbers: base 25 ms, cap 250 ms = 10 × base,
 * so the first retry waits 0–25 ms, the second 0–75 ms, the third 0–175 ms.
 */
export function fullJitterBackoff(retry: number, baseMs: number, maxMs: number, random: Random): number {
  const n = Math.max(1, Math.floor(retry));
  // 2^n overflows to Infinity for huge n, and min() then picks the cap: fine.
  const ceiling = Math.min(maxMs, (Math.pow(2, n) - 1) * baseMs);
  return Math.floor(random() * ceiling);
}

/**
 * Exponential backoff with proportional jitter, as Linkerd's failure-accrual probation
 * (linkerd/exp-backoff: base = min × 2^n capped at max, plus up to `jitter` × base of
 * random extra; Linkerd uses min 1 s, max 60 s, jitter 0.5). The result is capped at
 * `maxMs` so a probe never waits longer than the configured maximum. `n` counts from 0.
 */
export function exponentialBackoff(n: number, initialMs: number, maxMs: number, jitter: number, random: Random): number {
  const base = Math.min(maxMs, initialMs * Math.pow(2, Math.max(0, n)));
  return Math.min(maxMs, base + base * jitter * random());
}
