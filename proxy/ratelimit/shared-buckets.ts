import type { Clock } from '../../common/clock.js';

/**
 * The memory of a bucket table: plain ArrayBuffers with `concurrency` 1, SharedArrayBuffers
 * made by the main thread and posted to every listener worker otherwise, so that a
 * RateLimitPolicy holds for the sidecar and not per worker (Envoy: "the token bucket is
 * shared across all workers, thus the rate limits are applied per Envoy process",
 * local_rate_limit filter). Typed arrays keep their buffer when posted.
 */
export interface BucketMemory {
  /** Per slot: its 64-bit key (shared-key.ts), 0n while empty. */
  readonly keys: BigInt64Array;
  /** Per slot, two cells: theoretical arrival time (ns since origin), latest time seen (ns). */
  readonly cells: BigInt64Array;
  /** Per slot: its last use (a 32-bit sequence number, compared modulo 2^32). */
  readonly used: Int32Array;
  /** origin (ms of the clock when made), per-identity buckets held. */
  readonly meta: BigInt64Array;
  /** The use sequence. */
  readonly seq: Int32Array;
}

/** Table slots looked at per key: a key lives within this many slots of its home, or not at all. */
const WINDOW = 32;
/** Room for the fixed buckets (total, route, override) beside the per-identity bound. */
const FIXED_RESERVE = 64;
/** Slots a bound-reached eviction looks at for the least recently used per-identity bucket. */
const EVICT_SCAN = 1024;
const EMPTY = 0n;
/** A slot whose bucket was evicted: a probe goes on past it (sharedKey never returns 1n). */
const TOMBSTONE = 1n;
/** How far a bucket's latest-seen time lags at most behind the latest `now` it was given. */
const SEEN_STEP_NS = 1e6;
const TAT = 0;
const SEEN = 1;
const CELLS = 2;
const ORIGIN = 0;
const IDENTITIES = 1;

export function bucketMemory(identityBound: number, clock: Clock, shared: boolean): BucketMemory {
  // Half full at most, so a probe ends at an empty slot soon (linear probing).
  const capacity = 2 ** Math.ceil(Math.log2(2 * (identityBound + FIXED_RESERVE)));
  const buf = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  const meta = new BigInt64Array(buf(2 * 8));
  meta[ORIGIN] = BigInt(Math.floor(clock.now()));
  return {
    keys: new BigInt64Array(buf(capacity * 8)), cells: new BigInt64Array(buf(capacity * CELLS * 8)), used: new Int32Array(buf(capacity * 4)),
    meta, seq: new Int32Array(buf(4)),
  };
}

/** A bucket's rate in the table's units: ns per token (emission interval) and burst × that (tolerance). */
export interface BucketRate {
  readonly intervalNs: number;
  readonly toleranceNs: number;
}

export function bucketRate(rate: { readonly requestsPerSecond: number; readonly burst: number }): BucketRate {
  const intervalNs = Math.max(1, Math.round(1e9 / rate.requestsPerSecond));
  return { intervalNs, toleranceNs: intervalNs * rate.burst };
}

/**
 * Token buckets in one table of slots, each updated with a compare-exchange loop so that
 * threads taking from one bucket at once never take more than it holds.
 *
 * A bucket is one 64-bit cell, its theoretical arrival time (TAT: the generic cell rate
 * algorithm, ITU-T I.371, the token bucket's exact dual): it holds
 * burst − max(0, TAT − now) / interval tokens, so a full bucket is any TAT ≤ now and
 * taking a token is TAT := max(TAT, now) + interval, allowed while TAT − now stays within
 * burst × interval. Tokens and refill time in one word: one compare-exchange per take.
 * Times are ns since the table's origin on the injected clock; every thread's clock is
 * performance.timeOrigin + performance.now(), so they agree. The latest time a bucket has
 * seen is kept beside it (to the millisecond) and a caller's earlier `now` is raised to it:
 * a clock behind (another thread's, or a step back) neither adds nor removes tokens.
 *
 * Keys: open addressing with linear probing over WINDOW slots; an empty slot ends a
 * probe, a tombstone (an evicted bucket's slot) does not. Per-identity buckets (key flag
 * bit 1) are bounded by `identityBound` for the whole table (every policy, every worker):
 * at the bound, a new caller evicts the least recently used per-identity bucket of a
 * sample of EVICT_SCAN slots (onEvict), and an evicted caller comes back to a full bucket,
 * erring on letting traffic through, as the per-worker LRU did. A window with no free
 * slot (rare: the table is at most half full) has one taken over in place, a per-identity
 * bucket first, then the least recently used fixed one (a dead policy's); a fixed bucket's
 * owner finds it gone by its key and starts a full one.
 */
