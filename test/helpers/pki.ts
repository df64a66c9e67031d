import { CertificateAuthority, createRootCa, issueWorkload } from '../../certs/index.js';
import type { TlsMaterial } from '../../proxy/tls/tls-identity.js';

export interface TestPki {
  readonly ca: CertificateAuthority;
  readonly bundlePem: string;
  readonly trustDomain: string;
  issue(namespace: string, serviceAccount: string, opts?: { ttlMs?: number; now?: Date }): TlsMaterial & { spiffeId: string };
}

/** A root CA for one test file, issuing workload certificates through the real CSR flow. */
export function testPki(trustDomain = 'cluster.local'): TestPki {
  // Valid from two hours ago, so tests can issue certificates that have already expired.
  const root = createRootCa({ trustDomain, now: new Date(Date.now() - 2 * 3_600_000) });
  const ca = new CertificateAuthority({ certPem: root.certPem, keyPem: root.keyPem, trustDomain });
  return {
    ca,
    bundlePem: root.certPem,
    trustDomain,
    issue(namespace, serviceAccount, opts = {}) {
      const w = issueWorkload(ca, `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`, opts.ttlMs, opts.now);
      return { keyPem: w.keyPem, certChainPem: [w.certPem, ...w.chainPems].join('\n'), trustBundlePem: root.certPem, spiffeId: w.spiffeId };
    },
  };
}
