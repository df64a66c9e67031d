/**
 * Reading identities out of certificates and validating X509-SVID chains against a trust
 * bundle. The proxy's TLS handshakes are verified by OpenSSL inside node:tls (with the
 * bundle as `ca`); this module is the same check as a library call, for the CA service,
 * the CLI and tests, with reasons a human can act on.
 *
 * Path validation is the RFC 5280 §6.1 subset that matters for a mesh: every signature,
 * every validity window, basicConstraints CA:true + keyCertSign on every issuer,
 * pathLenConstraint, no unknown critical extensions, and a leaf that is not a CA and
 * carries exactly one workload SPIFFE ID. A bundle may hold several roots (trust-anchor
 * rotation): any of them may terminate the path.
 */
import { PkiError } from './errors.js';
import { parseSpiffeId, parseSpiffeUri } from './spiffe.js';
import { dnString, EKU, readCert, splitPemCerts, type ReadCert } from './x509.js';

export type VerifyResult = { ok: true; spiffeId: string } | { ok: false; reason: string };

class Reject extends Error {}

function urisOf(c: ReadCert): string[] {
  return c.ext.san?.uris ?? [];
}

/**
 * Why `c` cannot be an X509-SVID leaf, or null: X509-SVID §5.2 asks validators to refuse a
 * leaf whose basicConstraints say CA, or whose keyUsage has keyCertSign or cRLSign (TLS
 * stacks take a CA certificate as the end of a chain, so nothing else refuses it).
 */
function leafProfileProblem(c: ReadCert): string | null {
  if (c.ext.basicConstraints?.ca) return 'it is a CA certificate (basicConstraints CA:true), not a leaf';
  const usages = c.ext.keyUsage?.usages ?? [];
  if (usages.includes('keyCertSign') || usages.includes('cRLSign')) return 'its keyUsage allows signing certificates or CRLs (keyCertSign/cRLSign), which a leaf may not';
  return null;
}

/**
 * The SPIFFE ID in a certificate's single URI SAN (a CA's too: its trust domain's ID).
 * Accepts PEM text or DER bytes, so a TLS peer's `getPeerCertificate().raw` can be passed
 * directly.
 */
export function spiffeIdOfCert(cert: string | Buffer): string {
  return spiffeIdOf(readCert(cert));
}

/**
 * spiffeIdOfCert for a certificate that must be a workload's X509-SVID: a peer's, which TLS
 * verified as a chain but not as a leaf. Throws PkiError('CERT_NO_SPIFFE_ID') for a CA
 * certificate or one with keyCertSign/cRLSign (X509-SVID §5.2) too.
 */
export function spiffeIdOfLeaf(cert: string | Buffer): string {
  const c = readCert(cert);
  const notLeaf = leafProfileProblem(c);
  if (notLeaf) throw new PkiError('CERT_NO_SPIFFE_ID', `the certificate is no X509-SVID: ${notLeaf}`);
  return spiffeIdOf(c);
}

function spiffeIdOf(c: ReadCert): string {
  const uris = urisOf(c);
  if (uris.length === 0) throw new PkiError('CERT_NO_SPIFFE_ID', 'the certificate has no URI SAN');
  if (uris.length > 1) throw new PkiError('CERT_MULTIPLE_URIS', `the certificate has ${uris.length} URI SANs; an X509-SVID has exactly one`);
  try {
    parseSpiffeUri(uris[0]);
  } catch (e) {
    throw new PkiError('CERT_NO_SPIFFE_ID', `the certificate's URI SAN is not a SPIFFE ID: ${(e as Error).message}`, { cause: e });
  }
  return uris[0];
}

/**
 * A `checkServerIdentity` for node:tls clients. Mesh certificates carry no DNS names, so
 * Node's default hostname check would always fail; the proxy checks the SPIFFE ID
 * instead. `expected` is the exact ID or a predicate over it. Returns (not throws) the
 * error, as node:tls expects.
 */
