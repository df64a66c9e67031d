import { sharedKey } from '../workers/shared-key.js';

/**
 * The memory of outlier detection's per-endpoint state (outlier-detector.ts): one slot
 * per (cluster, endpoint) holding the consecutive-failure counters, the success-rate
 * buckets, the ejection state (ejected or not, since when, for how long, times ejected,
 * backoff, last reason) and a lease; and one per cluster, whose DECAY_TICK cell says which
 * interval was last evaluated (one evaluation per interval for the sidecar). With `concurrency` 1 every endpoint has its own one-slot plain buffers
 * (privateSlot); with listener workers the main thread makes one table of
 * SharedArrayBuffers at start and posts it to every worker (shared-limits.ts), so an
 * endpoint's ejection is the sidecar's, as in Envoy: its outlier detector is one per
 * cluster for the process, workers update each host's monitor (the consecutive counters
 * are atomics; source/common/upstream/outlier_detection_impl.cc putHttpResponseCode), and
 * crossing a threshold is posted to the main thread, which ejects the host for every
 * worker (notifyMainThreadConsecutiveError → onConsecutiveErrorWorker → ejectHost).
 *
 * Here the worker that crosses the threshold claims the ejection itself with a
 * compare-exchange on the slot's state (HEALTHY → CHANGING), writes the ejection's times
 * and publishes it (→ EJECTED); the other workers learn of it by a message relayed by the
 * main thread (OutlierDetector `announce`; rare: one per ejection or uneject, never one per
 * request), and every sweep reads the shared state again in case a message was missed.
 *
 * Slots: open addressing over WINDOW slots from the key's home; a key is never removed,
 * but a slot whose lease ran out (none of its holders swept it for 3 intervals + 60 s:
 * the endpoint left every worker's config, or its workers were terminated) is taken over
 * by the next key that finds no room, so pod churn never fills the table. A detector
 * whose detection is off holds no slot (OutlierDetector.letGo), and a change of interval
 * renews its leases at once, so a slot a detector holds is never taken over from it.
 * A key that finds neither room nor an expired slot keeps its state in its own thread
 * (per worker, as before), counted by the caller.
 */
export interface OutlierMemory {
  /** Per slot: the key of "cluster\nendpoint" (shared-key.ts), 0n while empty. */
  readonly keys: BigInt64Array;
  /** Per slot: CELLS int32 cells (counters, lease). */
  readonly cells: Int32Array;
  /**
   * Per slot: the state word (below), 64 bits so that its generation cannot come round
   * again while a thread holds a word it read: 2^61 changes, 73 years at a change every
   * nanosecond. In an int32 cell it had 29 bits, and came round every 2^29 changes.
   */
  readonly states: BigInt64Array;
  /** Per slot: TIMES float64 cells (clock ms), written only by the thread holding the slot's state at CHANGING. */
  readonly times: Float64Array;
  /**
   * Per slot: the workers whose detector tracks its endpoint now (bit `id`, setHosts; at most
   * 64 workers). The first to take it up while no other does starts it anew (hold): an
   * endpoint that left every worker's config and came back (a new pod at a reused address)
   * starts healthy, as a new host gets a new monitor in Envoy and with `concurrency` 1. A
   * worker's bits outlive it until the worker that takes its place starts (forgetHolds), so
   * an ejection the others still track survives its restart, and nothing it held leaks.
   */
  readonly holders: BigInt64Array;
}

/**
 * A slot's state word (OutlierMemory.states): the state (HEALTHY, EJECTED, or CHANGING while
 * one thread writes an ejection or uneject) in the low two bits (STATE_MASK), while CHANGING
 * the state it began from (FROM_EJECTED), and above them a generation: the number of
 * changes begun (modulo 2^61), added to by the compare-exchange that enters CHANGING. A
 * thread that read the word and acts on what it read compare-exchanges that exact word, so
 * a change made by another thread in between (an uneject and a new ejection: the same state
 * again) fails its exchange instead of being taken for the one it read (ABA), and a CHANGING
 * word seen at two sweeps is the same change, not two that happened to be under way at both
 * (outlier-detector.ts). The generation must not come round while a word is held: it did
 * every 2^29 changes when the word was an int32 cell (until 2026-12-07, adv62), so a
 * thread that read a word and acted after exactly 2^29 changes by others (or a sweep that
 * saw CHANGING 2^29 changes apart) took the new word for the one it had read.
 */
