import type { Balancer, Host, PickContext, Picker } from '../balance/balancer.js';

/**
 * Health filtering as a wrapper around any Balancer, so balancers stay oblivious to
 * ejection, breakers and health checks. Each host has one eligibility:
 * - healthy: picked normally;
 * - degraded: ejected by outlier detection or failing active health checks; used only in
 *   panic mode;
 * - blocked: failure-accrual breaker open (or its half-open probe in flight); never picked,
 *   even in panic (Linkerd fails fast rather than send to a broken endpoint), but counted
 *   in the panic computation;
 * - excluded: not ready (EndpointSlice); neither picked nor counted.
 *
 * Panic mode (Envoy arch_overview/upstream/load_balancing/panic_threshold, default 50 %):
 * when fewer than panicThresholdPercent of the counted hosts are healthy, balance over
 * healthy + degraded hosts, on the grounds that a partially failing endpoint set beats
 * overloading the few survivors. 0 disables panic mode.
 */
export type Eligibility = 'healthy' | 'degraded' | 'blocked' | 'excluded';

export interface HealthView {
  eligibility(host: Host): Eligibility;
}

export interface HealthCounts {
  /** Hosts counted (ready ones). */
  readonly total: number;
  readonly healthy: number;
  readonly degraded: number;
  readonly blocked: number;
}

export interface HealthAwarePicker extends Picker {
  readonly panic: boolean;
  readonly counts: HealthCounts;
}

export class EjectingBalancer implements Balancer {
  constructor(
    readonly inner: Balancer,
    private readonly health: HealthView,
    private readonly panicThresholdPercent: number,
  ) {}

  get kind(): Balancer['kind'] {
    return this.inner.kind;
  }

  build(hosts: readonly Host[]): HealthAwarePicker {
    const healthy: Host[] = [];
    const degraded: Host[] = [];
    const counted: Host[] = [];
    let blocked = 0;
    let total = 0;
    for (const h of hosts) {
      const e = this.health.eligibility(h);
      if (e === 'excluded') continue;
      total++;
      counted.push(h);
      if (e === 'healthy') healthy.push(h);
      else if (e === 'degraded') degraded.push(h);
      else blocked++;
    }
    const panic = total > 0 && healthy.length * 100 < this.panicThresholdPercent * total;
    // Keep the caller's host order in panic mode so ring positions and RR order are stable.
    const usable = panic ? new Set([...healthy, ...degraded]) : null;
    const chosen = usable ? hosts.filter((h) => usable.has(h)) : healthy;
    // A ring (ring-hash) is laid out over every counted host and walks past the others, so
    // an ejection moves only the ejected host's keys (RingHashBalancer.buildWithin).
    const picker = this.inner.buildWithin ? this.inner.buildWithin(counted, chosen) : this.inner.build(chosen);
    const counts: HealthCounts = Object.freeze({ total, healthy: healthy.length, degraded: degraded.length, blocked });
    return { size: picker.size, panic, counts, pick: (ctx: PickContext) => picker.pick(ctx) };
  }
}
