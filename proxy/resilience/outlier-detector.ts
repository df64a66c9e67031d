import type { Clock, Random, Timer } from '../../common/clock.js';
import type { OutlierPolicy } from '../../contract/model.js';
import type { Outcome } from './classify.js';
import {
  BACKOFF, BUCKET, C5XX, CAUSE, CELLS, CHANGING, DECAY_TICK, EJECTED, EJECTED_AT, EJECTION_MS, EXT_SUCCESS, EXT_TOTAL, FROM_EJECTED, GATEWAY, GENERATION, GENERATION_BITS, HEALTHY, leaseSeconds, LOCAL,
  LOCAL_SUCCESS, LOCAL_TOTAL, privateSlot, REASON, renew, STATE_MASK, TIMES, TIMES_EJECTED, UNEJECTED_AT, type OutlierSlot, type SharedOutliers,
} from './shared-outliers.js';

/**
 * Passive health checking with Envoy's outlier-detection semantics
 * (envoy/config/cluster/v3/outlier_detection.proto; source/common/upstream/
 * outlier_detection_impl.cc; docs arch_overview/upstream/outlier):
 *
 * - Consecutive detectors run inline on each outcome: consecutive 5xx, consecutive
 *   gateway failures (502/503/504), and, when `splitExternalLocalOriginErrors` is on,
 *   consecutive local-origin failures (connect/TLS/reset) counted apart from 5xx. With
 *   the split off, local-origin failures count as 503/504 responses (Envoy maps them so).
 * - Every `interval` the detector: unejects hosts whose ejection time has passed; swaps the
 *   success-rate buckets (the last full interval is evaluated); runs success-rate
 *   (mean − stdevFactor × σ over hosts with ≥ requestVolume, needs ≥ minimumHosts) and
 *   failure-percentage ejection; and decrements the ejection backoff of hosts that stayed
 *   healthy for a whole interval since their last uneject.
 * - Ejection time = min(base × backoff, max(max, base)) + jitter in [0, maxJitter]; the
 *   backoff grows by one per ejection while base × backoff < max + base (Envoy), so the
 *   300 s cap is reached and held.
 * - At most maxEjectionPercent of hosts are ejected, but one host always can be.
 * - Each detection is enforced with probability enforcing% (the injected Random).
 * - A host is unejected only on an interval tick (Envoy), or by a passing active health
 *   check (successful_active_health_check_uneject_host, default true).
 *
 * The detector is a state machine per host (healthy ⇄ ejected) that reports typed
 * events to listeners (metrics, logs, the Cluster that rebuilds its picker).
 *
 * Each host's consecutive counters and ejection state (times ejected, backoff, until when)
 * are in a slot (shared-outliers.ts): its own with `concurrency` 1; with listener workers,
 * the sidecar's table, which every worker's detector of the cluster updates with atomics,
 * as Envoy's workers update one host monitor per host and its main thread ejects for all
 * of them. A worker that sees a threshold crossed claims the ejection (compare-exchange),
 * so it happens once; uneject, the backoff and maxEjectionPercent are the sidecar's too.
 * The success-rate buckets are shared the same way (every worker adds to the current one)
 * and each interval is evaluated once, by the first worker to sweep in it (every worker
 * sweeps at the clock's interval boundaries, arm()) (Envoy: its
 * main thread's interval timer swaps the buckets and runs the success-rate and
 * failure-percentage detectors over every worker's counts).
 */
export type EjectionReason =
  | 'consecutive-5xx'
  | 'consecutive-gateway-failure'
  | 'consecutive-local-origin-failure'
  | 'success-rate'
  | 'failure-percentage';

export type OutlierEvent =
  /** A detector fired; `action` says what came of it (Envoy ejections_detected_* vs enforced). */
  | { readonly type: 'detected'; readonly endpoint: string; readonly reason: EjectionReason; readonly action: 'ejected' | 'not-enforced' | 'overflow' }
  /** `remote`: another listener worker ejected it for the sidecar and this one follows (only with workers). */
  | { readonly type: 'ejected'; readonly endpoint: string; readonly reason: EjectionReason; readonly until: number; readonly timesEjected: number; readonly remote?: true }
  | { readonly type: 'unejected'; readonly endpoint: string; readonly cause: UnejectCause; readonly remote?: true };

export type UnejectCause = 'timeout' | 'health-check' | 'disabled';