export function checkPeerSpiffeId(
  expected: string | ((spiffeId: string) => boolean),
): (hostname: string, cert: { raw?: Buffer }) => Error | undefined {
  return (_hostname, cert) => {
    if (!cert?.raw) return new PkiError('PEER_IDENTITY_MISMATCH', 'the peer presented no certificate');
    let id: string;
    try {
      id = spiffeIdOfLeaf(cert.raw);
    } catch (e) {
      return new PkiError('PEER_IDENTITY_MISMATCH', `the peer certificate has no usable SPIFFE ID: ${(e as Error).message}`, { cause: e });
    }
    const ok = typeof expected === 'string' ? id === expected : expected(id);
    return ok ? undefined : new PkiError('PEER_IDENTITY_MISMATCH', `the peer is ${id}, expected ${typeof expected === 'string' ? expected : 'another identity'}`);
  };
}

function certsOf(pems: readonly string[], what: string): ReadCert[] {
  return pems.flatMap((p) => {
    const blocks = splitPemCerts(p);
    if (blocks.length === 0) throw new Reject(`${what} entry holds no PEM certificate`);
    return blocks.map((b) => readCert(b));
  });
}

function label(c: ReadCert, what: string): string {
  return `${what} (${urisOf(c)[0] ?? (dnString(c.x509.subject) || 'no subject')})`;
}

function checkTime(c: ReadCert, what: string, now: Date): void {
  if (now < c.x509.validFromDate) throw new Reject(`${what} is not yet valid (notBefore ${c.x509.validFromDate.toISOString()})`);
  if (now > c.x509.validToDate) throw new Reject(`${what} expired at ${c.x509.validToDate.toISOString()}`);
}

function checkCritical(c: ReadCert, what: string): void {
  if (c.ext.unknownCritical.length > 0) throw new Reject(`${what} has unsupported critical extension(s) ${c.ext.unknownCritical.join(', ')}`);
}

/** `below` = number of intermediates between this issuer and the leaf (RFC 5280 pathLenConstraint). */
function checkIssuer(c: ReadCert, what: string, below: number): void {
  const bc = c.ext.basicConstraints;
  if (!bc?.ca) throw new Reject(`${what} is not a CA (basicConstraints CA:true missing)`);
  if (c.ext.keyUsage && !c.ext.keyUsage.usages.includes('keyCertSign')) throw new Reject(`${what} lacks keyUsage keyCertSign`);
  if (bc.pathLen !== undefined && below > bc.pathLen) throw new Reject(`${what} has pathLenConstraint ${bc.pathLen} but ${below} intermediate(s) below it`);
  checkCritical(c, what);
}

/** Candidates whose subject is the child's issuer; the one whose key verifies the child's signature. */
function findIssuer(child: ReadCert, pool: ReadCert[]): { found?: ReadCert; nameMatched: boolean } {
  const named = pool.filter((p) => p.x509.subject === child.x509.issuer);
  return { found: named.find((p) => child.x509.verify(p.x509.publicKey)), nameMatched: named.length > 0 };
}

