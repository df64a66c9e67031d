import { Counter, Gauge, type Registry } from 'prom-client';

/** Metrics of health-based withdrawal (endpoint-withdrawal.ts), on the control plane's registry. */
export class WithdrawalMetrics {
  readonly withdrawals: Counter<'service' | 'reason'>;
  readonly restorations: Counter<'service' | 'reason'>;
  readonly held: Counter<'service' | 'reason'>;
  readonly withdrawn: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.withdrawals = new Counter({
      name: 'wren_cp_endpoint_withdrawals_total',
      help: 'Endpoints withdrawn from every proxy because enough distinct proxies reported them unhealthy, by service and the kind of report (outlier-ejection, health-check-failed, breaker-open)',
      labelNames: ['service', 'reason'] as const, registers,
    });
    this.restorations = new Counter({
      name: 'wren_cp_endpoint_restorations_total',
      help: 'Withdrawn endpoints given back to proxies, by service and reason (cleared: reports cleared; ttl: the withdrawal expired; gone: the source removed the endpoint or marked it unready; panic-threshold: too large a share withdrawn; disabled)',
      labelNames: ['service', 'reason'] as const, registers,
    });
    this.held = new Counter({
      name: 'wren_cp_endpoint_withdrawals_held_total',
      help: 'Endpoints that enough proxies report unhealthy but that stay in because withdrawing them would pass the panic threshold (counted once per episode)',
      labelNames: ['service', 'reason'] as const, registers,
    });
    this.withdrawn = new Gauge({ name: 'wren_cp_withdrawn_endpoints', help: 'Endpoints currently withdrawn on the strength of health reports', registers });
  }
}
