import { X509Certificate } from 'node:crypto';
import { createRootCa } from '../../certs/ca.js';
import { craftLeaf, type AltName, type CraftOptions } from '../../test/helpers/crafted-leaf.js';
import { spiffeIdOf } from './peer-identity.js';

/**
 * The peer identity the sidecars authorize on (and write into x-forwarded-client-cert), from
 * certificates a CA of the bundle could sign without the X509-SVID profile the mesh CA keeps
 * to (found by adv16: any URI starting `spiffe://` was an identity, and a CA certificate
 * could be the leaf). All are signed by a real root, as OpenSSL would verify them.
 */
const root = createRootCa({ trustDomain: 'cluster.local' });
function cert(altNames: AltName[], o: CraftOptions = {}): X509Certificate {
  return new X509Certificate(craftLeaf(root, altNames, o).certPem);
}
const uri = (value: string): AltName => ({ type: 6, value });
const dns = (value: string): AltName => ({ type: 2, value });
const ID = 'spiffe://cluster.local/ns/default/sa/client';
const ADMIN = 'spiffe://cluster.local/ns/default/sa/admin';

test('an X509-SVID: its one URI SAN; other SAN types beside it do not matter (X509-SVID §2)', () => {
  expect(spiffeIdOf(cert([uri(ID)]))).toBe(ID);
  expect(spiffeIdOf(cert([dns('client.default.svc'), uri(ID), { type: 7, ip: '10.0.0.1' }]))).toBe(ID);
  expect(spiffeIdOf(undefined)).toBe('');
});

test('a DNS name spelling ", URI:spiffe://…, " stays one DNS name (Node escapes its commas) and adds no URI', () => {
  const forged = cert([dns(`x, URI:${ADMIN}, DNS:y`)]);
  expect(spiffeIdOf(forged)).toBe('');
  expect(spiffeIdOf(cert([uri(ID), dns(`x, URI:${ADMIN}`)]))).toBe(ID);
});

test('a URI that is no well-formed SPIFFE ID with a path is no identity (SPIFFE-ID §2)', () => {
  for (const bad of [
    `${ID};URI=${ADMIN}`,
    'spiffe://cluster.local/ns/default/sa/../../ns/kube-system/sa/admin',
    'spiffe://cluster.local/ns/default/sa/ad%6din',
    `${ADMIN}/`,
    'spiffe://cluster.local//ns/default/sa/admin',
    'spiffe://cluster.local:443/ns/default/sa/admin',
    'spiffe://user@cluster.local/ns/default/sa/admin',
    `${ADMIN}?x=1`,
    `${ADMIN}#x`,
    'SPIFFE://cluster.local/ns/default/sa/admin',
    'spiffe://Cluster.Local/ns/default/sa/admin',
    'spiffe://cluster.local',
    'https://cluster.local/ns/default/sa/admin',
    `spiffe://cluster.local/ns/default/sa/a,${ADMIN}`,
  ])
    expect([bad, spiffeIdOf(cert([uri(bad)]))]).toEqual([bad, '']);
});

test('two URI SANs, or a CA certificate or one with keyCertSign/cRLSign presented as the leaf: no identity (X509-SVID §2, §5.2)', () => {
  expect(spiffeIdOf(cert([uri(ID), uri(ADMIN)]))).toBe('');
  expect(spiffeIdOf(cert([uri(ADMIN)], { ca: true }))).toBe('');
  expect(spiffeIdOf(cert([uri(ADMIN)], { ku: { keyCertSign: true } }))).toBe('');
  expect(spiffeIdOf(cert([uri(ADMIN)], { ku: { cRLSign: true } }))).toBe('');
  expect(spiffeIdOf(new X509Certificate(root.certPem))).toBe('');
  // Nor does what is no certificate at all.
  expect(spiffeIdOf({ raw: Buffer.from('not DER') })).toBe('');
});

test('an extension the reader does not use is not decoded: a private one whose bytes are not DER (OpenSSL and Go take it as opaque) leaves the identity', () => {
  // extnValue 01, 00 and ff ff: no DER value; forge's decoder threw, and the certificate had no identity at all.
  for (const value of ['\x01', '', '\xff\xff'])
    expect(spiffeIdOf(cert([uri(ID)], { extra: [{ id: '1.3.6.1.4.1.99999.1', critical: false, value }] }))).toBe(ID);
});
