import forge from 'node-forge';
import { createCsr, readCsr } from './csr.js';
import { generateKeyPair } from './keys.js';

describe('CSRs', () => {
  const key = generateKeyPair();

  test('key generation goes through native crypto (fast) and yields RSA 2048', () => {
    const t0 = performance.now();
    const k = generateKeyPair();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(k.privateKeyPem).toContain('-----BEGIN RSA PRIVATE KEY-----');
    expect(forge.pki.publicKeyFromPem(k.publicKeyPem).n.bitLength()).toBe(2048);
  });

  test('carries exactly one URI SAN and the signer public key, signature valid', () => {
    const pem = createCsr(key.privateKeyPem, { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'web' });
    expect(pem).toContain('-----BEGIN CERTIFICATE REQUEST-----');
    const csr = readCsr(pem);
    expect(csr.sans).toEqual({ uris: ['spiffe://cluster.local/ns/default/sa/web'], dnsNames: [], ips: [], emails: [], other: 0 });
    expect(csr.signatureValid).toBe(true);
    expect(csr.publicKeyBits).toBe(2048);
    expect(forge.pki.publicKeyToPem(forge.pki.publicKeyFromPem(csr.publicKeyPem))).toBe(key.publicKeyPem);
    // Subject is empty: the identity lives only in the SAN.
    expect(forge.pki.certificationRequestFromPem(pem).subject.attributes).toEqual([]);
  });

  test('rejects an invalid identity before signing anything', () => {
    expect(() => createCsr(key.privateKeyPem, 'spiffe://cluster.local/ns/a')).toThrow('expected a workload ID');
  });

  test('garbage is CSR_MALFORMED', () => {
    expect(() => readCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n')).toThrow(
      expect.objectContaining({ code: 'CSR_MALFORMED' }),
    );
  });
});
