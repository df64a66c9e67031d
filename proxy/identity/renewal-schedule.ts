import type { Random } from '../../common/clock.js';

/**
 * When to renew the workload certificate, and how to back off when renewal fails.
 *
 * Renewal: Linkerd's proxy refreshes at 70% of the time left on the certificate
 * (linkerd2-proxy identity-client certify.rs `refresh_in`), bounded to [min, max];
 * Istio renews at 50% ± 1% of the lifetime. We take Linkerd's 70% and add ±5% jitter so a
 * fleet of proxies certified in the same second (a rollout, a node reboot) does not
 * come back to the control plane in the same second every time.
 *
 * Failure: capped exponential backoff with "equal jitter" (half fixed, half random),
 * and, while the current certificate is still valid, never longer than half the time
 * it has left, so the proxy keeps trying several times before it expires.
 */
export interface RenewalPolicy {
  /** Fraction of the remaining validity after which to renew (0.7). */
  readonly fraction: number;
  /** ± jitter on that fraction (0.05 → renew between 65% and 75%). */
  readonly jitter: number;
  /** Never renew sooner than this after a success (guards against tiny lifetimes). */
  readonly minRefreshMs: number;
  /** Never wait longer than this (Linkerd's max refresh: 24 h). */
  readonly maxRefreshMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
}

export const DEFAULT_RENEWAL_POLICY: RenewalPolicy = Object.freeze({
  fraction: 0.7,
  jitter: 0.05,
  minRefreshMs: 250,
  maxRefreshMs: 24 * 3_600_000,
  retryInitialMs: 1000,
  retryMaxMs: 60_000,
});

/** Shortest retry delay, even when the certificate is about to expire. */
export const MIN_RETRY_MS = 100;

/** Delay from `nowMs` until the next renewal of a certificate valid until `validUntilMs`. */
export function refreshDelay(nowMs: number, validUntilMs: number, random: Random, p: RenewalPolicy = DEFAULT_RENEWAL_POLICY): number {
  const remaining = Math.max(0, validUntilMs - nowMs);
  const f = p.fraction + (2 * random() - 1) * p.jitter;
  return Math.min(p.maxRefreshMs, Math.max(p.minRefreshMs, remaining * f));
}

/**
 * Delay before retry number `attempt` (0 = the first retry after a failure), given how
 * long the current certificate stays valid (≤ 0: already expired, or none yet).
 */
export function retryDelay(attempt: number, remainingMs: number, random: Random, p: RenewalPolicy = DEFAULT_RENEWAL_POLICY): number {
  const capped = Math.min(p.retryMaxMs, p.retryInitialMs * 2 ** Math.min(attempt, 30));
  let d = capped / 2 + (capped / 2) * random();
  if (remainingMs > 0) d = Math.min(d, remainingMs / 2);
  return Math.max(MIN_RETRY_MS, d);
}
