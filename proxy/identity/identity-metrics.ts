import { Counter, Gauge, type Registry } from '../metrics/prom.js';

/**
 * Certificate-expiry metrics on the proxy's registry (its admin /metrics), so an alert
 * can fire while renewal keeps failing and before the certificate runs out.
 */
export class ProxyIdentityMetrics {
  readonly expiry: Gauge<string>;
  readonly nextRenewal: Gauge<string>;
  readonly renewals: Counter<'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.expiry = new Gauge({ name: 'wren_identity_cert_expiry_timestamp_seconds', help: 'notAfter of the workload certificate in use', registers });
    this.nextRenewal = new Gauge({ name: 'wren_identity_cert_next_renewal_timestamp_seconds', help: 'When the next renewal (or retry) is scheduled', registers });
    this.renewals = new Counter({
      name: 'wren_identity_cert_renewals_total',
      help: 'Certify attempts (the first certificate and every renewal), by result (success, failure)',
      labelNames: ['result'] as const,
      registers,
    });
  }
}