export const STATE_MASK = 3n;
/** Set in a CHANGING word whose change began from EJECTED (an uneject): the state to restore if it was cut short. */
export const FROM_EJECTED = 4n;
/** What one change adds to the state word (the generation, above STATE_MASK and FROM_EJECTED). */
export const GENERATION = 8n;
/** int32 cells of a slot. */
export const C5XX = 0;
export const GATEWAY = 1;
export const LOCAL = 2;
export const TIMES_EJECTED = 3;
export const BACKOFF = 4;
/** Index in EJECTION_REASONS of the last ejection's reason, + 1 (0: never ejected). */
export const REASON = 5;
/** Index in UNEJECT_CAUSES of the last uneject's cause. */
export const CAUSE = 6;
/** The sweep number (clock ms / interval, + 1) of the last backoff decrement: one per interval for the sidecar. */
export const DECAY_TICK = 7;
/**
 * Seconds (clock) when a holder last swept the slot, and the lease in seconds. The clock's
 * seconds (epoch-based in production: common/clock.ts) pass 2^31 in January 2038 and are
 * stored modulo 2^32 (Int32Array), so their age is taken modulo 2^32 too (acquire()):
 * subtracted as they were, every lease would read as run out, and a live slot (an ejection)
 * be taken over by the next endpoint that found no room.
 */
const SEEN = 8;
const LEASE = 9;
/**
 * The success-rate buckets: which of the two is being written (0 or 1), and per origin
 * (external, local) the requests that succeeded and all requests, two cells each (bucket
 * 0, bucket 1). Every worker adds to the current one; the sweep that evaluates the
 * interval makes the other current (zeroed first) and reads the one it closed.
 */
export const BUCKET = 10;
export const EXT_SUCCESS = 11;
export const EXT_TOTAL = 13;
export const LOCAL_SUCCESS = 15;
export const LOCAL_TOTAL = 17;
/**
 * Held (1) by a thread zeroing the slot for a new endpoint (hold(), a takeover in acquire()),
 * so that no other worker takes the slot up, and records into it, until the zeroing is done.
 */
const LOCK = 19;
export const CELLS = 20;
/** Spins waiting for a slot's LOCK (held for a few stores) before going on without it: its holder was terminated in the middle. */
const LOCK_SPINS = 1 << 20;
/** float64 cells of a slot. */
export const EJECTED_AT = 0;
export const EJECTION_MS = 1;
/** NaN: never unejected. */
export const UNEJECTED_AT = 2;
export const TIMES = 3;

export const HEALTHY = 0;
export const EJECTED = 1;
export const CHANGING = 2;
/** The generation part of a state word: all but STATE_MASK and FROM_EJECTED. */
export const GENERATION_BITS = ~(STATE_MASK | FROM_EJECTED);

/** Endpoint slots of the shared table; an endpoint beyond them keeps its outlier state in its own worker. */
const ENDPOINT_SLOTS = 16384;
/** Slots looked at per key. */
const WINDOW = 64;

export function outlierMemory(shared: boolean, slots = ENDPOINT_SLOTS): OutlierMemory {
  const buf = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  const times = new Float64Array(buf(slots * TIMES * 8));
  for (let s = 0; s < slots; s++) times[s * TIMES + UNEJECTED_AT] = NaN;
  return { keys: new BigInt64Array(buf(slots * 8)), cells: new Int32Array(buf(slots * CELLS * 4)), states: new BigInt64Array(buf(slots * 8)), times, holders: new BigInt64Array(buf(slots * 8)) };
}

/** Where one endpoint's outlier state is: slot `slot` of `memory` (a private one-slot memory: slot 0, key 0n). */
export interface OutlierSlot {
  readonly memory: OutlierMemory;
  readonly slot: number;
  /** The slot's key while this thread holds it; 0n for a private slot. */
  readonly key: bigint;
}

/** One endpoint's state kept in its own thread (concurrency 1, or no room in the shared table). */
export function privateSlot(): OutlierSlot {
  return { memory: outlierMemory(false, 1), slot: 0, key: 0n };
}

/** Lease of a slot (s): three sweeps missed, and a minute more (a slow event loop is not a departure). */
export function leaseSeconds(intervalMs: number): number {
  return Math.ceil((3 * intervalMs) / 1000) + 60;
}

/** This thread's view of the shared table. */
export class SharedOutliers {
  private readonly mask: number;
  /** This worker's bit in OutlierMemory.holders. */
  private readonly bit: bigint;

  constructor(
    private readonly memory: OutlierMemory,
    /** No slot for an endpoint: its state stays in its thread (wren_limit_exceeded_total{limit="shared-outlier-slots"}). */
    private readonly onFull: () => void = () => undefined,
    /** The listener worker's id (0..63), its bit in OutlierMemory.holders. */
    worker = 0,
  ) {
    this.mask = memory.keys.length - 1;
    this.bit = BigInt.asIntN(64, 1n << BigInt(worker));
  }

  /**
   * A worker starting in the place of one that exited: the endpoints its predecessor tracked
   * are no longer tracked by it (what this one tracks, it takes up again as its config comes).
   */
  forgetHolds(): void {
    for (let j = 0; j <= this.mask; j++) Atomics.and(this.memory.holders, j, ~this.bit);
  }

