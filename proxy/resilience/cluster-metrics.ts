import { Counter, Gauge, type Registry } from '../metrics/prom.js';
import type { LimitName } from './concurrency-limits.js';
import type { ClusterState } from './cluster-state.js';
import type { EjectionReason } from './outlier-detector.js';
import type { ProbeResult, ProbeTransport } from './health-checker.js';

/**
 * The metrics a Cluster reports. Counters are pushed as events happen; gauges are read
 * from each tracked cluster's snapshot() at scrape time, so the hot path never touches
 * per-endpoint gauges and removed endpoints simply disappear. Labels are bounded to
 * cluster, endpoint and small closed sets (reason, limit).
 */
export interface ClusterMetrics {
  /** Start exporting gauges for a cluster; returns the function that stops it. */
  track(cluster: string, snapshot: () => ClusterState): () => void;
  outlierDetected(cluster: string, reason: EjectionReason, action: 'ejected' | 'not-enforced' | 'overflow'): void;
  retry(cluster: string): void;
  retryBudgetExhausted(cluster: string): void;
  overflow(cluster: string, limit: LimitName): void;
  /** One active health check finished (counted apart from user requests, like Envoy's health_check.* stats). */
  healthCheck(cluster: string, kind: string, transport: ProbeTransport, result: ProbeResult): void;
}

const BREAKER_VALUE = { closed: 0, open: 1, 'half-open': 2 } as const;

/** Per registry, so two instances on one registry share the gauges and their sources. */
const SOURCES = new WeakMap<Registry, Map<string, () => ClusterState>>();

/** prom-client implementation, `wren_` names, registered once per Registry. */
export class PromClusterMetrics implements ClusterMetrics {
  private readonly sources: Map<string, () => ClusterState>;
  private readonly detected: Counter<'cluster' | 'reason'>;
  private readonly enforced: Counter<'cluster' | 'reason'>;
  private readonly ejectOverflow: Counter<'cluster'>;
  private readonly retries: Counter<'cluster'>;
  private readonly budgetExhausted: Counter<'cluster'>;
  private readonly overflows: Counter<'cluster' | 'limit'>;
  private readonly healthChecks: Counter<'cluster' | 'kind' | 'transport' | 'result'>;

  constructor(registry: Registry) {
    let shared = SOURCES.get(registry);
    if (!shared) SOURCES.set(registry, (shared = new Map()));
    this.sources = shared;
    const counter = <L extends string>(name: string, help: string, labelNames: L[]): Counter<L> =>
      (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
    this.detected = counter('wren_outlier_ejections_detected_total', 'Outlier detections (enforced or not), by detector', ['cluster', 'reason']);
    this.enforced = counter('wren_outlier_ejections_enforced_total', 'Endpoints ejected by outlier detection, by detector', ['cluster', 'reason']);
    this.ejectOverflow = counter('wren_outlier_ejections_overflow_total', 'Ejections skipped because max ejection percent was reached', ['cluster']);
    this.retries = counter('wren_retries_total', 'Retries admitted', ['cluster']);
    this.budgetExhausted = counter('wren_retry_budget_exhausted_total', 'Retries refused because the retry budget was spent', ['cluster']);
    this.overflows = counter('wren_overflow_total', 'Requests refused by a concurrency limit (circuit breaker overflow)', ['cluster', 'limit']);
    this.healthChecks = counter('wren_health_check_total', 'Active health checks sent, by kind, transport (mtls through the peer sidecar, or plaintext) and result', [
      'cluster', 'kind', 'transport', 'result',
    ]);

    const sources = this.sources;
    // With listener workers (config concurrency > 1) each worker holds its own cluster state
    // and /metrics merges their registries (worker-pool.ts): these gauges are one worker's
    // view each, so they merge by max (the worst view: the most ejected endpoints, panic in
    // any worker, the slowest EWMA, a breaker not closed in some worker), never by prom-client's
    // default sum, which would read two open breakers (1 + 1) as half-open (2).
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>, s: ClusterState) => void) => {
      if (registry.getSingleMetric(name)) return;
      new Gauge<L>({
        name, help, labelNames, registers: [registry], aggregator: 'max',
        collect() {
          this.reset();
          for (const snap of sources.values()) fill(this, snap());
        },
      });
    };
    gauge('wren_outlier_ejected_endpoints', 'Endpoints currently ejected', ['cluster'], (g, s) =>
      g.set({ cluster: s.name }, s.endpoints.filter((e) => e.ejectedUntil !== null).length));
    gauge('wren_cluster_panic', '1 while the cluster balances in panic mode', ['cluster'], (g, s) => g.set({ cluster: s.name }, s.panic ? 1 : 0));
    // Envoy's cluster.<name>.ring_hash_lb.* gauges, for ring-hash clusters only (one series each per cluster).
    gauge('wren_ring_hash_lb_size', 'Entries on the hash ring (balancer ring-hash)', ['cluster'], (g, s) => {
      if (s.ring) g.set({ cluster: s.name }, s.ring.size);
    });
    gauge('wren_ring_hash_lb_min_hashes_per_host', 'Fewest ring entries one endpoint has (balancer ring-hash)', ['cluster'], (g, s) => {
      if (s.ring) g.set({ cluster: s.name }, s.ring.minHashesPerHost);
    });
    gauge('wren_ring_hash_lb_max_hashes_per_host', 'Most ring entries one endpoint has (balancer ring-hash)', ['cluster'], (g, s) => {
      if (s.ring) g.set({ cluster: s.name }, s.ring.maxHashesPerHost);
    });
    gauge('wren_endpoint_breaker_state', 'Failure-accrual breaker: 0 closed, 1 open, 2 half-open', ['cluster', 'endpoint'], (g, s) => {
      for (const e of s.endpoints) if (e.breaker) g.set({ cluster: s.name, endpoint: e.key }, BREAKER_VALUE[e.breaker.state]);
    });
    gauge('wren_endpoint_ewma_ms', 'Peak-EWMA RTT estimate per endpoint (ms)', ['cluster', 'endpoint'], (g, s) => {
      for (const e of s.endpoints) g.set({ cluster: s.name, endpoint: e.key }, e.ewmaMs);
    });
  }

  track(cluster: string, snapshot: () => ClusterState): () => void {
    this.sources.set(cluster, snapshot);
    return () => {
      if (this.sources.get(cluster) === snapshot) this.sources.delete(cluster);
    };
  }

  outlierDetected(cluster: string, reason: EjectionReason, action: 'ejected' | 'not-enforced' | 'overflow'): void {
    this.detected.inc({ cluster, reason });
    if (action === 'ejected') this.enforced.inc({ cluster, reason });
    else if (action === 'overflow') this.ejectOverflow.inc({ cluster });
  }

  retry(cluster: string): void {
    this.retries.inc({ cluster });
  }

  retryBudgetExhausted(cluster: string): void {
    this.budgetExhausted.inc({ cluster });
  }

  overflow(cluster: string, limit: LimitName): void {
    this.overflows.inc({ cluster, limit });
  }

  healthCheck(cluster: string, kind: string, transport: ProbeTransport, result: ProbeResult): void {
    this.healthChecks.inc({ cluster, kind, transport, result });
  }
}
