import { X509Certificate } from 'node:crypto';
import { splitPemCerts } from '../../certs/index.js';
import { certFingerprint, chainRootFingerprint } from '../../contract/trust-anchors.js';
import { issuerSnapshot, type Issuer } from './issuer.js';

/** What the CA hands out now: the anchors of its bundle and the root its issuer chains to. */
export interface IssuerTrust {
  readonly trustAnchorFingerprints: readonly string[];
  readonly signingRootFingerprint: string;
  /** Changes whenever either of the above changes (compare, do not parse). */
  readonly key: string;
}

export function issuerTrust(issuer: Issuer): IssuerTrust {
  const i = issuerSnapshot(issuer);
  const anchors = splitPemCerts(i.trustBundlePem);
  const trustAnchorFingerprints = [...new Set(anchors.map((a) => certFingerprint(a)))];
  const chain = i.ca.issuedChainPems.length > 0 ? [...i.ca.issuedChainPems] : [i.ca.certPem];
  const signingRootFingerprint = chainRootFingerprint(chain, anchors) ?? '';
  return { trustAnchorFingerprints, signingRootFingerprint, key: `${[...trustAnchorFingerprints].sort().join(',')}>${signingRootFingerprint}` };
}

/** The control plane's side of GET /debug/trust: its anchors and issuer, for people. */
export function describeIssuerTrust(issuer: Issuer): Record<string, unknown> {
  const i = issuerSnapshot(issuer);
  const t = issuerTrust(i);
  const ca = new X509Certificate(i.ca.certPem);
  return {
    source: i.source,
    trustAnchors: splitPemCerts(i.trustBundlePem).map((p) => {
      const c = new X509Certificate(p);
      return { fingerprint: c.fingerprint256, subject: c.subject.replace(/\n/g, ', '), notAfter: new Date(c.validTo).toISOString() };
    }),
    issuer: { fingerprint: ca.fingerprint256, subject: ca.subject.replace(/\n/g, ', '), notAfter: i.ca.notAfter.toISOString() },
    signingRoot: t.signingRootFingerprint,
  };
}
