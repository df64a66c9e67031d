import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { loadDiscoveryProto, MAX_STATS_REPORT_BYTES, type StatsReport } from '../../contract/discovery.js';
import type { RecentDecisions } from './recent-decisions.js';
import { edgeTable } from './edge-stats.js';

export interface StatsReporterOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The proxy's metrics text (what /metrics serves: with workers, every thread's sum). */
  readonly metricsText: () => Promise<string>;
  /** The most recent authorization denials and retries (bounded by the proxy; with workers, every thread's). */
  readonly recentDecisions: () => Promise<RecentDecisions>;
  readonly workload: { readonly name: string; readonly namespace: string };
  /** When the proxy started (its clock; its counters count from there): each report carries the time since as uptimeMs. */
  readonly startedAt: number;
  readonly send: (report: StatsReport) => void;
  /** discovery.statsReport.intervalMs (0: never report). */
  readonly intervalMs: number;
  /** discovery.statsReport.maxEdges. */
  readonly maxEdges: number;
  /** Called with the number of edges a report left out (wren_limit_exceeded_total{limit="stats-report-edges"}). */
  readonly onDropped: (n: number) => void;
  /** Called with the number of edges a report left out to fit MAX_STATS_REPORT_BYTES (wren_limit_exceeded_total{limit="stats-report-bytes"}). */
  readonly onTrimmed?: (n: number) => void;
  /** The most bytes a report is encoded to (default MAX_STATS_REPORT_BYTES; tests lower it). */
  readonly maxBytes?: number;
}

/**
 * Sends the proxy's traffic per edge to the control plane every `intervalMs` (StatsReport,
 * contract/discovery.proto), for `wren stat` and the dashboard. The numbers are the
 * proxy's own metrics read back from their text once per interval: nothing is added to
 * the data path. Counters are cumulative (see the proto: a lost report loses nothing).
 */
export class StatsReporter {
  private timer: Timer | null = null;
  private busy = false;
  private closed = false;
  /** The previous report was trimmed (fitReport): the warning is logged once per run of trimmed reports. */
  private trimmedLast = false;

  constructor(private readonly o: StatsReporterOptions) {}

  start(): void {
    if (this.o.intervalMs <= 0 || this.closed) return;
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Builds and sends one report now (the timer calls it; so do tests). */
  async report(): Promise<void> {
    if (this.busy || this.closed) return;
    this.busy = true;
    try {
      const table = edgeTable(await this.o.metricsText(), this.o.maxEdges);
      const why = await this.o.recentDecisions();
      if (this.closed) return;
      if (table.dropped > 0) this.o.onDropped(table.dropped);
      const report: StatsReport = {
        workload: this.o.workload.name, workloadNamespace: this.o.workload.namespace, latencyBoundsMs: table.latencyBoundsMs, edges: table.edges,
        droppedEdges: table.dropped, recentDenials: [...why.denials], intervalMs: this.o.intervalMs,
        uptimeMs: Math.max(1, this.o.clock.now() - this.o.startedAt),
        recentRetries: [...why.retries], droppedRetries: why.droppedRetries,
      };
      const trimmed = fitReport(report, this.o.maxBytes ?? MAX_STATS_REPORT_BYTES);
      if (trimmed > 0) {
        this.o.onTrimmed?.(trimmed);
        if (!this.trimmedLast)
          this.o.logger.warn('stats report trimmed to fit the size a control plane takes; the quietest edges are left out', { edges: table.edges.length + trimmed, sent: report.edges.length, trimmed, maxBytes: this.o.maxBytes ?? MAX_STATS_REPORT_BYTES });
      }
      this.trimmedLast = trimmed > 0;
      this.o.send(report);
    } catch (e) {
      this.o.logger.warn('cannot build the stats report', { error: (e as Error).message });
    } finally {
      this.busy = false;
    }
  }

  private schedule(): void {
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      void this.report().finally(() => {
        if (!this.closed) this.schedule();
      });
    }, this.o.intervalMs);
    this.timer.unref?.();
  }
}

/**
 * Leaves out the last (quietest: edgeTable sorts the busiest first) edges of `report` until the
 * DiscoveryRequest carrying it is encoded to at most `maxBytes`, adding them to droppedEdges;
 * returns how many. A report over the control plane's receive limit ended the whole discovery
 * stream (MAX_STATS_REPORT_BYTES). Each edge's encoded size is its own (a repeated field's
 * entries are independent), so the cut is found from per-edge sizes and checked by one more
 * encoding; this runs once per interval, and encodes edges one by one only when over.
 */
export function fitReport(report: StatsReport, maxBytes: number): number {
  const encode = (r: StatsReport): number => loadDiscoveryProto().encodeRequest({ stats: r }).length;
  if (encode(report) <= maxBytes) return 0;
  const all = report.edges;
  const empty = { ...report, edges: [], droppedEdges: report.droppedEdges + all.length };
  const base = encode(empty);
  // The envelope's length prefixes grow by a few bytes with the content: kept as slack.
  let left = maxBytes - base - 16;
  let keep = 0;
  for (; keep < all.length; keep++) {
    const size = encode({ ...empty, edges: [all[keep]] }) - base;
    if (size > left) break;
    left -= size;
  }
  for (;;) {
    report.edges = all.slice(0, keep);
    report.droppedEdges = empty.droppedEdges - keep;
    if (keep === 0 || encode(report) <= maxBytes) break;
    keep--;
  }
  return all.length - keep;
}