function verifyOrThrow(leafPem: string, chainPems: readonly string[], bundlePems: readonly string[], now: Date): string {
  const leafBlocks = splitPemCerts(leafPem);
  if (leafBlocks.length === 0) throw new Reject('the leaf is not a PEM certificate');
  const leaf = readCert(leafBlocks[0]);
  // A leaf file written as "leaf + chain" may be passed as is: the rest joins the chain.
  const intermediates = [...certsOf(leafBlocks.slice(1), 'leaf'), ...certsOf(chainPems, 'chain')];
  const anchors = certsOf(bundlePems, 'trust bundle');
  if (anchors.length === 0) throw new Reject('the trust bundle is empty');

  if (leaf.ext.basicConstraints?.ca) throw new Reject('the leaf certificate is a CA certificate');
  const notLeaf = leafProfileProblem(leaf);
  if (notLeaf) throw new Reject(`the leaf certificate is no X509-SVID: ${notLeaf}`);
  const uris = urisOf(leaf);
  if (uris.length !== 1) throw new Reject(`the leaf has ${uris.length} URI SANs; an X509-SVID has exactly one`);
  try {
    parseSpiffeId(uris[0]);
  } catch (e) {
    throw new Reject(`the leaf's URI SAN is not a workload SPIFFE ID: ${(e as Error).message}`);
  }
  const eku = leaf.ext.extKeyUsage;
  if (eku && !(eku.includes(EKU.serverAuth) && eku.includes(EKU.clientAuth)))
    throw new Reject('the leaf extKeyUsage must allow both serverAuth and clientAuth for mTLS');
  let current = leaf;
  let currentLabel = label(leaf, 'the leaf');
  checkCritical(leaf, currentLabel);
  checkTime(leaf, currentLabel, now);

  const unused = new Set(intermediates);
  for (let below = 0; ; below++) {
    const a = findIssuer(current, anchors);
    if (a.found) {
      const what = label(a.found, 'trust anchor');
      checkIssuer(a.found, what, below);
      checkTime(a.found, what, now);
      return uris[0];
    }
    const i = findIssuer(current, [...unused]);
    if (!i.found) {
      if (a.nameMatched || i.nameMatched)
        throw new Reject(
          `the signature on ${currentLabel} does not verify with the key of any "${dnString(current.x509.issuer)}" in the chain or trust bundle (a different CA with the same name, or a tampered certificate)`,
        );
      throw new Reject(`${currentLabel} was issued by "${dnString(current.x509.issuer)}", which is neither in the chain nor in the trust bundle`);
    }
    unused.delete(i.found);
    const what = label(i.found, 'intermediate');
    checkIssuer(i.found, what, below);
    checkTime(i.found, what, now);
    current = i.found;
    currentLabel = what;
  }
}

/** Validates leaf → chain → one of the bundle's anchors at `now` (default: the wall clock). */
export function verifyChain(leafPem: string, chainPems: readonly string[], trustBundlePems: readonly string[], now: Date = new Date()): VerifyResult {
  try {
    return { ok: true, spiffeId: verifyOrThrow(leafPem, chainPems, trustBundlePems, now) };
  } catch (e) {
    if (e instanceof Reject || e instanceof PkiError) return { ok: false, reason: e.message };
    return { ok: false, reason: `cannot validate: ${(e as Error).message}` };
  }
}

export interface CertInfo {
  readonly subject: string;
  readonly issuer: string;
  /** The single URI SAN when it is a SPIFFE ID; null otherwise (e.g. a CA without one). */
  readonly spiffeId: string | null;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  /** Lower-case hex, as CertificateAuthority.issue returns it. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly isCa: boolean;
  readonly keyUsage: readonly string[];
  readonly extKeyUsage: readonly string[];
  /** `AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprintSha256: string;
}

const EKU_NAMES: Record<string, string> = { [EKU.serverAuth]: 'serverAuth', [EKU.clientAuth]: 'clientAuth' };

export function certInfo(pem: string | Buffer): CertInfo {
  const c = readCert(pem);
  const uris = urisOf(c);
  let spiffeId: string | null = null;
  if (uris.length === 1) {
    try {
      parseSpiffeUri(uris[0]);
      spiffeId = uris[0];
    } catch {
      spiffeId = null;
    }
  }
  return {
    subject: dnString(c.x509.subject),
    issuer: dnString(c.x509.issuer),
    spiffeId,
    uris,
    dnsNames: c.ext.san?.dnsNames ?? [],
    ips: c.ext.san?.ips ?? [],
    serial: c.x509.serialNumber.toLowerCase(),
    notBefore: c.x509.validFromDate,
    notAfter: c.x509.validToDate,
    isCa: c.ext.basicConstraints?.ca ?? false,
    keyUsage: c.ext.keyUsage?.usages ?? [],
    extKeyUsage: (c.ext.extKeyUsage ?? []).map((o) => EKU_NAMES[o] ?? o),
    fingerprintSha256: c.x509.fingerprint256,
  };
}
