import forge from 'node-forge';
import { CertificateAuthority, createIntermediateCa, createRootCa, type CaMaterial } from './ca.js';
import { issueWorkload, type WorkloadCert } from './dev-mesh.js';
import { generateKeyPair } from './keys.js';
import { asForgeKey, nodeRsaSigner } from './signer.js';
import { certInfo, checkPeerSpiffeId, spiffeIdOfCert, spiffeIdOfLeaf, verifyChain } from './verify.js';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/default/sa/web';
const DAY = 86_400_000;

/** A certificate built by hand (the way an attacker or a foreign tool would), signed by `signerKeyPem`. */
function handmade(opts: {
  publicKeyPem: string;
  signerKeyPem: string;
  issuer?: forge.pki.CertificateField[];
  altNames?: { type: number; value: string }[];
  ca?: boolean;
  keyUsage?: Record<string, boolean>;
}): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(opts.publicKeyPem);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - DAY);
  cert.validity.notAfter = new Date(Date.now() + DAY);
  cert.setSubject(opts.ca ? [{ name: 'commonName', value: 'handmade CA' }] : []);
  cert.setIssuer(opts.issuer ?? []);
  cert.setExtensions([
    { name: 'basicConstraints', cA: opts.ca ?? false },
    ...(opts.keyUsage ? [{ name: 'keyUsage', ...opts.keyUsage }] : []),
    ...(opts.altNames ? [{ name: 'subjectAltName', altNames: opts.altNames }] : []),
  ]);
  cert.sign(asForgeKey(nodeRsaSigner(opts.signerKeyPem)), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

describe('verifyChain / spiffeIdOfCert / certInfo', () => {
  const monthAgo = new Date(Date.now() - 30 * DAY);
  let root: CaMaterial;
  let inter: CaMaterial;
  let rootCa: CertificateAuthority;
  let interCa: CertificateAuthority;
  let leaf: WorkloadCert;
  let viaInter: WorkloadCert;

  beforeAll(() => {
    root = createRootCa({ trustDomain: TD, now: monthAgo });
    inter = createIntermediateCa(root, { trustDomain: TD, now: monthAgo });
    rootCa = new CertificateAuthority({ ...root, trustDomain: TD });
    interCa = new CertificateAuthority({ ...inter, trustDomain: TD });
    leaf = issueWorkload(rootCa, WEB);
    viaInter = issueWorkload(interCa, { trustDomain: TD, namespace: 'shop', serviceAccount: 'cart' });
  });

  test('valid chains, direct and through an intermediate', () => {
    expect(verifyChain(leaf.certPem, leaf.chainPems, [root.certPem])).toEqual({ ok: true, spiffeId: WEB });
    expect(verifyChain(viaInter.certPem, viaInter.chainPems, [root.certPem])).toEqual({ ok: true, spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart' });
    // a "leaf + chain" file as written by dev-mesh works as the leaf argument
    expect(verifyChain(viaInter.certPem + viaInter.chainPems.join(''), [], [root.certPem]).ok).toBe(true);
    // the intermediate itself may be the trust anchor
    expect(verifyChain(viaInter.certPem, [], [inter.certPem]).ok).toBe(true);
  });

  test('a bundle holding old and new roots accepts leaves from either (trust-anchor rotation)', () => {
    const newRoot = createRootCa({ trustDomain: TD });
    const fromNew = issueWorkload(new CertificateAuthority({ ...newRoot, trustDomain: TD }), WEB);
    const bundle = [root.certPem + newRoot.certPem];
    expect(verifyChain(leaf.certPem, [], bundle).ok).toBe(true);
    expect(verifyChain(fromNew.certPem, [], bundle).ok).toBe(true);
    expect(verifyChain(fromNew.certPem, [], [newRoot.certPem, root.certPem]).ok).toBe(true);
    // same CA name, different key: refused on the signature
    expect(verifyChain(fromNew.certPem, [], [root.certPem])).toEqual({ ok: false, reason: expect.stringContaining('does not verify with the key of any') });
    const otherName = createRootCa({ trustDomain: TD, commonName: 'someone else' });
    expect(verifyChain(fromNew.certPem, [], [otherName.certPem])).toEqual({ ok: false, reason: expect.stringContaining('neither in the chain nor in the trust bundle') });
  });

  test('foreign CA, missing intermediate, empty bundle', () => {
    const foreign = createRootCa({ trustDomain: TD });
    expect(verifyChain(leaf.certPem, [], [foreign.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('does not verify') });
    expect(verifyChain(viaInter.certPem, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('Wren intermediate CA') });
    expect(verifyChain(leaf.certPem, [], [])).toEqual({ ok: false, reason: 'the trust bundle is empty' });
  });

  test('expired and not-yet-valid leaves', () => {
    const old = issueWorkload(rootCa, WEB, 3_600_000, new Date(Date.now() - 2 * DAY));
    expect(verifyChain(old.certPem, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('the leaf (spiffe://cluster.local/ns/default/sa/web) expired at') });
    // but it was valid back then
    expect(verifyChain(old.certPem, [], [root.certPem], new Date(Date.now() - 2 * DAY + 60_000)).ok).toBe(true);
    expect(verifyChain(leaf.certPem, [], [root.certPem], new Date(Date.now() - DAY))).toMatchObject({ ok: false, reason: expect.stringContaining('not yet valid') });
  });

  test('a tampered leaf signature', () => {
    const der = Buffer.from(leaf.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 3] ^= 0x01;
    const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
    expect(verifyChain(pem, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('does not verify') });
  });

  test('a workload cannot mint certificates with its own leaf key', () => {
    const victim = generateKeyPair();
    const forged = handmade({ publicKeyPem: victim.publicKeyPem, signerKeyPem: leaf.keyPem, altNames: [{ type: 6, value: 'spiffe://cluster.local/ns/kube-system/sa/admin' }] });
    expect(verifyChain(forged, [leaf.certPem], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('is not a CA') });
  });

  test('pathLenConstraint 0 on the intermediate forbids a second level', () => {
    const sub = createIntermediateCa(inter, { trustDomain: TD });
    const deep = issueWorkload(new CertificateAuthority({ ...sub, chainPems: [inter.certPem], trustDomain: TD }), WEB);
    expect(deep.chainPems).toHaveLength(2);
    expect(verifyChain(deep.certPem, deep.chainPems, [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('pathLenConstraint 0') });
  });

  test('leaf rules: not a CA, exactly one workload SPIFFE ID', () => {
    expect(verifyChain(inter.certPem, [], [root.certPem])).toMatchObject({ ok: false, reason: 'the leaf certificate is a CA certificate' });
    const k = generateKeyPair();
    const rootIssuer = forge.pki.certificateFromPem(root.certPem).subject.attributes;
    const two = handmade({ publicKeyPem: k.publicKeyPem, signerKeyPem: root.keyPem, issuer: rootIssuer, altNames: [{ type: 6, value: WEB }, { type: 6, value: 'spiffe://cluster.local/ns/a/sa/b' }] });
    expect(verifyChain(two, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('2 URI SANs') });
    const dns = handmade({ publicKeyPem: k.publicKeyPem, signerKeyPem: root.keyPem, issuer: rootIssuer, altNames: [{ type: 6, value: 'https://x' }] });
    expect(verifyChain(dns, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('not a workload SPIFFE ID') });
    expect(verifyChain('nonsense', [], [root.certPem])).toMatchObject({ ok: false });
  });

  test('spiffeIdOfCert: PEM or DER, exactly one URI', () => {
    expect(spiffeIdOfCert(leaf.certPem)).toBe(WEB);
    const der = Buffer.from(leaf.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(spiffeIdOfCert(der)).toBe(WEB);
    expect(spiffeIdOfCert(root.certPem)).toBe('spiffe://cluster.local');
    const k = generateKeyPair();
    const none = handmade({ publicKeyPem: k.publicKeyPem, signerKeyPem: k.privateKeyPem });
    expect(() => spiffeIdOfCert(none)).toThrow(expect.objectContaining({ code: 'CERT_NO_SPIFFE_ID' }));
    const two = handmade({ publicKeyPem: k.publicKeyPem, signerKeyPem: k.privateKeyPem, altNames: [{ type: 6, value: WEB }, { type: 6, value: WEB }] });
    expect(() => spiffeIdOfCert(two)).toThrow(expect.objectContaining({ code: 'CERT_MULTIPLE_URIS' }));
  });

  test('a peer\'s certificate must be an X509-SVID leaf: no CA, no keyCertSign or cRLSign (X509-SVID §5.2; adv16)', () => {
    const k = generateKeyPair();
    const rootIssuer = forge.pki.certificateFromPem(root.certPem).subject.attributes;
    const made = (o: { ca?: boolean; keyUsage?: Record<string, boolean> }) =>
      handmade({ publicKeyPem: k.publicKeyPem, signerKeyPem: root.keyPem, issuer: rootIssuer, altNames: [{ type: 6, value: WEB }], ...o });
    const caLeaf = made({ ca: true });
    const certSigner = made({ keyUsage: { digitalSignature: true, keyCertSign: true } });
    const crlSigner = made({ keyUsage: { digitalSignature: true, cRLSign: true } });
    expect(spiffeIdOfLeaf(leaf.certPem)).toBe(WEB);
    expect(spiffeIdOfLeaf(made({ keyUsage: { digitalSignature: true } }))).toBe(WEB);
    for (const bad of [caLeaf, certSigner, crlSigner, root.certPem]) {
      expect(() => spiffeIdOfLeaf(bad)).toThrow(expect.objectContaining({ code: 'CERT_NO_SPIFFE_ID' }));
      expect(checkPeerSpiffeId(WEB)('', { raw: Buffer.from(bad.replace(/-----[^-]+-----|\s/g, ''), 'base64') })).toMatchObject({ code: 'PEER_IDENTITY_MISMATCH' });
    }
    expect(verifyChain(certSigner, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('keyCertSign') });
    expect(verifyChain(crlSigner, [], [root.certPem])).toMatchObject({ ok: false, reason: expect.stringContaining('cRLSign') });
  });

  test('certInfo', () => {
    const info = certInfo(viaInter.certPem);
    expect(info).toMatchObject({
      subject: '',
      issuer: 'O=Wren, CN=Wren intermediate CA cluster.local',
      spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart',
      uris: ['spiffe://cluster.local/ns/shop/sa/cart'],
      dnsNames: [],
      isCa: false,
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth', 'clientAuth'],
    });
    expect(info.notAfter).toEqual(viaInter.notAfter);
    expect(info.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(certInfo(inter.certPem)).toMatchObject({ isCa: true, keyUsage: ['keyCertSign', 'cRLSign'], spiffeId: 'spiffe://cluster.local' });
  });

  test('checkPeerSpiffeId for tls checkServerIdentity', () => {
    const raw = Buffer.from(leaf.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(checkPeerSpiffeId(WEB)('127.0.0.1', { raw })).toBeUndefined();
    expect(checkPeerSpiffeId((id) => id.endsWith('/sa/web'))('x', { raw })).toBeUndefined();
    expect(checkPeerSpiffeId('spiffe://cluster.local/ns/default/sa/db')('x', { raw })).toMatchObject({ code: 'PEER_IDENTITY_MISMATCH' });
    expect(checkPeerSpiffeId(WEB)('x', {})).toMatchObject({ code: 'PEER_IDENTITY_MISMATCH' });
  });
});