export class SharedBuckets {
  private readonly keys: BigInt64Array;
  private readonly cells: BigInt64Array;
  private readonly meta: BigInt64Array;
  private readonly used: Int32Array;
  private readonly seq: Int32Array;
  private readonly mask: number;
  private readonly origin: number;
  /** Where this thread's next eviction sample starts. */
  private cursor = 0;

  constructor(
    memory: BucketMemory,
    private readonly clock: Clock,
    private readonly identityBound: number,
    private readonly onEvict: () => void,
  ) {
    this.keys = memory.keys;
    this.cells = memory.cells;
    this.meta = memory.meta;
    this.used = memory.used;
    this.seq = memory.seq;
    this.mask = this.keys.length - 1;
    this.origin = Number(memory.meta[ORIGIN]);
  }

  /** The injected clock's time in the table's unit (ns since its origin). */
  nowNs(): number {
    return Math.round((this.clock.now() - this.origin) * 1e6);
  }

  /** Whether `slot` still holds `key` (a fixed bucket's owner checks before each use). */
  holds(slot: number, key: bigint): boolean {
    return Atomics.load(this.keys, slot) === key;
  }

  /** The slot of `key`, claimed (full) if it has none. */
  slot(key: bigint, identity: boolean): number {
    for (let attempt = 0; ; attempt++) {
      const start = Number(BigInt.asUintN(32, key)) & this.mask;
      let free = -1;
      let oldest = -1;
      let oldestAge = -1;
      let oldestIdentity = -1;
      let oldestIdentityAge = -1;
      const now = Atomics.load(this.seq, 0);
      for (let n = 0; n < WINDOW && n <= this.mask; n++) {
        const j = (start + n) & this.mask;
        const k = Atomics.load(this.keys, j);
        if (k === key) {
          if (identity) this.touch(j);
          return j;
        }
        if (k === EMPTY || k === TOMBSTONE) {
          if (free < 0) free = j;
          if (k === EMPTY) break;
          continue;
        }
        const age = (now - Atomics.load(this.used, j)) >>> 0;
        if ((k & 1n) === 1n) {
          if (age > oldestIdentityAge) [oldestIdentity, oldestIdentityAge] = [j, age];
        } else if (age > oldestAge) [oldest, oldestAge] = [j, age];
      }
      // At the bound a new caller first makes room: the least recently used per-identity bucket goes.
      if (identity && attempt === 0 && Atomics.load(this.meta, IDENTITIES) >= BigInt(this.identityBound) && this.evictOldestIdentity()) continue;
      // No free slot in the window (it is crowded): take one over in place, a per-identity bucket first.
      const target = free >= 0 ? free : oldestIdentity >= 0 ? oldestIdentity : oldest;
      const old = Atomics.load(this.keys, target);
      // Lost a race for the slot (another thread claimed it): look again, the key may be there
      // now. (Losing every time, under a storm of new callers, the slot is used as it is.)
      if (Atomics.compareExchange(this.keys, target, old, key) !== old) {
        if (attempt < 8) continue;
        return target;
      }
      Atomics.store(this.cells, target * CELLS + TAT, 0n);
      const wasIdentity = old !== EMPTY && old !== TOMBSTONE && (old & 1n) === 1n;
      if (wasIdentity && identity) this.onEvict();
      const delta = (identity ? 1 : 0) - (wasIdentity ? 1 : 0);
      if (delta !== 0) Atomics.add(this.meta, IDENTITIES, BigInt(delta));
      this.touch(target);
      return target;
    }
  }

