import type { TokenRate } from '../../contract/model.js';

/**
 * A token bucket (Envoy's local_ratelimit token_bucket, Linkerd's per-second rate): it
 * starts full with `burst` tokens and refills continuously at `requestsPerSecond`, never
 * above `burst`; each admitted request takes one token. Refill is computed lazily from the
 * injected clock's time when the bucket is asked, so an idle bucket costs nothing.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    readonly rate: TokenRate,
    now: number,
  ) {
    this.tokens = rate.burst;
    this.at = now;
  }

  /** The tokens there are at `now` (refilled since the last look). */
  available(now: number): number {
    if (now > this.at) {
      this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.at) * this.rate.requestsPerSecond) / 1000);
      this.at = now;
    }
    return this.tokens;
  }

  /** Takes one token; call after available(now) >= 1. */
  take(): void {
    this.tokens -= 1;
  }

  /** Milliseconds from `now` until one whole token is there (0 if one is). */
  waitMs(now: number): number {
    const t = this.available(now);
    return t >= 1 ? 0 : ((1 - t) * 1000) / this.rate.requestsPerSecond;
  }
}
