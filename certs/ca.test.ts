import { execFileSync } from 'node:child_process';
import { constants, generateKeyPairSync, privateEncrypt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { CertificateAuthority, CLOCK_SKEW_MS, createIntermediateCa, createRootCa, type CaMaterial } from './ca.js';
import { createCsr } from './csr.js';
import { generateKeyPair } from './keys.js';
import { asForgeKey, nodeRsaSigner } from './signer.js';
import { certInfo, spiffeIdOfLeaf, verifyChain } from './verify.js';
import { readCert } from './x509.js';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/default/sa/web';
const DAY = 86_400_000;

/** A CSR with arbitrary SANs, signed properly: what a compromised or buggy workload could send. */
function csrWith(keyPem: string, altNames: { type: number; value?: string; ip?: string }[]): string {
  const key = forge.pki.privateKeyFromPem(keyPem);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: 'web' }]);
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames }] }]);
  csr.sign(asForgeKey(nodeRsaSigner(keyPem)), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

const pemToDer = (pem: string): Buffer => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
const derToPem = (der: Buffer, label: string): string =>
  `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;

function issueError(ca: CertificateAuthority, csr: string, identity: string): { code?: string; message: string } {
  try {
    ca.issue(csr, { identity });
  } catch (e) {
    return { code: (e as { code?: string }).code, message: (e as Error).message };
  }
  throw new Error('issue() accepted the CSR');
}

describe('CertificateAuthority', () => {
  const weekAgo = new Date(Date.now() - 7 * DAY);
  let root: CaMaterial;
  let inter: CaMaterial;
  let rootCa: CertificateAuthority;
  let interCa: CertificateAuthority;
  let key: { privateKeyPem: string; publicKeyPem: string };
  let dir: string;

  beforeAll(() => {
    root = createRootCa({ trustDomain: TD, now: weekAgo });
    inter = createIntermediateCa(root, { trustDomain: TD, now: weekAgo });
    rootCa = new CertificateAuthority({ ...root, trustDomain: TD });
    interCa = new CertificateAuthority({ ...inter, trustDomain: TD });
    key = generateKeyPair();
    dir = mkdtempSync(join(tmpdir(), 'wren-ca-'));
    writeFileSync(join(dir, 'root.crt'), root.certPem);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const file = (name: string, content: string): string => {
    writeFileSync(join(dir, name), content);
    return join(dir, name);
  };

  test('root CA profile', () => {
    const text = openssl('x509', '-in', join(dir, 'root.crt'), '-noout', '-text');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE\n/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(text).toContain('Subject Key Identifier');
    expect(text).toContain('URI:spiffe://cluster.local\n');
    const info = certInfo(root.certPem);
    expect(info.subject).toBe('O=Wren, CN=Wren root CA cluster.local');
    expect(info.issuer).toBe(info.subject);
    expect(info.isCa).toBe(true);
    // 10 years by default, backdated by the skew allowance
    expect(info.notAfter.getTime() - info.notBefore.getTime()).toBeGreaterThan(3650 * DAY);
    expect(info.notBefore.getTime()).toBeLessThanOrEqual(weekAgo.getTime() - CLOCK_SKEW_MS + 1000);
  });

  test('intermediate: pathlen 0, signed by the root, never outlives it', () => {
    const text = openssl('x509', '-in', file('inter.crt', inter.certPem), '-noout', '-text');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0\n/);
    expect(text).toContain('Authority Key Identifier');
    expect(openssl('verify', '-CAfile', join(dir, 'root.crt'), join(dir, 'inter.crt'))).toContain(': OK');
    const shortRoot = createRootCa({ trustDomain: TD, validityMs: DAY });
    const longInter = createIntermediateCa(shortRoot, { trustDomain: TD, validityMs: 365 * DAY });
    expect(certInfo(longInter.certPem).notAfter.getTime()).toBeLessThanOrEqual(certInfo(shortRoot.certPem).notAfter.getTime());
  });

  test('leaf from the root: openssl verifies it and shows exactly the leaf profile', () => {
    const now = new Date();
    const leaf = rootCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, now });
    expect(leaf.chainPems).toEqual([]);
    expect(leaf.spiffeId).toBe(WEB);
    expect(openssl('verify', '-CAfile', join(dir, 'root.crt'), file('leaf.crt', leaf.certPem))).toContain('leaf.crt: OK');
    // openssl's own purpose checks: usable as both TLS server and TLS client certificate
    expect(openssl('verify', '-purpose', 'sslserver', '-CAfile', join(dir, 'root.crt'), join(dir, 'leaf.crt'))).toContain(': OK');
    expect(openssl('verify', '-purpose', 'sslclient', '-CAfile', join(dir, 'root.crt'), join(dir, 'leaf.crt'))).toContain(': OK');

    const text = openssl('x509', '-in', join(dir, 'leaf.crt'), '-noout', '-text');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE\n/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment\n/);
    expect(text).toMatch(/Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/);
    expect(text).toContain('Authority Key Identifier');
    expect(text).toMatch(/Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/web\n/);
    expect(text.match(/URI:/g)).toHaveLength(1);
    expect(text).not.toMatch(/DNS:|IP Address:|email:/);
    expect(text).toMatch(/Subject:\s*\n/); // empty subject
    expect(text).toContain('Public-Key: (2048 bit)');

    const info = certInfo(leaf.certPem);
    expect(info.serial).toBe(leaf.serial);
    expect(info.spiffeId).toBe(WEB);
    // notBefore = now - 1 min (to the second), default TTL 24 h
    expect(Math.abs(info.notBefore.getTime() - (now.getTime() - CLOCK_SKEW_MS))).toBeLessThan(1000);
    expect(Math.abs(info.notAfter.getTime() - (now.getTime() + DAY))).toBeLessThan(1000);
    expect(info.notAfter).toEqual(leaf.notAfter);
  });

  test('the Certify limit\'s state: a non-critical Netscape Comment, read back, shown by openssl, verified as any leaf; printable ASCII only', () => {
    const state = `wren certify-limit v1 2.000 1800000000000 pod default/${'w'.repeat(253)}`;
    const leaf = rootCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, certifyState: state });
    expect(readCert(leaf.certPem).ext).toMatchObject({ certifyState: state, unknownCritical: [] });
    expect(spiffeIdOfLeaf(leaf.certPem)).toBe(WEB);
    expect(openssl('verify', '-purpose', 'sslclient', '-CAfile', join(dir, 'root.crt'), file('state.crt', leaf.certPem))).toContain(': OK');
    expect(openssl('x509', '-in', join(dir, 'state.crt'), '-noout', '-text')).toMatch(/Netscape Comment:\s*\n\s+wren certify-limit v1 2\.000 /);
    // Text an IA5String cannot hold is left out, not written mangled.
    expect(readCert(rootCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, certifyState: 'pod default/wé' }).certPem).ext.certifyState).toBeUndefined();
    expect(rootCa.keyedDigest('tok')).toBe(rootCa.keyedDigest('tok'));
    expect(rootCa.keyedDigest('tok')).not.toBe(interCa.keyedDigest('tok'));
  });

  test('a CSR asking for the Certify limit\'s extension (a forged, full budget) gets only the state the control plane gives, or none', () => {
    const forged = 'wren certify-limit v1 5.000 9999999999999 pod default/web 00000000000000000000000000000000';
    const k = forge.pki.privateKeyFromPem(key.privateKeyPem);
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.setRsaPublicKey(k.n, k.e);
    csr.setAttributes([{ name: 'extensionRequest', extensions: [
      { name: 'subjectAltName', altNames: [{ type: 6, value: WEB }] },
      { id: '2.16.840.1.113730.1.13', critical: false, value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.IA5STRING, false, forged) },
    ] }]);
    csr.sign(asForgeKey(nodeRsaSigner(key.privateKeyPem)), forge.md.sha256.create());
    const pem = forge.pki.certificationRequestToPem(csr);
    // The request does carry it (what a workload could send)...
    expect(pemToDer(pem).includes(forged)).toBe(true);
    // ...and the CA writes its own profile only.
    expect(readCert(rootCa.issue(pem, { identity: WEB }).certPem).ext.certifyState).toBeUndefined();
    const given = 'wren certify-limit v1 0.000 1800000000000 pod default/web 0123456789abcdef0123456789abcdef';
    expect(readCert(rootCa.issue(pem, { identity: WEB, certifyState: given }).certPem).ext.certifyState).toBe(given);
  });

  test('serials are random, positive and 128-bit sized', () => {
    const serials = [1, 2, 3].map(() => rootCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB }).serial);
    expect(new Set(serials).size).toBe(3);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9a-f]{32}$/);
      expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
      expect(parseInt(s.slice(0, 2), 16)).toBeGreaterThan(0);
    }
  });

  test('leaf from an intermediate: openssl verifies with -untrusted and so does verifyChain', () => {
    const leaf = interCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, ttlMs: 3_600_000 });
    expect(leaf.chainPems).toHaveLength(1);
    expect(certInfo(leaf.chainPems[0]).subject).toContain('Wren intermediate CA');
    const chain = file('chain.crt', leaf.chainPems.join(''));
    const l = file('leaf2.crt', leaf.certPem);
    expect(openssl('verify', '-CAfile', join(dir, 'root.crt'), '-untrusted', chain, l)).toContain('leaf2.crt: OK');
    expect(() => openssl('verify', '-CAfile', join(dir, 'root.crt'), l)).toThrow(); // the intermediate is needed
    expect(verifyChain(leaf.certPem, leaf.chainPems, [root.certPem])).toEqual({ ok: true, spiffeId: WEB });
    expect(leaf.notAfter.getTime() - leaf.notBefore.getTime()).toBe(3_600_000 + CLOCK_SKEW_MS);
  });

  test('ttl is clamped to the CA lifetime and bounded', () => {
    const shortRoot = createRootCa({ trustDomain: TD, validityMs: 2 * DAY });
    const ca = new CertificateAuthority({ ...shortRoot, trustDomain: TD });
    const leaf = ca.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, ttlMs: 30 * DAY });
    expect(leaf.notAfter.getTime()).toBe(ca.notAfter.getTime());
    expect(() => ca.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, ttlMs: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_TTL' }));
    expect(() => rootCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, ttlMs: 91 * DAY })).toThrow(
      expect.objectContaining({ code: 'INVALID_TTL' }),
    );
    expect(() => ca.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB, now: new Date(Date.now() + 3 * DAY) })).toThrow(
      expect.objectContaining({ code: 'CA_NOT_VALID' }),
    );
  });

  describe('refuses', () => {
    test('a CSR for another identity', () => {
      const csr = createCsr(key.privateKeyPem, 'spiffe://cluster.local/ns/default/sa/admin');
      expect(issueError(rootCa, csr, WEB)).toMatchObject({ code: 'CSR_IDENTITY_MISMATCH', message: expect.stringContaining('sa/admin') });
    });

    test('a CSR with a DNS SAN next to the SPIFFE ID', () => {
      const csr = csrWith(key.privateKeyPem, [{ type: 6, value: WEB }, { type: 2, value: 'web.default.svc' }]);
      expect(issueError(rootCa, csr, WEB).code).toBe('CSR_EXTRA_SANS');
    });

    test('a CSR with an IP or email SAN, or a second URI', () => {
      expect(issueError(rootCa, csrWith(key.privateKeyPem, [{ type: 6, value: WEB }, { type: 7, ip: '10.0.0.1' }]), WEB).code).toBe('CSR_EXTRA_SANS');
      expect(issueError(rootCa, csrWith(key.privateKeyPem, [{ type: 6, value: WEB }, { type: 1, value: 'a@b.c' }]), WEB).code).toBe('CSR_EXTRA_SANS');
      expect(issueError(rootCa, csrWith(key.privateKeyPem, [{ type: 6, value: WEB }, { type: 6, value: WEB }]), WEB).code).toBe('CSR_EXTRA_SANS');
      expect(issueError(rootCa, csrWith(key.privateKeyPem, [{ type: 2, value: 'web' }]), WEB).code).toBe('CSR_EXTRA_SANS');
    });

    test('a CSR with no SAN or a non-SPIFFE URI', () => {
      expect(issueError(rootCa, csrWith(key.privateKeyPem, []), WEB).code).toBe('CSR_MISSING_SAN');
      expect(issueError(rootCa, csrWith(key.privateKeyPem, [{ type: 6, value: 'https://web' }]), WEB).code).toBe('CSR_IDENTITY_MISMATCH');
    });

    test('a CSR whose signed content was tampered with', () => {
      const pem = createCsr(key.privateKeyPem, WEB);
      const der = pemToDer(pem);
      const at = der.indexOf(Buffer.from('sa/web'));
      expect(at).toBeGreaterThan(0);
      der.write('sa/wex', at, 'latin1'); // the SAN now names another identity; the signature no longer matches
      const tampered = derToPem(der, 'CERTIFICATE REQUEST');
      expect(issueError(rootCa, tampered, 'spiffe://cluster.local/ns/default/sa/wex').code).toBe('CSR_INVALID_SIGNATURE');
      const der2 = pemToDer(pem);
      der2[der2.length - 5] ^= 0xff; // flip signature bits
      expect(issueError(rootCa, derToPem(der2, 'CERTIFICATE REQUEST'), WEB).code).toBe('CSR_INVALID_SIGNATURE');
    });

    test('another trust domain, in the CSR or in the requested identity', () => {
      const foreign = 'spiffe://evil.example/ns/default/sa/web';
      expect(issueError(rootCa, createCsr(key.privateKeyPem, foreign), foreign).code).toBe('TRUST_DOMAIN_MISMATCH');
      expect(issueError(rootCa, createCsr(key.privateKeyPem, foreign), WEB).code).toBe('TRUST_DOMAIN_MISMATCH');
    });

    test('a weak key', () => {
      const weak = generateKeyPairSync('rsa', { modulusLength: 1024, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
      expect(issueError(rootCa, createCsr(weak.privateKey, WEB), WEB).code).toBe('CSR_WEAK_KEY');
    });

    test('garbage', () => {
      expect(issueError(rootCa, 'not a csr', WEB).code).toBe('CSR_MALFORMED');
    });

    test('a CSR signed with MD5 (no proof of possession; Go x509 and so istiod refuse it); SHA-1 and SHA-512 are signed', () => {
      const signedWith = (algorithm: 'md5' | 'sha1' | 'sha512', oid: string): string => {
        const k = forge.pki.privateKeyFromPem(key.privateKeyPem);
        const csr = forge.pki.createCertificationRequest();
        csr.publicKey = forge.pki.setRsaPublicKey(k.n, k.e);
        csr.setSubject([]);
        csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: WEB }] }] }]);
        // RSASSA-PKCS1-v1_5 over DigestInfo(algorithm, digest) (RFC 8017 §9.2), made by OpenSSL.
        const { asn1 } = forge;
        const sign = (md: forge.md.MessageDigest): string => {
          const info = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
            asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
              asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
              asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
            ]),
            asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, md.digest().getBytes()),
          ]);
          return privateEncrypt({ key: key.privateKeyPem, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(asn1.toDer(info).getBytes(), 'binary')).toString('binary');
        };
        csr.sign(asForgeKey({ sign }), forge.md[algorithm].create());
        return forge.pki.certificationRequestToPem(csr);
      };
      const md5 = issueError(rootCa, signedWith('md5', '1.2.840.113549.2.5'), WEB);
      expect(md5.code).toBe('CSR_INVALID_SIGNATURE');
      expect(md5.message).toContain('MD5');
      expect(rootCa.issue(signedWith('sha1', '1.3.14.3.2.26'), { identity: WEB }).spiffeId).toBe(WEB);
      expect(rootCa.issue(signedWith('sha512', '2.16.840.1.101.3.4.2.3'), { identity: WEB }).spiffeId).toBe(WEB);
    });
  });

  test('the constructor refuses an issuer whose keyUsage lacks keyCertSign, whose leaves OpenSSL refuses (adv16)', () => {
    const k = forge.pki.privateKeyFromPem(key.privateKeyPem);
    const c = forge.pki.createCertificate();
    c.publicKey = forge.pki.setRsaPublicKey(k.n, k.e);
    c.serialNumber = '0c';
    c.validity.notBefore = weekAgo;
    c.validity.notAfter = new Date(Date.now() + DAY);
    c.setSubject([{ name: 'commonName', value: 'no keyCertSign' }]);
    c.setIssuer([{ name: 'commonName', value: 'no keyCertSign' }]);
    c.setExtensions([{ name: 'basicConstraints', critical: true, cA: true }, { name: 'keyUsage', critical: true, digitalSignature: true }]);
    c.sign(asForgeKey(nodeRsaSigner(key.privateKeyPem)), forge.md.sha256.create());
    expect(() => new CertificateAuthority({ certPem: forge.pki.certificateToPem(c), keyPem: key.privateKeyPem, trustDomain: TD })).toThrow(
      expect.objectContaining({ code: 'CA_INVALID', message: expect.stringContaining('keyCertSign') }),
    );
  });

  test('the constructor checks key, CA flag and trust domain', () => {
    expect(() => new CertificateAuthority({ certPem: root.certPem, keyPem: inter.keyPem, trustDomain: TD })).toThrow(
      expect.objectContaining({ code: 'CA_KEY_MISMATCH' }),
    );
    expect(() => new CertificateAuthority({ ...root, trustDomain: 'other.local' })).toThrow(expect.objectContaining({ code: 'TRUST_DOMAIN_MISMATCH' }));
    const leaf = rootCa.issue(createCsr(key.privateKeyPem, WEB), { identity: WEB });
    expect(() => new CertificateAuthority({ certPem: leaf.certPem, keyPem: key.privateKeyPem, trustDomain: TD })).toThrow(
      expect.objectContaining({ code: 'CA_INVALID' }),
    );
  });
});
