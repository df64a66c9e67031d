import { createRequire } from 'node:module';
import type { Counter, Histogram } from './prom.js';

/**
 * The four Istio request metrics of one full label set (istio_requests_total and the
 * duration and byte histograms), recorded without prom-client's per-call work.
 *
 * prom-client's `inc(labels)` / `observe(labels, v)` build a hash string of every label
 * (`name:value,` for the 19 Istio labels, some 600 characters) and check each label name
 * against the metric's list, on every call: four times per request per sidecar. The
 * profiles of issue 12 (docs/benchmarks.md, "lean2") put that at 5-6 % of a sidecar's
 * busy samples at HTTP/1.1 saturation, the largest item of JS outside node. A label set
 * is built once and kept (workload-labels.ts), so its series are too: the first record
 * goes through prom-client's public API (which validates the labels and creates the
 * series), then the series keeps prom-client's value cells for those labels and adds to
 * them, as prom-client's own inc/observe do (lib/counter.js setValue, lib/histogram.js
 * observe); prom-client reads the same cells when it is scraped. A cell belongs to the
 * metric's current value map: if that map is replaced (`reset()`) or the series is used
 * with another registry's metrics, the record goes through the public API again and the
 * cells are taken anew. If a prom-client release stores its values differently, no cell
 * is found and every record takes the public API (request-series.test.ts fails then, so
 * an upgrade cannot lose the fast path unnoticed).
 */
export interface RequestMetricSet<L extends string = string> {
  readonly requests: Counter<L>;
  readonly duration: Histogram<L>;
  readonly requestBytes: Histogram<L>;
  readonly responseBytes: Histogram<L>;
}

/** prom-client 15's stored values and the fields its own inc/observe use (lib/counter.js, lib/histogram.js, lib/metric.js). */
interface CounterCell {
  value: number;
}
interface HistogramCell {
  sum: number;
  count: number;
  bucketValues: Record<string, number>;
}
interface Internals<C> {
  readonly hashMap?: Record<string, C>;
  readonly collect?: unknown;
  readonly sortedLabelNames?: readonly string[];
  readonly upperBounds?: readonly number[];
}

const require = createRequire(import.meta.url);
const { hashObject } = require('prom-client/lib/util') as { hashObject: (labels: object, names?: readonly string[]) => string };

/** The slots with bucket counts not yet added to prom-client's cells (flushBuckets). */
const unflushed: HistogramSlot[] = [];

/**
 * Adds the bucket counts recorded since the last call to prom-client's cells. It is the
 * `collect` of the histograms a series records into (proxy-metrics.ts), which prom-client
 * runs before it reads them (a scrape, the dashboard's stats); a histogram without it
 * gets each count at once.
 */
export function flushBuckets(): void {
  for (let i = 0; i < unflushed.length; i++) unflushed[i].flush();
  unflushed.length = 0;
}

/** One histogram's cell for a label set, with the metric's bounds and their property names. */
class HistogramSlot {
  /**
   * Counts per bucket since the last flushBuckets. prom-client keys a cell's buckets by the
   * bound as a string ("0.5", "5", "3600000"): the integer ones are array indices, so sparse
   * that V8 keeps them as dictionary elements, and every `+= 1` into them was a call into
   * the runtime (Runtime_KeyedStoreIC_Slow: 0.7-0.9 % of a sidecar's CPU at HTTP/1.1
   * saturation, 1.1-1.4 % at 1000 requests/s, docs/benchmarks.md "Issue 12, 2026-12-05
   * ninth session"). Counted here and added at read time, it is one store per scrape.
   */
  private readonly pending: Float64Array;
  private queued = false;

  constructor(
    readonly map: object,
    readonly cell: HistogramCell,
    readonly bounds: readonly number[],
    readonly keys: readonly string[],
    /** The histogram runs flushBuckets before it is read: counts may wait for it. */
    private readonly deferred: boolean,
  ) {
    this.pending = new Float64Array(bounds.length);
  }

