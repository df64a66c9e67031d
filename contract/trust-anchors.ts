import { X509Certificate } from 'node:crypto';
import { splitPemCerts } from '../certs/index.js';
import type { IdentityReport, TrustBundleState } from './discovery.js';

/**
 * Trust-anchor fingerprints as the discovery contract carries them (IdentityReport,
 * TrustBundleState): SHA-256 of the certificate's DER, upper-case hex pairs joined by
 * colons — what `openssl x509 -noout -fingerprint -sha256` and `wren certs inspect`
 * print, and the `fingerprint` label of wren_identity_trust_anchor_expiry_timestamp_seconds.
 * Shared by the control plane (what it hands out), the proxy (what it trusts and uses)
 * and `wren trust-anchors check`, which never import each other.
 */
export function certFingerprint(cert: string | X509Certificate): string {
  return (typeof cert === 'string' ? new X509Certificate(cert) : cert).fingerprint256;
}

/** Fingerprints of every certificate in a PEM bundle, in order, without duplicates. */
export function bundleFingerprints(bundlePem: string): string[] {
  return [...new Set(splitPemCerts(bundlePem).map((p) => certFingerprint(p)))];
}

/**
 * Why `text` cannot be a trust bundle, or null when it can: at least one PEM CERTIFICATE
 * block, every block an X.509 CA certificate (an anchor signs; a leaf in the bundle is a
 * mistake that verifies nothing). What `wren inject --trust-bundle` checks before it hands
 * the text to every proxy (WREN_TRUST_BUNDLE).
 */
export function trustBundleProblem(text: string): string | null {
  const blocks = splitPemCerts(text);
  if (blocks.length === 0) return 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)';
  for (const [i, b] of blocks.entries()) {
    let c: X509Certificate;
    try {
      c = new X509Certificate(b);
    } catch {
      return `certificate ${i + 1} of ${blocks.length} is not a valid X.509 certificate`;
    }
    // A workload certificate has an empty subject: its SPIFFE ID names it.
    const name = (c.subject ?? '').replace(/\n/g, ', ') || c.subjectAltName || c.fingerprint256;
    if (!c.ca) return `certificate ${i + 1} of ${blocks.length} (${name}) is not a CA certificate: a trust bundle holds the mesh's root CA(s)`;
  }
  return null;
}

const HEX64 = /^[0-9A-F]{64}$/;

/**
 * Accepts the forms people paste: `AB:CD:…`, `abcd…`, `sha256:abcd…` or openssl's
 * `sha256 Fingerprint=AB:CD:…`; returns the canonical form, or null when it is not a
 * SHA-256 fingerprint.
 */
export function normalizeFingerprint(s: string): string | null {
  const hex = s.trim().replace(/^sha-?256( fingerprint)?[=:]\s*/i, '').replace(/[:\s]/g, '').toUpperCase();
  if (!HEX64.test(hex)) return null;
  return hex.match(/../g)!.join(':');
}

const signedBy = (child: X509Certificate, parent: X509Certificate): boolean => {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
};

/**
 * The fingerprint of the anchor that `chainPems` (a leaf or CA certificate first, then
 * intermediates in any order) ends at: the first certificate is an anchor, or a path of
 * valid signatures leads from it through the intermediates to an anchor. null when the
 * chain reaches none of them. With two anchors that share a subject (a re-keyed root),
 * the signature decides which one.
 */
export function chainRootFingerprint(chainPems: readonly string[], anchorPems: readonly string[]): string | null {
  if (chainPems.length === 0) return null;
  const anchors = anchorPems.map((p) => new X509Certificate(p));
  const pool = chainPems.slice(1).map((p) => new X509Certificate(p));
  let cur = new X509Certificate(chainPems[0]);
  for (let hops = 0; hops <= pool.length; hops++) {
    const root = anchors.find((a) => a.fingerprint256 === cur.fingerprint256 || signedBy(cur, a));
    if (root) return root.fingerprint256;
    const next = pool.find((p) => p !== cur && signedBy(cur, p));
    if (!next) return null;
    cur = next;
  }
  return null;
}

/** What a proxy holding `material` reports (IdentityReport): its anchors, its chain's root, its leaf. */
export function identityReportOf(material: { readonly certChainPem: string; readonly trustBundlePem: string }): IdentityReport {
  const chain = splitPemCerts(material.certChainPem);
  const anchors = splitPemCerts(material.trustBundlePem);
  const leaf = new X509Certificate(chain[0]);
  return {
    trustAnchorFingerprints: [...new Set(anchors.map((a) => certFingerprint(a)))],
    chainRootFingerprint: chainRootFingerprint(chain, anchors) ?? '',
    leafSerial: leaf.serialNumber.toLowerCase(),
    notAfterMs: new Date(leaf.validTo).getTime(),
  };
}

/**
 * Why a proxy holding `report` should renew now to match the CA's `state`, or null when
 * it matches: its bundle differs from the one the CA hands out, or its certificate ends
 * at another root than the one the CA signs under.
 */
export function trustMismatch(report: IdentityReport, state: TrustBundleState): string | null {
  const ours = new Set(report.trustAnchorFingerprints);
  const theirs = new Set(state.trustAnchorFingerprints);
  const added = [...theirs].filter((f) => !ours.has(f));
  const removed = [...ours].filter((f) => !theirs.has(f));
  if (added.length > 0 || removed.length > 0)
    return `the control plane's trust bundle differs (${added.length} root(s) to add, ${removed.length} to remove)`;
  if (state.signingRootFingerprint && report.chainRootFingerprint !== state.signingRootFingerprint)
    return `the certificate chains to ${short(report.chainRootFingerprint)} but the CA now signs under ${short(state.signingRootFingerprint)}`;
  return null;
}

/** First 8 bytes of a fingerprint, for logs and tables. */
export function short(fp: string): string {
  return fp ? fp.slice(0, 23) : '(none)';
}

/** Validates a TrustBundleState from the wire (throws naming `path`); fingerprints come back canonical. */
export function parseTrustBundleState(w: TrustBundleState, path: string): TrustBundleState {
  const fp = (v: unknown, p: string): string => {
    const n = typeof v === 'string' ? normalizeFingerprint(v) : null;
    if (n === null) throw new Error(`${p}: expected a SHA-256 fingerprint, got ${JSON.stringify(v)}`);
    return n;
  };
  const anchors = (w?.trustAnchorFingerprints ?? []).map((v, i) => fp(v, `${path}.trustAnchorFingerprints[${i}]`));
  if (anchors.length === 0) throw new Error(`${path}.trustAnchorFingerprints: empty`);
  const spread = Number(w.reissueSpreadMs ?? 0);
  if (!Number.isFinite(spread) || spread < 0) throw new Error(`${path}.reissueSpreadMs: expected a duration in ms, got ${JSON.stringify(w.reissueSpreadMs)}`);
  return {
    trustAnchorFingerprints: anchors,
    signingRootFingerprint: w.signingRootFingerprint ? fp(w.signingRootFingerprint, `${path}.signingRootFingerprint`) : '',
    reissueSpreadMs: spread,
  };
}