export interface HostOutlierState {
  readonly ejected: boolean;
  /** Earliest uneject time (ms, clock time); the actual uneject happens on the next tick. */
  readonly ejectedUntil: number | null;
  readonly timesEjected: number;
  /** Envoy's ejection time backoff multiplier. */
  readonly backoff: number;
  readonly lastReason: EjectionReason | null;
}

/** Where an endpoint's outlier state is shared, when listener workers share it (shared-outliers.ts). */
export interface SharedOutlierOptions {
  readonly table: SharedOutliers;
  /** The cluster's name: with the endpoint's key, the slot's name. */
  readonly cluster: string;
  /** This thread ejected or unejected `endpoint` for the sidecar: tell the other workers (they call sync()). */
  readonly announce: (endpoint: string) => void;
}

const REASONS: readonly EjectionReason[] = ['consecutive-5xx', 'consecutive-gateway-failure', 'consecutive-local-origin-failure', 'success-rate', 'failure-percentage'];
const CAUSES: readonly UnejectCause[] = ['timeout', 'health-check', 'disabled'];

/** A host's success-rate bucket cells, per origin. */
const ORIGIN = { ext: { success: EXT_SUCCESS, total: EXT_TOTAL }, local: { success: LOCAL_SUCCESS, total: LOCAL_TOTAL } } as const;

/** No state word (its state bits 3 are none of HEALTHY, EJECTED, CHANGING). */
const NO_WORD = -1n;

/** The state (HEALTHY, EJECTED, CHANGING) of a state word. */
function stateOf(word: bigint): number {
  return Number(word & STATE_MASK);
}

class HostMonitor {
  /** This thread's view of the slot's state, what the picker is built from (changed only with an event). */
  ejected = false;
  /** The slot's cells, state words and times, and where this host's are in them. */
  cells!: Int32Array;
  states!: BigInt64Array;
  times!: Float64Array;
  c = 0;
  s = 0;
  t = 0;
  /** The slot's state word (with its generation) if it was CHANGING at this thread's last sweep, else NO_WORD. */
  changing = NO_WORD;

  constructor(public slot: OutlierSlot) {
    this.at(slot);
  }

  at(slot: OutlierSlot): void {
    this.slot = slot;
    this.cells = slot.memory.cells;
    this.states = slot.memory.states;
    this.times = slot.memory.times;
    this.c = slot.slot * CELLS;
    this.s = slot.slot;
    this.t = slot.slot * TIMES;
    this.changing = NO_WORD;
  }

  /** The state word: state and generation (shared-outliers.ts). */
  word(): bigint {
    return Atomics.load(this.states, this.s);
  }

  shared(): number {
    return stateOf(this.word());
  }

  /**
   * Enters CHANGING from `from` (the next generation): the CHANGING word this thread now
   * holds, or NO_WORD when the state is not `from`, or, with `expected`, when the word is no
   * longer that exact word (another change was made since it was read).
   */
  begin(from: number, expected?: bigint): bigint {
    for (;;) {
      const w = expected ?? Atomics.load(this.states, this.s);
      if (stateOf(w) !== from) return NO_WORD;
      // The generation wraps at 2^61 (asIntN: the word the cell holds, its sign bit included).
      const next = BigInt.asIntN(64, ((w & GENERATION_BITS) + GENERATION) | (from === EJECTED ? FROM_EJECTED : 0n) | BigInt(CHANGING));
      if (Atomics.compareExchange(this.states, this.s, w, next) === w) return next;
      if (expected !== undefined) return NO_WORD;
    }
  }

  /** Ends the change begun as `changing` (begin()), publishing `state`: a thread that reads it reads the times written before. */
  end(changing: bigint, state: number): void {
    Atomics.store(this.states, this.s, (changing & GENERATION_BITS) | BigInt(state));
  }

  /**
   * Closes the current success-rate bucket (the one successRateEjections then reads) and
   * opens the other, zeroed before it is made current so that no count is lost in the zeroing.
   */
  swap(): void {
    const { cells, c } = this;
    const closed = Atomics.load(cells, c + BUCKET);
    const next = 1 - closed;
    for (const k of [EXT_SUCCESS, EXT_TOTAL, LOCAL_SUCCESS, LOCAL_TOTAL]) Atomics.store(cells, c + k + next, 0);
    Atomics.store(cells, c + BUCKET, next);
  }