  /** prom-client's observe: the first bound the value is under or at; above the last one, only sum and count (+Inf). */
  observe(v: number): void {
    const c = this.cell;
    c.sum += v;
    c.count += 1;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (v <= bounds[i]) {
        if (!this.deferred) c.bucketValues[this.keys[i]] += 1;
        else {
          this.pending[i] += 1;
          if (!this.queued) {
            this.queued = true;
            unflushed.push(this);
          }
        }
        return;
      }
    }
  }

  flush(): void {
    const b = this.cell.bucketValues;
    const pending = this.pending;
    for (let i = 0; i < pending.length; i++) {
      if (pending[i] !== 0) {
        b[this.keys[i]] += pending[i];
        pending[i] = 0;
      }
    }
    this.queued = false;
  }
}

function counterCell(m: Counter, labels: object): { map: object; cell: CounterCell } | undefined {
  const i = m as unknown as Internals<CounterCell>;
  const cell = i.hashMap?.[hashObject(labels, i.sortedLabelNames)];
  return cell !== undefined && typeof cell.value === 'number' ? { map: i.hashMap!, cell } : undefined;
}

function histogramSlot(m: Histogram, labels: object): HistogramSlot | undefined {
  const i = m as unknown as Internals<HistogramCell>;
  const cell = i.hashMap?.[hashObject(labels, i.sortedLabelNames)];
  const bounds = i.upperBounds;
  if (cell === undefined || bounds === undefined || typeof cell.sum !== 'number' || typeof cell.count !== 'number' || cell.bucketValues === undefined) return undefined;
  const keys = bounds.map(String);
  if (!keys.every((k) => typeof cell.bucketValues[k] === 'number')) return undefined;
  return new HistogramSlot(i.hashMap!, cell, bounds, keys, i.collect === flushBuckets);
}

export class RequestSeries {
  private requests: { map: object; cell: CounterCell } | undefined;
  private duration: HistogramSlot | undefined;
  private requestBytes: HistogramSlot | undefined;
  private responseBytes: HistogramSlot | undefined;

  constructor(readonly labels: Readonly<Record<string, string>>) {}

  /** Whether the next record into `m` adds to kept cells (no prom-client call): for tests. */
  fast(m: RequestMetricSet): boolean {
    return this.cellsOf(m);
  }

  /** One request: counted, its duration (ms) and its body sizes (bytes) observed. */
  record(m: RequestMetricSet, ms: number, requestBytes: number, responseBytes: number): void {
    // A value prom-client would refuse (NaN, Infinity) takes its path, which throws as before.
    if (this.cellsOf(m) && Number.isFinite(ms) && Number.isFinite(requestBytes) && Number.isFinite(responseBytes)) {
      this.requests!.cell.value += 1;
      this.duration!.observe(ms);
      this.requestBytes!.observe(requestBytes);
      this.responseBytes!.observe(responseBytes);
      return;
    }
    const l = this.labels;
    m.requests.inc(l);
    m.duration.observe(l, ms);
    m.requestBytes.observe(l, requestBytes);
    m.responseBytes.observe(l, responseBytes);
    this.requests = counterCell(m.requests, l);
    this.duration = histogramSlot(m.duration, l);
    this.requestBytes = histogramSlot(m.requestBytes, l);
    this.responseBytes = histogramSlot(m.responseBytes, l);
  }

  /** The kept cells are those of `m`'s current value maps. */
  private cellsOf(m: RequestMetricSet): boolean {
    return (
      this.requests !== undefined &&
      this.duration !== undefined &&
      this.requestBytes !== undefined &&
      this.responseBytes !== undefined &&
      this.requests.map === (m.requests as unknown as Internals<CounterCell>).hashMap &&
      this.duration.map === (m.duration as unknown as Internals<HistogramCell>).hashMap &&
      this.requestBytes.map === (m.requestBytes as unknown as Internals<HistogramCell>).hashMap &&
      this.responseBytes.map === (m.responseBytes as unknown as Internals<HistogramCell>).hashMap
    );
  }
}
