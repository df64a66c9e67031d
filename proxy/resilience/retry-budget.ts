import { endianness } from 'node:os';
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
 *
 * The ring is RING_CELLS 64-bit cells, each the slot's number (time / slot length, low 32
 * bits) and its token sum (32 bits), updated with compare-exchange: with listener workers
 * (config `concurrency` > 1) every worker's budget for a cluster is one ring in shared
 * memory (shared-counters.ts), so the reserve is the sidecar's and not one per worker. A
 * withdrawal is made and then checked, and taken back if it overdraws: two threads
 * racing for the last retry never both get it.
 *
 * Every request deposits, so a deposit into the current slot skips the 64-bit
 * compare-exchange, whose BigInt arithmetic allocates five or six heap numbers: it reads
 * the cell's slot half and adds to its sum half through an Int32Array over the same memory
 * (the halves are separate 32-bit words, so the sum's wrap never carries into the slot).
 * If another thread starts the cell afresh between the two, the deposit lands in the new
 * slot: a request's tokens live one slot longer, never lost and never doubled.
 */
const SCALE = 1000;
export const RING_CELLS = 10;
/** Index of a 64-bit cell's low (sum) and high (slot) 32-bit words in an Int32Array view. */
const [LO, HI] = endianness() === 'LE' ? [0, 1] : [1, 0];

export interface BudgetRing {
  readonly cells: BigInt64Array;
  /** Index of this cluster's first cell. */
  readonly base: number;
}

export class RetryBudget {
  private readonly depositAmount: number;
  private readonly withdrawAmount: number;
  private readonly reserve: number;
  private readonly slotMs: number;
  private readonly cells: BigInt64Array;
  /** The same memory as `cells`, as 32-bit words (deposit's fast path). */
  private readonly words: Int32Array;
  private readonly base: number;

  constructor(
    readonly opts: { ratio: number; minPerSecond: number; ttlMs: number },
    private readonly clock: Clock,
    private readonly onExhausted?: () => void,
    ring: BudgetRing = { cells: new BigInt64Array(RING_CELLS), base: 0 },
  ) {
    const { ratio, minPerSecond, ttlMs } = opts;
    // ratio 0: deposits buy nothing and only the reserve (minPerSecond) remains.
    this.depositAmount = ratio > 0 ? SCALE : 0;
    this.withdrawAmount = ratio > 0 ? Math.max(1, Math.round(SCALE / ratio)) : 1;
    this.reserve = minPerSecond * (Math.max(ttlMs, 1) / 1000) * this.withdrawAmount;
    this.slotMs = Math.max(ttlMs, 1) / RING_CELLS;
    this.cells = ring.cells;
    this.words = new Int32Array(ring.cells.buffer, ring.cells.byteOffset, ring.cells.length * 2);
    this.base = ring.base;
  }

  /** Record one original (non-retry) request. */
  deposit(): void {
    if (this.depositAmount <= 0) return;
    const slot = this.slotNow();
    const w = 2 * this.index(slot);
    if (Atomics.load(this.words, w + HI) === slot) Atomics.add(this.words, w + LO, this.depositAmount);
    else this.add(this.depositAmount, slot);
  }

  /** Take the budget for one retry; false (and `onExhausted`) if it is spent. */
  tryWithdraw(): boolean {
    const slot = this.slotNow();
    this.add(-this.withdrawAmount, slot);
    if (this.sum(slot) + this.reserve >= 0) return true;
    this.add(this.withdrawAmount, slot);
    this.onExhausted?.();
    return false;
  }

  /** Retries currently affordable. */
  balance(): number {
    return Math.max(0, Math.floor((this.sum(this.slotNow()) + this.reserve) / this.withdrawAmount));
  }

  private slotNow(): number {
    return Math.floor(this.clock.approxNow() / this.slotMs) | 0;
  }

  /** Adds to the current slot's cell, starting it afresh if it still holds a slot a ring ago. */
  private add(amount: number, slot: number): void {
    const i = this.index(slot);
    for (;;) {
      const v = Atomics.load(this.cells, i);
      const held = Number(v >> 32n) | 0;
      // A thread whose clock is a little behind adds to the newer slot rather than wiping it.
      const fresh = ((slot - held) | 0) > 0;
      const next = (BigInt(fresh ? slot : held) << 32n) | BigInt(((fresh ? 0 : Number(BigInt.asIntN(32, v))) + amount) >>> 0);
      if (Atomics.compareExchange(this.cells, i, v, BigInt.asIntN(64, next)) === v) return;
    }
  }

  private index(slot: number): number {
    return this.base + (((slot % RING_CELLS) + RING_CELLS) % RING_CELLS);
  }

  /** Tokens deposited minus withdrawn within the last RING_CELLS slots. */
  private sum(slot: number): number {
    let total = 0;
    for (let c = 0; c < RING_CELLS; c++) {
      const v = Atomics.load(this.cells, this.base + c);
      const age = (slot - (Number(v >> 32n) | 0)) | 0;
      if (age < RING_CELLS && age > -RING_CELLS) total += Number(BigInt.asIntN(32, v));
    }
    return total;
  }
}