  /** Lets `key`'s bucket go (a policy that was dropped or changed): its slot becomes free for another. */
  free(key: bigint): void {
    const start = Number(BigInt.asUintN(32, key)) & this.mask;
    for (let n = 0; n < WINDOW && n <= this.mask; n++) {
      const j = (start + n) & this.mask;
      const k = Atomics.load(this.keys, j);
      if (k === EMPTY) return;
      if (k !== key) continue;
      if (Atomics.compareExchange(this.keys, j, key, TOMBSTONE) === key && (key & 1n) === 1n) Atomics.sub(this.meta, IDENTITIES, 1n);
      return;
    }
  }

  /**
   * Removes the least recently used per-identity bucket among the next EVICT_SCAN slots
   * from a cursor that moves on each time (approximate LRU over a sample, exact in a
   * table of at most EVICT_SCAN slots), leaving a tombstone so that keys further along
   * its probe stay reachable. False if the sample held none.
   */
  private evictOldestIdentity(): boolean {
    const scan = Math.min(EVICT_SCAN, this.mask + 1);
    let victim = -1;
    let victimAge = -1;
    let victimKey = 0n;
    const now = Atomics.load(this.seq, 0);
    for (let n = 0; n < scan; n++) {
      const j = (this.cursor + n) & this.mask;
      const k = Atomics.load(this.keys, j);
      if (k === EMPTY || k === TOMBSTONE || (k & 1n) === 0n) continue;
      const age = (now - Atomics.load(this.used, j)) >>> 0;
      if (age > victimAge) [victim, victimAge, victimKey] = [j, age, k];
    }
    this.cursor = (this.cursor + scan) & this.mask;
    if (victim < 0 || Atomics.compareExchange(this.keys, victim, victimKey, TOMBSTONE) !== victimKey) return false;
    Atomics.sub(this.meta, IDENTITIES, 1n);
    this.onEvict();
    return true;
  }

  /** Tokens in the bucket at `nowNs` (fractional). */
  available(slot: number, rate: BucketRate, nowNs: number): number {
    const now = Math.max(nowNs, Number(Atomics.load(this.cells, slot * CELLS + SEEN)));
    const deficit = Number(Atomics.load(this.cells, slot * CELLS + TAT)) - now;
    return Math.max(0, (rate.toleranceNs - Math.max(0, deficit)) / rate.intervalNs);
  }

  /** Takes one token if there is one (compare-exchange loop: never more than the bucket holds, whoever takes at once). */
  tryTake(slot: number, rate: BucketRate, nowNs: number): boolean {
    const now = this.seen(slot, nowNs);
    const i = slot * CELLS + TAT;
    for (;;) {
      const tat = Atomics.load(this.cells, i);
      const next = Math.max(Number(tat), now) + rate.intervalNs;
      if (next - now > rate.toleranceNs) return false;
      if (Atomics.compareExchange(this.cells, i, tat, BigInt(next)) === tat) return true;
    }
  }

  /** Gives back a token taken for a request that another bucket then refused. */
  refund(slot: number, rate: BucketRate): void {
    Atomics.sub(this.cells, slot * CELLS + TAT, BigInt(rate.intervalNs));
  }

  /** Milliseconds from `nowNs` until the bucket has a whole token (0 if it has one). */
  waitMs(slot: number, rate: BucketRate, nowNs: number): number {
    const now = Math.max(nowNs, Number(Atomics.load(this.cells, slot * CELLS + SEEN)));
    const tat = Number(Atomics.load(this.cells, slot * CELLS + TAT));
    return Math.max(0, tat + rate.intervalNs - rate.toleranceNs - now) / 1e6;
  }

  /**
   * `nowNs`, raised to the latest time the bucket has seen, which it advances in steps of
   * at least SEEN_STEP_NS (one write per millisecond per bucket, not one per request): a
   * clock behind by less than that can cost the bucket that much refill, no more.
   */
  private seen(slot: number, nowNs: number): number {
    const i = slot * CELLS + SEEN;
    for (;;) {
      const s = Atomics.load(this.cells, i);
      const seen = Number(s);
      if (nowNs <= seen) return seen;
      if (nowNs - seen < SEEN_STEP_NS || Atomics.compareExchange(this.cells, i, s, BigInt(nowNs)) === s) return nowNs;
    }
  }

  private touch(slot: number): void {
    Atomics.store(this.used, slot, Atomics.add(this.seq, 0, 1) + 1);
  }
}
