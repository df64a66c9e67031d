import { X509Certificate } from 'node:crypto';
import { CertificateAuthority, createCsr, createIntermediateCa, createRootCa, generateKeyPair, type CaMaterial } from '../../certs/index.js';
import { ClientAnchors } from './client-anchors.js';
import type { Issuer } from './issuer.js';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

function swappable(first: Issuer): { issuer: Issuer; swap(next: Issuer): void } {
  let cur = first;
  const subs = new Set<() => void>();
  return {
    issuer: { get ca() { return cur.ca; }, get trustBundlePem() { return cur.trustBundlePem; }, source: 'test', snapshot: () => cur, onChange: (fn) => (subs.add(fn), () => void subs.delete(fn)) },
    swap: (next) => { cur = next; for (const f of subs) f(); },
  };
}
const issuerOf = (signer: CaMaterial, ...bundle: CaMaterial[]): Issuer => ({
  ca: new CertificateAuthority({ certPem: signer.certPem, keyPem: signer.keyPem, trustDomain: TD }), trustBundlePem: bundle.map((b) => b.certPem).join(''), source: 'test',
});
const leaf = (i: Issuer): X509Certificate => new X509Certificate(i.ca.issue(createCsr(generateKeyPair().privateKeyPem, WEB), { identity: WEB }).certPem);
const fp = (m: CaMaterial): string => new X509Certificate(m.certPem).fingerprint256;

test('a leaf signed by a root of the bundle chains to it; once the root leaves the bundle, to nothing', () => {
  const a = createRootCa({ trustDomain: TD });
  const b = createRootCa({ trustDomain: TD });
  const sw = swappable(issuerOf(a, a, b));
  const anchors = new ClientAnchors(sw.issuer);
  const l = leaf(sw.issuer);
  expect(anchors.anchorOf(l)).toBe(fp(a));
  sw.swap(issuerOf(b, b));
  expect(anchors.anchorOf(l)).toBeNull();
  expect(anchors.anchorOf(leaf(sw.issuer))).toBe(fp(b));
  anchors.close();
});

test('a leaf of an intermediate used earlier still walks to its root, even one replaced before any call', () => {
  const root = createRootCa({ trustDomain: TD });
  const i1 = issuerOf(createIntermediateCa(root, { trustDomain: TD }), root);
  const i2 = issuerOf(createIntermediateCa(root, { trustDomain: TD }), root);
  const i3 = issuerOf(createIntermediateCa(root, { trustDomain: TD }), root);
  const sw = swappable(i1);
  const anchors = new ClientAnchors(sw.issuer);
  sw.swap(i2);
  sw.swap(i3);
  expect(anchors.anchorOf(leaf(i1))).toBe(fp(root));
  expect(anchors.anchorOf(leaf(i2))).toBe(fp(root));
  expect(anchors.anchorOf(leaf(i3))).toBe(fp(root));
  // An intermediate this control plane never signed with: its leaves do not chain here.
  expect(anchors.anchorOf(leaf(issuerOf(createIntermediateCa(root, { trustDomain: TD }), root)))).toBeNull();
  anchors.close();
});

test('a leaf of a CA outside the bundle does not chain (the signature decides, not the subject)', () => {
  const a = createRootCa({ trustDomain: TD });
  const other = createRootCa({ trustDomain: TD });
  const anchors = new ClientAnchors(issuerOf(a, a));
  expect(anchors.anchorOf(leaf(issuerOf(other, other)))).toBeNull();
});
