import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { StatsReport } from '../../contract/discovery.js';
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
      this.o.send({
        workload: this.o.workload.name, workloadNamespace: this.o.workload.namespace, latencyBoundsMs: table.latencyBoundsMs, edges: table.edges,
        droppedEdges: table.dropped, recentDenials: [...why.denials], intervalMs: this.o.intervalMs,
        uptimeMs: Math.max(1, this.o.clock.now() - this.o.startedAt),
        recentRetries: [...why.retries], droppedRetries: why.droppedRetries,
      });
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