  resetConsecutive(): void {
    Atomics.store(this.cells, this.c + C5XX, 0);
    Atomics.store(this.cells, this.c + GATEWAY, 0);
    Atomics.store(this.cells, this.c + LOCAL, 0);
  }
}

export class OutlierDetector {
  private readonly hosts = new Map<string, HostMonitor>();
  private readonly listeners = new Set<(e: OutlierEvent) => void>();
  private timer: Timer | null = null;
  /** The cluster's own slot: its DECAY_TICK cell is the number of the last interval evaluated, for the sidecar. */
  private sweeps: OutlierSlot;

  constructor(
    private policy: OutlierPolicy,
    private readonly clock: Clock,
    private readonly random: Random,
    /** Listener workers: each endpoint's counters and ejection in the sidecar's table; without, in this detector. */
    private readonly shared?: SharedOutlierOptions,
  ) {
    this.sweeps = this.slotFor('');
    this.arm();
  }

  onEvent(fn: (e: OutlierEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Track exactly these hosts: new ones start as their shared slot has them (healthy, or
   * ejected by another worker already; anew if no worker tracked them, SharedOutliers.hold),
   * removed ones are forgotten here.
   */
  setHosts(keys: Iterable<string>): void {
    const keep = new Set(keys);
    for (const [k, m] of this.hosts) {
      if (keep.has(k)) continue;
      this.shared?.table.release(m.slot);
      this.hosts.delete(k);
    }
    for (const k of keep) {
      if (this.hosts.has(k)) continue;
      const m = new HostMonitor(this.heldSlotFor(k));
      m.ejected = m.shared() === EJECTED;
      this.hosts.set(k, m);
    }
  }

  updatePolicy(policy: OutlierPolicy): void {
    const was = this.policy;
    this.policy = policy;
    if (!policy.enabled) this.letGo();
    else if (!was.enabled) this.takeUp();
    // The leases renewed now for the new interval: renewed next at its next sweep, up to a new
    // (longer) interval away, they would run out before it, and another endpoint take the slots over.
    else if (policy.intervalMs !== was.intervalMs) this.renewSlots();
    if (policy.intervalMs !== was.intervalMs || policy.enabled !== was.enabled) this.arm();
  }

  /**
   * Detection turned off: every host is let back in (`disabled`), and with listener workers the
   * shared slots are given back; the hosts keep plain ones of their own meanwhile. A detector
   * that kept them held them without sweeping, so their leases ran out and other endpoints
   * took them over, and its state() then showed those endpoints' ejections as its hosts'.
   */
  private letGo(): void {
    for (const [k, m] of this.hosts) {
      if (m.ejected) this.uneject(k, m, 'disabled');
      // Still out: another worker was changing the shared state; this one lets it in all the same.
      if (m.ejected) {
        m.ejected = false;
        this.emit({ type: 'unejected', endpoint: k, cause: 'disabled' });
      }
      if (!this.shared) continue;
      this.shared.table.release(m.slot);
      m.at(privateSlot());
    }
    if (this.shared) this.sweeps = privateSlot();
  }

  /** Detection turned on again: the hosts take their shared slots up (as new hosts, setHosts), as the other workers left them. */
  private takeUp(): void {
    if (!this.shared) return;
    this.sweeps = this.slotFor('');
    for (const [k, m] of this.hosts) {
      m.at(this.heldSlotFor(k));
      this.follow(k, m);
    }
  }

  isEjected(key: string): boolean {
    return this.hosts.get(key)?.ejected ?? false;
  }

  state(key: string): HostOutlierState | null {
    const m = this.hosts.get(key);
    if (!m) return null;
    const reason = Atomics.load(m.cells, m.c + REASON);
    return {
      ejected: m.ejected,
      ejectedUntil: m.ejected ? m.times[m.t + EJECTED_AT] + m.times[m.t + EJECTION_MS] : null,
      timesEjected: Atomics.load(m.cells, m.c + TIMES_EJECTED),
      backoff: Atomics.load(m.cells, m.c + BACKOFF),
      lastReason: reason > 0 ? REASONS[reason - 1] : null,
    };
  }

  /** Feed one attempt's outcome (called by the Cluster for every finished attempt). */
  record(key: string, outcome: Outcome): void {
    const m = this.hosts.get(key);
    if (!m || !this.policy.enabled || outcome.kind === 'cancelled') return;
    const p = this.policy;
    const { cells, c } = m;
    if (outcome.kind === 'failure' && outcome.origin === 'local') {
      if (p.splitExternalLocalOriginErrors) {
        Atomics.add(cells, c + LOCAL_TOTAL + Atomics.load(cells, c + BUCKET), 1);
        if (streak(cells, c + LOCAL, p.consecutiveLocalOriginFailure)) this.consecutive(key, m, 'consecutive-local-origin-failure', 100);
        return;
      }
      // Not split: Envoy maps connect failures/timeouts/resets to 503/504.
      this.putResponse(key, m, false, outcome.gateway);
      return;
    }
    if (p.splitExternalLocalOriginErrors) {
      // The upstream answered, so the connection worked: a local-origin success.
      const b = Atomics.load(cells, c + BUCKET);
      Atomics.add(cells, c + LOCAL_TOTAL + b, 1);
      Atomics.add(cells, c + LOCAL_SUCCESS + b, 1);
      // Written only when there is something to reset: the success path reads, it does not write shared memory.
      if (Atomics.load(cells, c + LOCAL) !== 0) Atomics.store(cells, c + LOCAL, 0);
    }
    this.putResponse(key, m, outcome.kind === 'success', outcome.kind === 'failure' && outcome.gateway);
  }

  /** An active health check passed: uneject now (Envoy successful_active_health_check_uneject_host). */
  healthCheckPassed(key: string): void {
    const m = this.hosts.get(key);
    if (m?.ejected) this.uneject(key, m, 'health-check');
  }

  /**
   * Another worker ejected or unejected `key` for the sidecar (its announce, relayed by
   * the main thread): take the slot's state as this thread's, with the event it makes.
   */
  sync(key: string): void {
    const m = this.hosts.get(key);
    if (m) this.follow(key, m);
  }

  /** The interval sweep; runs from the timer, public so tests and tools can drive it. */
  tick(): void {
    if (!this.policy.enabled) return;
    const now = this.clock.now();
    this.renewSlots();
    for (const [k, m] of this.hosts) {
      // A change takes microseconds; one still there a whole interval later was cut short
      // (its worker terminated in the middle of it): the state it started from is restored.
      // The same change: the same word, generation and all. Workers sweep at the same moments
      // (arm()) and the sweeps' own unejects are changes, so CHANGING at two sweeps in a row
      // was often two live changes, and restoring over the second let another worker claim the
      // slot while its owner still wrote it (two ejections at once; adv54). The exchange is of
      // that word, so it can only undo the change that stopped.
      const w = m.word();
      const changing = stateOf(w) === CHANGING ? w : NO_WORD;
      if (changing !== NO_WORD && changing === m.changing) {
        // The state the change began from (its word says), not this thread's view of it, which
        // is stale in a worker that took the endpoint up during the change (setHosts: healthy).
        const from = (changing & FROM_EJECTED) !== 0n ? EJECTED : HEALTHY;
        Atomics.compareExchange(m.states, m.s, changing, (changing & GENERATION_BITS) | BigInt(from));
        m.changing = NO_WORD;
      } else {
        m.changing = changing;
      }
      // A missed announcement is caught here: the slot's state is the one that counts.
      this.follow(k, m);
      // The ejection whose times are read is the one uneject() ends: its exact word is
      // exchanged, so an ejection another worker ended and a new one it began since the read
      // (the same EJECTED state, a later generation) is left to run its time (ABA; adv54).
      const ejection = m.word();
      if (m.ejected && stateOf(ejection) === EJECTED && now - m.times[m.t + EJECTED_AT] >= m.times[m.t + EJECTION_MS]) {
        this.uneject(k, m, 'timeout', ejection);
      }
    }
    // One evaluation and one backoff decrement per interval for the sidecar, however many
    // workers sweep: the first sweep in a new interval (clock ms / interval) does them.
    const sweep = (Math.floor(now / this.policy.intervalMs) % 0x40000000) + 1;
    if (this.claim(this.sweeps, sweep)) {
      // The bucket every worker wrote during the last interval becomes the one evaluated.
      for (const m of this.hosts.values()) m.swap();
      this.successRateEjections('ext');
      if (this.policy.splitExternalLocalOriginErrors) this.successRateEjections('local');
    } else {
      // Another worker evaluated the interval; an endpoint beyond the shared table has only this worker's counts, which start again.
      for (const m of this.hosts.values()) if (m.slot.key === 0n) m.swap();
    }
    for (const m of this.hosts.values()) {
      const { cells, c } = m;
      const last = Atomics.load(cells, c + DECAY_TICK);
      if (m.ejected || last === sweep || Atomics.load(cells, c + BACKOFF) === 0) continue;
      const unejectedAt = m.times[m.t + UNEJECTED_AT];
      if (Number.isNaN(unejectedAt) || now - unejectedAt < this.policy.intervalMs) continue;
      if (!this.claim(m.slot, sweep)) continue;
      const b = Atomics.load(cells, c + BACKOFF);
      if (b > 0) Atomics.compareExchange(cells, c + BACKOFF, b, b - 1);
    }
  }

  close(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.listeners.clear();
    for (const m of this.hosts.values()) this.shared?.table.release(m.slot);
    this.hosts.clear();
  }

  /**
   * Takes interval `sweep` for `slot` (its DECAY_TICK): true for the first thread to ask,
   * false if it was taken already or the interval after it was. A worker that read the clock
   * just before a boundary and claims just after another worker took the new interval would
   * otherwise take the old one back, evaluating a window of microseconds, and leave the new
   * one to be taken (evaluated) a second time. Any other number is taken: after an
   * `intervalMs` change the numbers count another unit, and are neither earlier nor later.
   */
  private claim(slot: OutlierSlot, sweep: number): boolean {
    const cells = slot.memory.cells;
    const i = slot.slot * CELLS + DECAY_TICK;
    const next = (sweep % 0x40000000) + 1;
    for (;;) {
      const last = Atomics.load(cells, i);
      if (last === sweep || last === next) return false;
      if (Atomics.compareExchange(cells, i, last, sweep) === last) return true;
    }
  }

  /** A shared slot only while detection is on (letGo). */
  private slotFor(key: string): OutlierSlot {
    const s = this.shared;
    return s && this.policy.enabled ? s.table.acquire(s.cluster, key, this.clock.now(), leaseSeconds(this.policy.intervalMs)) : privateSlot();
  }

  /** An endpoint's slot, counted as held by this detector (release gives it back). */
  private heldSlotFor(key: string): OutlierSlot {
    const slot = this.slotFor(key);
    this.shared?.table.hold(slot);
    return slot;
  }

  /** Renews this detector's shared slots; a slot taken over meanwhile is acquired again (its state is then the slot's). */
  private renewSlots(): void {
    if (!this.shared) return;
    const now = this.clock.now();
    const lease = leaseSeconds(this.policy.intervalMs);
    for (const [k, m] of this.hosts) if (!renew(m.slot, now, lease)) m.at(this.heldSlotFor(k));
    if (!renew(this.sweeps, now, lease)) this.sweeps = this.slotFor('');
  }

  /**
   * The next sweep, at the next interval boundary of the clock (a multiple of `intervalMs`),
   * not one interval after this detector was made: every worker's detector of the cluster
   * then sweeps at the same moments, and the first of them evaluates the interval that just
   * ended, so every window evaluated is one interval long, as under Envoy's one interval
   * timer per cluster. Timers armed one interval after each worker made its detector (a
   * restart, a config applied a moment apart) had the first worker to sweep in an interval
   * evaluate from the last evaluation in another worker's phase: a window of a fraction of
   * the interval, under the request volume, its traffic never evaluated. Node's timers may
   * fire a millisecond early; a sweep that reads the clock just short of the boundary
   * evaluates nothing (claim()) and the next one is armed for the moment left.
   */
  private arm(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    const interval = this.policy.intervalMs;
    if (!this.policy.enabled || interval <= 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.tick();
      this.arm();
    }, interval - (this.clock.now() % interval));
    this.timer.unref?.();
  }

  private putResponse(key: string, m: HostMonitor, success: boolean, gateway: boolean): void {
    const p = this.policy;
    const { cells, c } = m;
    const b = Atomics.load(cells, c + BUCKET);
    Atomics.add(cells, c + EXT_TOTAL + b, 1);
    if (success) {
      Atomics.add(cells, c + EXT_SUCCESS + b, 1);
      // Loads, and a store only when a streak is there to end: the common success costs two reads.
      if (Atomics.load(cells, c + C5XX) !== 0) Atomics.store(cells, c + C5XX, 0);
      if (Atomics.load(cells, c + GATEWAY) !== 0) Atomics.store(cells, c + GATEWAY, 0);
      return;
    }
    if (gateway) {
      if (streak(cells, c + GATEWAY, p.consecutiveGatewayFailure)) this.consecutive(key, m, 'consecutive-gateway-failure', p.enforcingConsecutiveGatewayFailure);
    } else if (Atomics.load(cells, c + GATEWAY) !== 0) {
      Atomics.store(cells, c + GATEWAY, 0);
    }
    if (streak(cells, c + C5XX, p.consecutive5xx)) this.consecutive(key, m, 'consecutive-5xx', 100);
  }

  private consecutive(key: string, m: HostMonitor, reason: EjectionReason, enforcing: number): void {
    // Envoy ignores consecutive detections for a host that is already ejected (here: by any worker).
    if (!m.ejected && m.shared() === HEALTHY) this.eject(key, m, reason, enforcing);
  }

  private successRateEjections(origin: 'ext' | 'local'): void {
    const p = this.policy;
    if (this.hosts.size < p.successRateMinimumHosts && this.hosts.size < p.failurePercentageMinimumHosts) return;
    const sr: { key: string; m: HostMonitor; rate: number }[] = [];
    const fp: { key: string; m: HostMonitor; rate: number }[] = [];
    const cell = ORIGIN[origin];
    for (const [key, m] of this.hosts) {
      if (m.ejected) continue;
      // The bucket just closed (swap()): every worker's requests of the last interval.
      const closed = 1 - Atomics.load(m.cells, m.c + BUCKET);
      const total = Atomics.load(m.cells, m.c + cell.total + closed);
      if (total === 0) continue;
      const rate = (Atomics.load(m.cells, m.c + cell.success + closed) * 100) / total;
      if (total >= p.successRateRequestVolume) sr.push({ key, m, rate });
      if (total >= p.failurePercentageRequestVolume) fp.push({ key, m, rate });
    }
    if (sr.length > 0 && sr.length >= p.successRateMinimumHosts) {
      const threshold = successRateThreshold(sr.map((h) => h.rate), p.successRateStdevFactor);
      for (const h of sr) if (h.rate < threshold && !h.m.ejected) this.eject(h.key, h.m, 'success-rate', p.enforcingSuccessRate);
    }
    if (fp.length > 0 && fp.length >= p.failurePercentageMinimumHosts) {
      for (const h of fp) {
        if (100 - h.rate >= p.failurePercentageThreshold && !h.m.ejected) this.eject(h.key, h.m, 'failure-percentage', p.enforcingFailurePercentage);
      }
    }
  }

  /** The cluster's hosts ejected for the sidecar (and any one being ejected or unejected right now). */
  private ejectedCount(): number {
    let n = 0;
    for (const m of this.hosts.values()) if (m.shared() !== HEALTHY) n++;
    return n;
  }

  private eject(key: string, m: HostMonitor, reason: EjectionReason, enforcing: number): void {
    // Already ejected by another worker (the sweep's own counts found it too; its announcement is on its way).
    if (m.shared() !== HEALTHY) {
      this.follow(key, m);
      return;
    }
    const p = this.policy;
    const overflow = (count: number) => (100 * count) / this.hosts.size > p.maxEjectionPercent && count > 1;
    if (overflow(this.ejectedCount() + 1)) {
      this.emit({ type: 'detected', endpoint: key, reason, action: 'overflow' });
      return;
    }
    if (!(this.random() * 100 < enforcing)) {
      this.emit({ type: 'detected', endpoint: key, reason, action: 'not-enforced' });
      return;
    }
    const { cells, c, times, t } = m;
    // The sidecar's ejection, claimed once: another worker that got there first has ejected it.
    const changing = m.begin(HEALTHY);
    if (changing === NO_WORD) {
      this.follow(key, m);
      return;
    }
    // Claimed, then counted (as shared-admission.ts adds, then checks): two workers ejecting
    // two hosts at once each count the other's claim, so maxEjectionPercent is never
    // exceeded; at worst both step back and the next detection ejects.
    if (overflow(this.ejectedCount())) {
      m.end(changing, HEALTHY);
      this.emit({ type: 'detected', endpoint: key, reason, action: 'overflow' });
      return;
    }
    const now = this.clock.now();
    const base = p.baseEjectionTimeMs;
    const max = Math.max(p.maxEjectionTimeMs, base);
    const jitter = Math.floor(this.random() * (p.maxEjectionTimeJitterMs + 1));
    let backoff = Atomics.load(cells, c + BACKOFF);
    if (backoff * base < max + base) backoff++;
    Atomics.store(cells, c + BACKOFF, backoff);
    times[t + EJECTED_AT] = now;
    times[t + EJECTION_MS] = Math.min(base * backoff, max) + jitter;
    const timesEjected = Atomics.add(cells, c + TIMES_EJECTED, 1) + 1;
    Atomics.store(cells, c + REASON, REASONS.indexOf(reason) + 1);
    m.resetConsecutive();
    // Published: a thread that reads EJECTED reads the times written before it.
    m.end(changing, EJECTED);
    m.ejected = true;
    this.emit({ type: 'detected', endpoint: key, reason, action: 'ejected' });
    this.emit({ type: 'ejected', endpoint: key, reason, until: now + times[t + EJECTION_MS], timesEjected });
    this.shared?.announce(key);
  }

  /** `ejection`: the STATE word of the ejection to end (the one whose times were read), else whichever there is. */
  private uneject(key: string, m: HostMonitor, cause: UnejectCause, ejection?: bigint): void {
    const { cells, c } = m;
    const changing = m.begin(EJECTED, ejection);
    if (changing === NO_WORD) {
      // Another worker unejected it (or is doing so, or ejected it anew): its state, once published, is this thread's.
      this.follow(key, m);
      return;
    }
    m.times[m.t + UNEJECTED_AT] = this.clock.now();
    Atomics.store(cells, c + CAUSE, CAUSES.indexOf(cause));
    // Envoy resets the counters so a host near a threshold is not re-ejected at once.
    m.resetConsecutive();
    m.end(changing, HEALTHY);
    m.ejected = false;
    this.emit({ type: 'unejected', endpoint: key, cause });
    this.shared?.announce(key);
  }

  /** Takes the slot's published state (not one being changed: its announcement follows) as this thread's view. */
  private follow(key: string, m: HostMonitor): void {
    const s = m.shared();
    if (s === CHANGING || (s === EJECTED) === m.ejected) return;
    m.ejected = s === EJECTED;
    if (m.ejected) {
      const st = this.state(key)!;
      this.emit({ type: 'ejected', endpoint: key, reason: st.lastReason ?? 'consecutive-5xx', until: st.ejectedUntil!, timesEjected: st.timesEjected, remote: true });
    } else {
      this.emit({ type: 'unejected', endpoint: key, cause: CAUSES[Atomics.load(m.cells, m.c + CAUSE)] ?? 'timeout', remote: true });
    }
  }

  private emit(e: OutlierEvent): void {
    for (const fn of this.listeners) fn(e);
  }
}

/**
 * One more failure in the streak counter `cells[i]`: true for the one thread whose failure
 * completes a streak of `threshold` (0: the detector is off), the counter then starting again.
 * At the threshold or past it: a streak longer than the threshold is one whose threshold
 * updatePolicy() lowered while it ran (the counters are kept over a policy change), and it
 * is complete at its next failure. Envoy tests `++consecutive_5xx_ == threshold`, but its
 * cluster, counters and all, is made anew when its outlier_detection changes; here a streak
 * already past a lowered threshold never equalled it again, and the endpoint, failing every
 * request, was never ejected until a success ended the streak. The thread that swaps the
 * count for 0 and finds it complete detects, so two threads crossing together detect once.
 */
function streak(cells: Int32Array, i: number, threshold: number): boolean {
  if (threshold <= 0 || Atomics.add(cells, i, 1) + 1 < threshold) return false;
  return Atomics.exchange(cells, i, 0) >= threshold;
}

/**
 * Envoy's successRateEjectionThreshold: mean − factor × population standard deviation.
 * Example from Envoy: {50, 100, 100, 100, 100} → mean 90, σ 20, factor 1.9 → 52.
 */
export function successRateThreshold(rates: readonly number[], stdevFactor: number): number {
  const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
  const variance = rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length;
  return mean - stdevFactor * Math.sqrt(variance);
}
