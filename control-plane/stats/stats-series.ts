import type { EdgeStats } from '../../contract/discovery.js';

/** Who sent a StatsReport: the stream's subscriber (its pod and identity) and the workload it reports for. */
export interface Reporter {
  readonly pod: string;
  readonly namespace: string;
  readonly identity: string;
  readonly workload: string;
}

export type EdgeMeta = Omit<EdgeStats, 'success' | 'failure' | 'latencyBuckets' | 'latencySumMs' | 'tcpOpened' | 'tcpClosed'>;

interface Sample {
  readonly t: number;
  readonly success: number;
  readonly failure: number;
  readonly buckets: readonly number[];
  readonly opened: number;
  readonly closed: number;
}

/** What one series contributes to a window: the increases between its two samples and the time between them. */
export interface WindowDelta {
  readonly success: number;
  readonly failure: number;
  readonly buckets: readonly number[];
  readonly spanMs: number;
  readonly tcpOpened: number;
  /** Connections open at the last sample (opened - closed). */
  readonly tcpOpen: number;
}

/**
 * One reporter's cumulative counters for one edge over time, like a Prometheus series:
 * a window's increase is the last sample minus the newest sample at or before the
 * window's start (or the oldest one, for a series younger than the window), over the
 * time between them (so a rate is never diluted by time before the series existed). A
 * counter lower than before means the proxy restarted: the series starts again.
 *
 * Zero baseline: a series' first sample has nothing to diff against, so traffic that
 * happened before it (a burst right after a proxy started, or the first calls on a new
 * edge) would never show as a rate. When the caller knows a time at which every counter
 * of the edge was still 0 (`zeroAt`: the proxy's start, or its previous report that did
 * not have the edge) and that time lies within `keepMs` (the longest window), the series
 * starts with an all-zero sample there, as if the new counter had been read at 0. An older
 * time is not used: the counters then hold more history than any window, and counting
 * it as one window's increase would show a long-lived proxy's whole past as a burst.
 */
export class StatsSeries {
  private samples: Sample[] = [];
  /** The reporter's interval (its last report's), for staleness. */
  intervalMs = 0;

  constructor(readonly reporter: Reporter, readonly edge: EdgeMeta, readonly bounds: readonly number[]) {}

  get lastAt(): number {
    return this.samples.length > 0 ? this.samples[this.samples.length - 1].t : -Infinity;
  }

  /** Adds a report's counters at `t`; `zeroAt`: a time the edge's counters were all 0 (see the class comment), null when unknown. */
  add(t: number, e: EdgeStats, intervalMs: number, keepMs: number, zeroAt: number | null): void {
    const last = this.samples[this.samples.length - 1];
    const sample: Sample = { t, success: e.success, failure: e.failure, buckets: e.latencyBuckets, opened: e.tcpOpened, closed: e.tcpClosed };
    if (last && (sample.success < last.success || sample.failure < last.failure || sample.opened < last.opened || sample.closed < last.closed
      || sample.buckets.some((b, i) => b < (last.buckets[i] ?? 0)))) this.samples = [];
    if (this.samples.length === 0 && zeroAt !== null && zeroAt < t && zeroAt >= t - keepMs)
      this.samples.push({ t: zeroAt, success: 0, failure: 0, buckets: sample.buckets.map(() => 0), opened: 0, closed: 0 });
    this.samples.push(sample);
    this.intervalMs = intervalMs;
    // Keep one sample at or before the oldest window's start, and nothing older.
    while (this.samples.length > 2 && this.samples[1].t <= t - keepMs) this.samples.shift();
  }

  /** The increase over the `windowMs` before `now`; null when the series has gone quiet (no report in the window). */
  window(now: number, windowMs: number, staleMs: number): WindowDelta | null {
    const n = this.samples.length;
    if (n === 0) return null;
    const last = this.samples[n - 1];
    if (last.t < now - Math.max(windowMs, staleMs)) return null;
    let base = this.samples[0];
    for (const s of this.samples) if (s.t <= now - windowMs && s !== last) base = s;
    return {
      success: last.success - base.success,
      failure: last.failure - base.failure,
      buckets: last.buckets.map((b, i) => b - (base.buckets[i] ?? 0)),
      spanMs: last.t - base.t,
      tcpOpened: last.opened - base.opened,
      tcpOpen: Math.max(0, last.opened - last.closed),
    };
  }
}
