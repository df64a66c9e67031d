import { Counter, Gauge, type Registry } from 'prom-client';

/** Metrics of the stats aggregation (stats-store.ts), on the control plane's registry. */
export class StatsMetrics {
  readonly reports: Counter;
  readonly dropped: Counter<'limit'>;
  readonly series: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.reports = new Counter({ name: 'wren_cp_stats_reports_total', help: 'StatsReports received from proxies (traffic per edge, for wren stat and the dashboard)', registers });
    this.dropped = new Counter({
      name: 'wren_cp_stats_dropped_total',
      help: 'Stats dropped by the control plane: series (a new reporter x edge past the series cap), series-per-proxy (past one proxy\'s share), invalid-edges (malformed, or past the per-report cap), reporters (a report from a new pod past the 10,000 kept), reporter-detail (recent denials and retries past the 32 KiB kept per pod)',
      labelNames: ['limit'] as const, registers,
    });
    this.series = new Gauge({ name: 'wren_cp_stats_series', help: 'Series (reporter x edge) the control plane aggregates', registers });
  }
}
