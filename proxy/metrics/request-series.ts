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
  readonly sortedLabelNames?: readonly string[];
  readonly upperBounds?: readonly number[];
}

const require = createRequire(import.meta.url);
const { hashObject } = require('prom-client/lib/util') as { hashObject: (labels: object, names?: readonly string[]) => string };

/** One histogram's cell for a label set, with the metric's bounds and their property names. */
class HistogramSlot {
  constructor(
    readonly map: object,
    readonly cell: HistogramCell,
    readonly bounds: readonly number[],
    readonly keys: readonly string[],
  ) {}

  /** prom-client's observe: the first bound the value is under or at; above the last one, only sum and count (+Inf). */
  observe(v: number): void {
    const c = this.cell;
    c.sum += v;
    c.count += 1;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (v <= bounds[i]) {
        c.bucketValues[this.keys[i]] += 1;
        return;
      }
    }
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
  return new HistogramSlot(i.hashMap!, cell, bounds, keys);
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