  /**
   * This worker's detector takes up `s`'s endpoint (OutlierDetector.setHosts); the first
   * while no other does zeroes its state, left from an endpoint of the same key that every
   * worker dropped.
   */
  hold(s: OutlierSlot): void {
    if (s.key === 0n || s.memory !== this.memory) return;
    // Under the slot's lock: a worker that took it up a moment after this one (and so does
    // not zero it) records into it only once the zeroing is done. Without it, the first
    // holder's zeroing wiped what a second worker recorded right after its own hold (the
    // requests of both workers applying one snapshot: adv49).
    this.lock(s.slot);
    if (Atomics.or(this.memory.holders, s.slot, this.bit) === 0n) this.zero(s.slot, true);
    this.unlock(s.slot);
  }

  /** This worker's detector no longer tracks `s`'s endpoint (dropped from its config, or closed); nothing if the slot is another key's now. */
  release(s: OutlierSlot): void {
    if (s.key === 0n || s.memory !== this.memory || Atomics.load(this.memory.keys, s.slot) !== s.key) return;
    Atomics.and(this.memory.holders, s.slot, ~this.bit);
  }

  /**
   * The slot of `endpoint` in `cluster`: the one already keyed so (its state, as the other
   * workers left it), else an empty one or one whose lease ran out (zeroed: a new
   * endpoint starts healthy), else a private slot.
   */
  acquire(cluster: string, endpoint: string, nowMs: number, leaseS: number): OutlierSlot {
    const key = sharedKey(`${cluster}\n${endpoint}`);
    const { keys, cells } = this.memory;
    const now = Math.floor(nowMs / 1000);
    const start = Number(BigInt.asUintN(32, key)) & this.mask;
    // Twice at most: an empty slot another thread took for another key between the look and the claim.
    for (let attempt = 0; attempt < 2; attempt++) {
      let empty = -1;
      let expired = -1;
      for (let n = 0; n < WINDOW && n <= this.mask; n++) {
        const j = (start + n) & this.mask;
        const k = Atomics.load(keys, j);
        if (k === key) return this.lease(j, key, now, leaseS);
        if (k === 0n) {
          empty = j; // keys are never cleared, so the key is not further on
          break;
        }
        if (expired < 0 && ((now - Atomics.load(cells, j * CELLS + SEEN)) | 0) > Atomics.load(cells, j * CELLS + LEASE)) expired = j;
      }
      if (empty >= 0) {
        const was = Atomics.compareExchange(keys, empty, 0n, key);
        if (was === 0n || was === key) return this.lease(empty, key, now, leaseS);
        continue;
      }
      if (expired >= 0) {
        const old = Atomics.load(keys, expired);
        // Its holders cleared before the key is ours, and zeroed before any worker finding
        // the new key holds it (hold() waits for the lock) and records into it.
        this.lock(expired);
        Atomics.store(this.memory.holders, expired, 0n);
        const won = Atomics.compareExchange(keys, expired, old, key) === old;
        if (won) this.zero(expired);
        this.unlock(expired);
        if (won) return this.lease(expired, key, now, leaseS);
        continue;
      }
      break;
    }
    this.onFull();
    return privateSlot();
  }

  private lease(j: number, key: bigint, now: number, leaseS: number): OutlierSlot {
    Atomics.store(this.memory.cells, j * CELLS + SEEN, now);
    Atomics.store(this.memory.cells, j * CELLS + LEASE, leaseS);
    return { memory: this.memory, slot: j, key };
  }

  private lock(j: number): void {
    const cells = this.memory.cells;
    for (let n = 0; n < LOCK_SPINS && Atomics.compareExchange(cells, j * CELLS + LOCK, 0, 1) !== 0; n++);
  }

  private unlock(j: number): void {
    Atomics.store(this.memory.cells, j * CELLS + LOCK, 0);
  }

  /** A new endpoint's state; `leased`: the lease is kept (a holder renews it). */
  private zero(j: number, leased = false): void {
    const { cells, times } = this.memory;
    for (let c = 0; c < CELLS; c++) if (c !== LOCK && (!leased || (c !== SEEN && c !== LEASE))) Atomics.store(cells, j * CELLS + c, 0);
    // Healthy, at the next generation: a word read before (another endpoint's) never matches again.
    const states = this.memory.states;
    Atomics.store(states, j, BigInt.asIntN(64, (Atomics.load(states, j) & GENERATION_BITS) + GENERATION));
    times[j * TIMES + EJECTED_AT] = 0;
    times[j * TIMES + EJECTION_MS] = 0;
    times[j * TIMES + UNEJECTED_AT] = NaN;
  }
}

/**
 * A sweep of a held slot: the lease renewed, and whether it is still this key's (false:
 * it expired and was taken over; the holder acquires again).
 */
export function renew(s: OutlierSlot, nowMs: number, leaseS: number): boolean {
  if (s.key === 0n) return true;
  const { keys, cells } = s.memory;
  if (Atomics.load(keys, s.slot) !== s.key) return false;
  Atomics.store(cells, s.slot * CELLS + SEEN, Math.floor(nowMs / 1000));
  Atomics.store(cells, s.slot * CELLS + LEASE, leaseS);
  return true;
}
