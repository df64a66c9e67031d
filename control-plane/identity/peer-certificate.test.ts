import { X509Certificate } from 'node:crypto';
import { CertificateAuthority, createRootCa, issueWorkload } from '../../certs/index.js';
import { craftLeaf } from '../../test/helpers/crafted-leaf.js';
import { peerIdentityOf } from './peer-certificate.js';

/**
 * Found by adv16: renewal by certificate (and a discovery stream) took a client certificate
 * that is no X509-SVID leaf, a CA certificate or one with keyCertSign, as the proof of its
 * URI SAN's identity (X509-SVID §5.2: validators must refuse both). TLS verified the chain;
 * the leaf profile is this check's.
 */
const TD = 'cluster.local';
const ID = 'spiffe://cluster.local/ns/default/sa/client';
const root = createRootCa({ trustDomain: TD });
const anchors = { anchorOf: (_: X509Certificate) => 'AA' };
const call = (pem: string) => {
  const x = new X509Certificate(pem);
  return { getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: { raw: x.raw, valid_to: x.validTo, serialNumber: x.serialNumber } as never }) };
};

const made = (o: { ca?: boolean; keyCertSign?: boolean }): string => craftLeaf(root, [{ type: 6, value: ID }], { ...o, serial: '0b' }).certPem;

test('a workload certificate proves its identity; a CA certificate or one with keyCertSign proves none', () => {
  const leaf = issueWorkload(new CertificateAuthority({ ...root, trustDomain: TD }), ID);
  expect(peerIdentityOf(call(leaf.certPem), TD, anchors)).toMatchObject({ ok: true, peer: { spiffeId: ID, namespace: 'default', serviceAccount: 'client' } });
  expect(peerIdentityOf(call(made({})), TD, anchors)).toMatchObject({ ok: true });
  for (const bad of [made({ ca: true }), made({ keyCertSign: true })])
    expect(peerIdentityOf(call(bad), TD, anchors)).toMatchObject({ ok: false, reason: 'bad-client-certificate', detail: expect.stringContaining('no X509-SVID') });
});
