/**
 * The mesh certificate authority: a self-signed root (trust anchor), optional
 * intermediates (Linkerd's "issuer"), and leaf X509-SVIDs issued from CSRs.
 *
 * Leaf profile (SPIFFE X509-SVID spec §4, RFC 5280): empty subject with the SPIFFE ID as
 * the one URI SAN, marked critical because the subject is empty (RFC 5280 §4.2.1.6);
 * basicConstraints CA:false; keyUsage digitalSignature+keyEncipherment (critical);
 * extKeyUsage serverAuth+clientAuth (the same cert serves both ends of mTLS);
 * subject/authority key identifiers; a random positive serial.
 *
 * notBefore is backdated by CLOCK_SKEW_MS (2 minutes), as istiod does
 * (ClockSkewGracePeriod, istio/istio#32176). Linkerd's issuer uses 20 s
 * (identity.issuer.clockSkewAllowance) and kube-controller-manager's CSR signer 5 minutes.
 * A relying party whose clock is behind the CA's by more than it refuses every certificate
 * the CA just signed until its own clock reaches notBefore, and the one certificate no
 * relying party can wait out is the control plane's own serving certificate: reissued at
 * ~70 % of its life (or at once on a new issuer), proxies' handshakes to the control plane
 * failed for (skew - backdate) after each reissue, with a minute of backdate any skew past
 * 60 s (until 2026-12-08, adv66). Dev meshes run on laptops and VMs that resume from sleep
 * with a stale clock; backdating a freshly issued certificate by two minutes widens
 * nothing an attacker can use (the key was only just created).
 */
