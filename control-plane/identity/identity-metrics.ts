import { X509Certificate } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { splitPemCerts } from '../../certs/index.js';
import { issuerSnapshot, type Issuer } from './issuer.js';

/** Why a Certify call was refused (the `reason` label). */
export type RefusalReason =
  | 'unauthenticated'
  | 'identity_mismatch'
  | 'invalid_request'
  | 'invalid_csr'
  | 'unsupported_key'
  | 'csr_too_large'
  | 'no_authenticator'
  | 'authenticator_unavailable'
  | 'authenticator_timeout'
  | 'authenticator_overloaded'
  | 'authenticator_source_overloaded'
  | 'cancelled'
  | 'rate_limited'
  | 'ca_error';

/**
 * Identity-service metrics, registered on the control plane's registry (served on its
 * admin /metrics). Issuer and anchor expiry are exported so an alert can fire weeks
 * before an expiry outage (the most common mesh PKI failure; mesh-anchors.md item 10).
 */
export class IdentityMetrics {
  readonly issued: Counter<string>;
  readonly refused: Counter<'reason'>;
  readonly signDuration: Histogram<string>;

  constructor(registry: Registry, issuer: Issuer) {
    const registers = [registry];
    this.issued = new Counter({ name: 'wren_identity_certificates_issued_total', help: 'Workload certificates issued by Certify', registers });
    this.refused = new Counter({
      name: 'wren_identity_certificates_refused_total',
      help: 'Certify calls refused, by reason',
      labelNames: ['reason'] as const,
      registers,
    });
    this.signDuration = new Histogram({
      name: 'wren_identity_sign_duration_seconds',
      help: 'Time to validate a CSR and sign the certificate (excludes token review)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    });
    const issuerExpiry = new Gauge({
      name: 'wren_identity_issuer_expiry_timestamp_seconds',
      help: 'notAfter of the CA certificate that signs workload certificates',
      registers,
    });
    const anchorExpiry = new Gauge({
      name: 'wren_identity_trust_anchor_expiry_timestamp_seconds',
      help: 'notAfter of each trust anchor in the bundle handed to proxies',
      labelNames: ['fingerprint'] as const,
      registers,
    });
    const update = (): void => {
      const i = issuerSnapshot(issuer);
      issuerExpiry.set(i.ca.notAfter.getTime() / 1000);
      // A removed anchor's series goes away with it (trust-anchor rotation, step 4).
      anchorExpiry.reset();
      for (const pem of splitPemCerts(i.trustBundlePem)) {
        const c = new X509Certificate(pem);
        anchorExpiry.set({ fingerprint: c.fingerprint256 }, new Date(c.validTo).getTime() / 1000);
      }
    };
    update();
    issuer.onChange?.(update);
  }
}
