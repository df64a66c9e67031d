import type { Clock } from '../../common/clock.js';

/**
 * A retry budget: retries may add at most `ratio` extra load on top of the original
 * requests, plus a floor of `minPerSecond` so low-traffic clients can still retry.
 * Semantics of Finagle's RetryBudget (com.twitter.finagle.service.RetryBudget, a
 * TokenRetryBudget over a leaky TokenBucket) as adopted by Linkerd (ServiceProfile
 * retryBudget: retryRatio 0.2, minRetriesPerSecond 10, ttl 10 s) and tower's TpsBudget:
 * - every original request deposits 1000 tokens (fixed point, finagle's scale factor);
 * - a retry withdraws 1000 / ratio tokens (5000 at 20 %), so 5 requests pay for 1 retry;
 * - deposits and withdrawals expire after `ttl` (a ring of 10 slots of ttl/10 each);
 * - a constant reserve of minPerSecond × ttl(s) × withdrawal is always available.
 */
const SCALE = 1000;
const SLOTS = 10;

export class RetryBudget {
  private readonly depositAmount: number;
  private readonly withdrawAmount: number;
  private readonly reserve: number;
  private readonly slotMs: number;
  private readonly slots = new Float64Array(SLOTS);
  private slot = 0;
  private slotStart: number;
  private sum = 0;

  constructor(
    readonly opts: { ratio: number; minPerSecond: number; ttlMs: number },
    private readonly clock: Clock,
    private readonly onExhausted?: () => void,
  ) {
    const { ratio, minPerSecond, ttlMs } = opts;
    // ratio 0: deposits buy nothing and only the reserve (minPerSecond) remains.
    this.depositAmount = ratio > 0 ? SCALE : 0;
    this.withdrawAmount = ratio > 0 ? SCALE / ratio : 1;
    this.reserve = minPerSecond * (Math.max(ttlMs, 1) / 1000) * this.withdrawAmount;
    this.slotMs = Math.max(ttlMs, 1) / SLOTS;
    this.slotStart = clock.now();
  }

  /** Record one original (non-retry) request. */
  deposit(): void {
    this.add(this.depositAmount);
  }

  /** Take the budget for one retry; false (and `onExhausted`) if it is spent. */
  tryWithdraw(): boolean {
    this.expire();
    if (this.sum + this.reserve >= this.withdrawAmount) {
      this.add(-this.withdrawAmount);
      return true;
    }
    this.onExhausted?.();
    return false;
  }

  /** Retries currently affordable. */
  balance(): number {
    this.expire();
    return Math.max(0, Math.floor((this.sum + this.reserve) / this.withdrawAmount));
  }

  private add(amount: number): void {
    this.expire();
    this.slots[this.slot] += amount;
    this.sum += amount;
  }

  /** Advance the ring, dropping slots older than ttl. */
  private expire(): void {
    const now = this.clock.now();
    let elapsedSlots = Math.floor((now - this.slotStart) / this.slotMs);
    if (elapsedSlots <= 0) return;
    if (elapsedSlots >= SLOTS) {
      this.slots.fill(0);
      this.sum = 0;
      this.slot = 0;
      this.slotStart = now;
      return;
    }
    this.slotStart += elapsedSlots * this.slotMs;
    while (elapsedSlots-- > 0) {
      this.slot = (this.slot + 1) % SLOTS;
      this.sum -= this.slots[this.slot];
      this.slots[this.slot] = 0;
    }
  }
}
