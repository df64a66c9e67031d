/**
 * Which CSRs the CA will look at, decided with cheap checks before the CSR's signature is
 * verified. The verification runs on node-forge's pure-JS big integers, on the control
 * plane's event loop, and an RSA verification costs one modular exponentiation by the
 * public exponent: a 4096-bit modulus with a 4096-bit exponent took 628 ms, 8192/8192
 * 4.5 s, in which the control plane answered nothing (liveness, endpoint pushes). Within
 * the bounds below the worst case (4096-bit modulus, e = 2^31 - 1) is ~6 ms and a
 * 2048-bit key with e = 65537 ~2.5 ms.
 *
 * Accepted: RSA (rsaEncryption) keys only, as the CA can only put RSA keys into the
 * certificates it issues (node-forge encodes no other SubjectPublicKeyInfo; docs/pki.md,
 * "Not done yet"), with
 *  - a modulus of 2048 to 4096 bits: 2048 is the floor Istio and NIST SP 800-131A set, and
 *    Wren's proxies make 2048-bit keys (keys.ts); 4096 is the largest size in common use
 *    (the largest Istio's CA generates); larger keys only cost time;
 *  - an odd modulus: RFC 8017 §3.1 defines n as a product of odd primes;
 *  - an odd public exponent with 3 <= e <= 2^31 - 1. RFC 8017 §3.1 asks for e in [3, n - 1]
 *    with gcd(e, λ(n)) = 1; λ(n) is even, so e is odd. The upper bound is Go's
 *    crypto/rsa (checkPub: "public exponent too large" above 1<<31 - 1), which
 *    crypto/x509 applies to every RSA key it parses, so Istio's and Linkerd's CAs and
 *    proxies would refuse such a key too. e = 1 makes the "signature" the padded digest
 *    itself: a CSR signed with no private key (the adversarial run's B4), and a
 *    certificate anyone can use.
 * Everything else (ECDSA, Ed25519, RSASSA-PSS keys, other sizes and exponents) is
 * refused with a PkiError naming what was found.
 */
import forge from 'node-forge';
import { PkiError } from './errors.js';

const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;
/** Go's crypto/rsa bound on e, 2^31 - 1 (the largest int32): at most 31 bits. */
const MAX_RSA_EXPONENT_BITS = 31;
/**
 * PEM characters read at most. A CSR for a 4096-bit key with one SPIFFE URI SAN is ~1.7 KB
 * of PEM; the bound leaves room for attributes the CA ignores and keeps the DER parse of a
 * hostile request to a fraction of a millisecond (gRPC would otherwise let 4 MiB through).
 */
export const MAX_CSR_PEM_LENGTH = 8192;

const RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
/** Names for refusals (RFC 5480 §2.1.1.1, RFC 8410 §3, RFC 4055 §1.2). */
const KEY_ALGORITHMS: Readonly<Record<string, string>> = {
  [EC_PUBLIC_KEY]: 'ECDSA', '1.2.840.113549.1.1.10': 'RSASSA-PSS', '1.3.101.112': 'Ed25519', '1.3.101.113': 'Ed448',
};
const CURVES: Readonly<Record<string, string>> = { '1.2.840.10045.3.1.7': 'P-256', '1.3.132.0.34': 'P-384', '1.3.132.0.35': 'P-521' };

const ACCEPTED = `RSA keys of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits with an odd public exponent from 3 to 2^31-1`;

function child(node: forge.asn1.Asn1 | undefined, i: number): forge.asn1.Asn1 | undefined {
  return node && Array.isArray(node.value) ? node.value[i] : undefined;
}

function oidOf(node: forge.asn1.Asn1 | undefined): string | null {
  if (!node || node.type !== forge.asn1.Type.OID || typeof node.value !== 'string') return null;
  return forge.asn1.derToOid(node.value);
}

/**
 * The key algorithm of a parsed CertificationRequest (RFC 2986 §4.1: CertificationRequest ->
 * certificationRequestInfo -> subjectPKInfo -> algorithm), before node-forge reads the key:
 * forge only reads RSA keys and would otherwise refuse an ECDSA CSR as "malformed".
 */
export function checkCsrKeyAlgorithm(csr: forge.asn1.Asn1): void {
  const algorithm = child(child(child(csr, 0), 2), 0);
  const oid = oidOf(child(algorithm, 0));
  if (oid === null) throw new PkiError('CSR_MALFORMED', 'the CSR has no SubjectPublicKeyInfo algorithm');
  if (oid === RSA_ENCRYPTION) return;
  const name = KEY_ALGORITHMS[oid] ?? `algorithm ${oid}`;
  const curveOid = oid === EC_PUBLIC_KEY ? oidOf(child(algorithm, 1)) : null;
  const curve = curveOid ? ` ${CURVES[curveOid] ?? curveOid}` : '';
  throw new PkiError('CSR_UNSUPPORTED_KEY', `the CSR's key is ${name}${curve}; this CA signs ${ACCEPTED}`);
}

/** The RSA bounds above, on the key node-forge read from the CSR. */
export function checkCsrRsaKey(key: forge.pki.rsa.PublicKey): void {
  const bits = key.n.bitLength();
  if (bits < MIN_RSA_BITS) throw new PkiError('CSR_WEAK_KEY', `RSA keys must have at least ${MIN_RSA_BITS} bits, got ${bits}`);
  if (bits > MAX_RSA_BITS) throw new PkiError('CSR_UNSUPPORTED_KEY', `the CSR's RSA key has ${bits} bits; this CA signs ${ACCEPTED}`);
  if (!key.n.testBit(0)) throw new PkiError('CSR_UNSUPPORTED_KEY', `the CSR's RSA modulus is even, so not a product of two odd primes (RFC 8017 §3.1); this CA signs ${ACCEPTED}`);
  const e = key.e;
  // By its length first: the exponent may have thousands of bits, and intValue() keeps 32 of them.
  if (e.bitLength() > MAX_RSA_EXPONENT_BITS)
    throw new PkiError('CSR_UNSUPPORTED_KEY', `the CSR's RSA public exponent has ${e.bitLength()} bits (Go's crypto/rsa refuses more than 2^31-1); this CA signs ${ACCEPTED}`);
  const value = e.intValue();
  if (value < 3) throw new PkiError('CSR_WEAK_KEY', `the CSR's RSA public exponent is ${value}: under 3 (RFC 8017 §3.1) it proves no private key; this CA signs ${ACCEPTED}`);
  if (value % 2 === 0) throw new PkiError('CSR_UNSUPPORTED_KEY', `the CSR's RSA public exponent ${value} is even, so not invertible mod λ(n) (RFC 8017 §3.1); this CA signs ${ACCEPTED}`);
}