import { createHmac, createPrivateKey, hkdfSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { readCsr } from './csr.js';
import { PkiError } from './errors.js';
import { generateKeyPair, privateKeyFromPem, publicKeyOf, samePublicKey } from './keys.js';
import { asForgeKey, nodeRsaSigner, type ForgeSigner } from './signer.js';
import { parseSpiffeUri, toSpiffeId, trustDomainId, validateTrustDomain, type SpiffeId } from './spiffe.js';
import { CERTIFY_STATE_OID } from './x509.js';

const DAY_MS = 24 * 3_600_000;
/** Istio's self-signed root lives 10 years (mesh-anchors.md [I11]). */
export const DEFAULT_ROOT_VALIDITY_MS = 3650 * DAY_MS;
/** Linkerd's CLI-generated issuer lives one year (mesh-anchors.md [LW-mtls]). */
export const DEFAULT_INTERMEDIATE_VALIDITY_MS = 365 * DAY_MS;
/** Linkerd and Istio both issue 24-hour workload certificates. */
export const DEFAULT_LEAF_TTL_MS = DAY_MS;
/** Istio's maximum workload certificate TTL is 90 days (mesh-anchors.md [I11]). */
export const MAX_LEAF_TTL_MS = 90 * DAY_MS;
/** How far notBefore is backdated (above). */
export const CLOCK_SKEW_MS = 2 * 60_000;

export interface CaMaterial {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface CaOptions {
  readonly trustDomain: string;
  readonly commonName?: string;
  readonly validityMs?: number;
  readonly now?: Date;
}

export interface IssuedCert {
  readonly certPem: string;
  /** Intermediates from the issuing CA up to, excluding, the root; [] when the root issued. */
  readonly chainPems: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Lower-case hex. */
  readonly serial: string;
  readonly spiffeId: string;
}

/**
 * 128 random bits as a positive DER INTEGER: the top bit is cleared so the value is not
 * negative, and a zero first byte is avoided so the encoding stays minimal (forge writes
 * the hex bytes verbatim). CA/Browser Forum asks for at least 64 bits of entropy.
 */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = b[0] & 0x7f || 0x01;
  return b.toString('hex');
}

const floorSecond = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

function caSubject(commonName: string): forge.pki.CertificateField[] {
  // UTF8String: trust domains may contain "_", which PrintableString cannot hold.
  return [
    { name: 'organizationName', value: 'Wren', valueTagClass: forge.asn1.Type.UTF8 },
    { name: 'commonName', value: commonName, valueTagClass: forge.asn1.Type.UTF8 },
  ] as unknown as forge.pki.CertificateField[];
}

/** The issuer's SKI bytes, from its extension when present, else computed like forge's SKI. */
function keyIdOf(cert: forge.pki.Certificate): string {
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  if (ski?.subjectKeyIdentifier) return forge.util.hexToBytes(ski.subjectKeyIdentifier);
  return cert.generateSubjectKeyIdentifier().getBytes();
}

function caCert(opts: {
  key: forge.pki.rsa.PrivateKey;
  keyPem: string;
  subjectCn: string;
  trustDomain: string;
  issuer: { cert: forge.pki.Certificate; keyPem: string } | null;
  notBefore: Date;
  notAfter: Date;
  pathLen?: number;
}): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKeyOf(opts.key);
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = opts.notBefore;
  cert.validity.notAfter = opts.notAfter;
  cert.setSubject(caSubject(opts.subjectCn));
  cert.setIssuer(opts.issuer ? opts.issuer.cert.subject.attributes : caSubject(opts.subjectCn));
  cert.setExtensions([
    { name: 'basicConstraints', critical: true, cA: true, ...(opts.pathLen === undefined ? {} : { pathLenConstraint: opts.pathLen }) },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
    ...(opts.issuer ? [{ name: 'authorityKeyIdentifier', keyIdentifier: keyIdOf(opts.issuer.cert) }] : []),
    // The trust domain's own SPIFFE ID: lets tools recover the trust domain from ca.crt.
    { name: 'subjectAltName', altNames: [{ type: 6, value: trustDomainId(opts.trustDomain) }] },
  ]);
  cert.sign(asForgeKey(nodeRsaSigner(opts.issuer?.keyPem ?? opts.keyPem)), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

function validity(now: Date | undefined, ms: number, cap?: Date): { notBefore: Date; notAfter: Date } {
  if (!(ms > 0)) throw new PkiError('INVALID_TTL', `validity must be a positive number of milliseconds, got ${ms}`);
  const t = (now ?? new Date()).getTime();
  const end = cap ? Math.min(t + ms, cap.getTime()) : t + ms;
  return { notBefore: floorSecond(t - CLOCK_SKEW_MS), notAfter: floorSecond(end) };
}

/** A self-signed root (trust anchor). The key is returned in memory; callers decide where it goes. */
export function createRootCa(opts: CaOptions): CaMaterial {
  const td = validateTrustDomain(opts.trustDomain);
  const keyPem = generateKeyPair().privateKeyPem;
  const key = privateKeyFromPem(keyPem);
  const { notBefore, notAfter } = validity(opts.now, opts.validityMs ?? DEFAULT_ROOT_VALIDITY_MS);
  const certPem = caCert({ key, keyPem, subjectCn: opts.commonName ?? `Wren root CA ${td}`, trustDomain: td, issuer: null, notBefore, notAfter });
  return { certPem, keyPem };
}

/** An intermediate signed by `root` (pathLen 0: it may only issue leaves); never outlives its issuer. */
export function createIntermediateCa(root: CaMaterial, opts: CaOptions): CaMaterial {
  const td = validateTrustDomain(opts.trustDomain);
  const issuerCert = forge.pki.certificateFromPem(root.certPem);
  const issuerKey = privateKeyFromPem(root.keyPem);
  if (!samePublicKey(publicKeyOf(issuerKey), issuerCert.publicKey as forge.pki.rsa.PublicKey))
    throw new PkiError('CA_KEY_MISMATCH', 'the root key does not match the root certificate');
  const keyPem = generateKeyPair().privateKeyPem;
  const key = privateKeyFromPem(keyPem);
  const { notBefore, notAfter } = validity(opts.now, opts.validityMs ?? DEFAULT_INTERMEDIATE_VALIDITY_MS, issuerCert.validity.notAfter);
  const certPem = caCert({
    key,
    keyPem,
    subjectCn: opts.commonName ?? `Wren intermediate CA ${td}`,
    trustDomain: td,
    issuer: { cert: issuerCert, keyPem: root.keyPem },
    notBefore,
    notAfter,
    pathLen: 0,
  });
  return { certPem, keyPem };
}

export interface IssueOptions {
  readonly identity: SpiffeId | string;
  readonly ttlMs?: number;
  readonly now?: Date;
  /** Written into the leaf as the non-critical CERTIFY_STATE_OID (nsComment) extension, an IA5String (printable ASCII only): the Certify limit's state, for whichever replica the certificate renews at. */
  readonly certifyState?: string;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly certPem: string;
  /** What `issue` returns as chainPems: this CA's cert (unless it is the root) and its intermediates. */
  readonly issuedChainPems: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly maxTtlMs: number;
  private readonly cert: forge.pki.Certificate;
  private readonly signer: ForgeSigner;
  private readonly keyId: string;
  private readonly digestKey: Buffer;

  constructor(opts: { certPem: string; keyPem: string; chainPems?: string[]; trustDomain: string; maxTtlMs?: number }) {
    this.trustDomain = validateTrustDomain(opts.trustDomain);
    try {
      this.cert = forge.pki.certificateFromPem(opts.certPem);
    } catch (e) {
      throw new PkiError('CA_INVALID', `cannot read the CA certificate (RSA PEM expected): ${(e as Error).message}`, { cause: e });
    }
    const key = privateKeyFromPem(opts.keyPem);
    this.signer = nodeRsaSigner(opts.keyPem);
    if (!samePublicKey(publicKeyOf(key), this.cert.publicKey as forge.pki.rsa.PublicKey))
      throw new PkiError('CA_KEY_MISMATCH', 'the CA private key does not match the CA certificate');
    const bc = this.cert.getExtension('basicConstraints') as { cA?: boolean } | null;
    if (!bc?.cA) throw new PkiError('CA_INVALID', 'the CA certificate lacks basicConstraints CA:true');
    // RFC 5280 §4.2.1.3 and X509-SVID §4.3: a keyUsage without keyCertSign forbids signing
    // certificates, and OpenSSL (so every sidecar) refuses each leaf such a CA signs.
    const ku = this.cert.getExtension('keyUsage') as { keyCertSign?: boolean } | null;
    if (ku && !ku.keyCertSign) throw new PkiError('CA_INVALID', 'the CA certificate\'s keyUsage lacks keyCertSign: no verifier would accept the certificates it signs');
    const san = this.cert.getExtension('subjectAltName') as { altNames?: { type: number; value: string }[] } | null;
    for (const n of san?.altNames ?? []) {
      if (n.type !== 6 || !n.value.startsWith('spiffe://')) continue;
      const td = parseSpiffeUri(n.value).trustDomain;
      if (td !== this.trustDomain)
        throw new PkiError('TRUST_DOMAIN_MISMATCH', `the CA certificate is for trust domain "${td}", not "${this.trustDomain}"`);
    }
    this.certPem = forge.pki.certificateToPem(this.cert);
    const selfSigned = this.cert.isIssuer(this.cert) && safeVerify(this.cert, this.cert);
    this.issuedChainPems = Object.freeze(selfSigned ? [] : [this.certPem, ...(opts.chainPems ?? [])]);
    this.notBefore = this.cert.validity.notBefore;
    this.notAfter = this.cert.validity.notAfter;
    this.maxTtlMs = opts.maxTtlMs ?? MAX_LEAF_TTL_MS;
    this.keyId = keyIdOf(this.cert);
    // HKDF (RFC 5869) from the CA key: every replica holding this CA derives the same key, and nobody else can.
    const der = createPrivateKey(opts.keyPem).export({ type: 'pkcs8', format: 'der' });
    this.digestKey = Buffer.from(hkdfSync('sha256', der, '', 'wren keyed digest v1', 32));
  }

  /**
   * HMAC-SHA256 of `data` under a key derived from this CA's private key, hex: a digest of a
   * secret (a bootstrap token) that may be written into a certificate every peer sees without
   * letting anyone test guesses of the secret against it, and that every replica sharing the
   * CA computes alike.
   */
  keyedDigest(data: string): string {
    return createHmac('sha256', this.digestKey).update(data).digest('hex');
  }

  /**
   * Signs a workload CSR. The CA decides the whole profile: only the public key and the
   * one SPIFFE URI SAN are taken from the CSR, and only after checking that the SAN is
   * exactly `identity`. Everything else the CSR asks for (subject, other extensions) is ignored.
   */
  issue(csrPem: string, opts: IssueOptions): IssuedCert {
    const now = opts.now ?? new Date();
    const ttl = opts.ttlMs ?? DEFAULT_LEAF_TTL_MS;
    if (!(ttl > 0) || ttl > this.maxTtlMs)
      throw new PkiError('INVALID_TTL', `ttl must be between 1 ms and ${this.maxTtlMs} ms, got ${ttl}`);
    const want = toSpiffeId(opts.identity);
    if (want.id.trustDomain !== this.trustDomain)
      throw new PkiError('TRUST_DOMAIN_MISMATCH', `identity ${want.uri} is not in this CA's trust domain "${this.trustDomain}"`);
    if (now < this.notBefore || now > this.notAfter)
      throw new PkiError('CA_NOT_VALID', `the CA certificate is not valid at ${now.toISOString()} (valid ${this.notBefore.toISOString()} to ${this.notAfter.toISOString()})`);

    // Refuses oversized CSRs and keys outside the accepted set before verifying (csr-key-policy.ts).
    const csr = readCsr(csrPem);
    if (!csr.signatureValid) throw new PkiError('CSR_INVALID_SIGNATURE', 'the CSR signature does not verify with its public key');
    const { uris, dnsNames, ips, emails, other } = csr.sans;
    if (dnsNames.length + ips.length + emails.length + other > 0 || uris.length > 1)
      throw new PkiError(
        'CSR_EXTRA_SANS',
        `the CSR must request exactly one URI SAN; it also asks for ${JSON.stringify({ uris, dnsNames, ips, emails, other })}`,
      );
    if (uris.length === 0) throw new PkiError('CSR_MISSING_SAN', 'the CSR requests no URI SAN');
    let requestedTd: string;
    try {
      requestedTd = parseSpiffeUri(uris[0]).trustDomain;
    } catch (e) {
      throw new PkiError('CSR_IDENTITY_MISMATCH', `the CSR's URI SAN is not a SPIFFE ID: ${(e as Error).message}`, { cause: e });
    }
    if (requestedTd !== this.trustDomain)
      throw new PkiError('TRUST_DOMAIN_MISMATCH', `the CSR asks for ${uris[0]}, outside trust domain "${this.trustDomain}"`);
    if (uris[0] !== want.uri) throw new PkiError('CSR_IDENTITY_MISMATCH', `the CSR asks for ${uris[0]} but the caller is ${want.uri}`);

    const { notBefore, notAfter } = validity(now, ttl, this.notAfter);
    const cert = forge.pki.createCertificate();
    cert.publicKey = csr.publicKey;
    cert.serialNumber = randomSerial();
    cert.validity.notBefore = notBefore;
    cert.validity.notAfter = notAfter;
    cert.setSubject([]);
    cert.setIssuer(this.cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', critical: true, cA: false },
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.keyId },
      { name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: want.uri }] },
      // The value given whole: forge's own nsComment writer stops at 128 characters.
      ...(opts.certifyState === undefined || !/^[\x20-\x7e]{1,1000}$/.test(opts.certifyState)
        ? []
        : [{ id: CERTIFY_STATE_OID, critical: false, value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.IA5STRING, false, opts.certifyState) }]),
    ]);
    cert.sign(asForgeKey(this.signer), forge.md.sha256.create());
    return {
      certPem: forge.pki.certificateToPem(cert),
      chainPems: [...this.issuedChainPems],
      notBefore,
      notAfter,
      serial: cert.serialNumber,
      spiffeId: want.uri,
    };
  }
}

function safeVerify(issuer: forge.pki.Certificate, child: forge.pki.Certificate): boolean {
  try {
    return issuer.verify(child);
  } catch {
    return false;
  }
}
