import type { ControlPlaneIdentityOptions } from '../../control-plane/server.js';
import type { TestPki } from './pki.js';

/**
 * The test PKI's CA as a control plane's identity issuer, with an authenticator that refuses
 * every Certify: the suites that use it (the ops CLI's checks) need the control plane to know
 * the trust anchors and to see the sidecars' certificates, not to issue any.
 */
export function issuerWithoutCertify(pki: TestPki): ControlPlaneIdentityOptions {
  return {
    issuer: { ca: pki.ca, trustBundlePem: pki.bundlePem, source: 'test' },
    authenticator: { name: 'none', authenticate: () => Promise.reject(new Error('no Certify in this test')) },
  };
}
