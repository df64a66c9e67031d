/**
 * PKCS#10 certificate signing requests carrying one SPIFFE URI SAN in an
 * `extensionRequest` attribute (RFC 2986 §4.1, RFC 2985 §5.4.2). The subject is left
 * empty: the identity lives only in the SAN, as the X509-SVID spec asks, and a SPIFFE ID
 * can be longer than the 64 characters a CN may hold.
 */
import forge from 'node-forge';
import { checkCsrKeyAlgorithm, checkCsrRsaKey, MAX_CSR_PEM_LENGTH } from './csr-key-policy.js';
import { PkiError } from './errors.js';
import { privateKeyFromPem, publicKeyOf } from './keys.js';
import { asForgeKey, nodeRsaSigner } from './signer.js';
import { toSpiffeId, type SpiffeId } from './spiffe.js';

/** GeneralName tags (RFC 5280 §4.2.1.6). */
export const SAN_TYPE = { otherName: 0, email: 1, dns: 2, x400: 3, directoryName: 4, ediParty: 5, uri: 6, ip: 7, registeredId: 8 } as const;

export interface RequestedSans {
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly emails: readonly string[];
  /** otherName, directoryName and the rest: counted, never honoured. */
  readonly other: number;
}

export interface ParsedCsr {
  readonly sans: RequestedSans;
  readonly publicKeyPem: string;
  readonly publicKeyBits: number;
  readonly signatureValid: boolean;
  /** forge object, for the CA. */
  readonly publicKey: forge.pki.rsa.PublicKey;
}

export function createCsr(privateKeyPem: string, id: SpiffeId | string): string {
  const { uri } = toSpiffeId(id);
  const key = privateKeyFromPem(privateKeyPem);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = publicKeyOf(key);
  csr.setSubject([]);
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: SAN_TYPE.uri, value: uri }] }] }]);
  csr.sign(asForgeKey(nodeRsaSigner(privateKeyPem)), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/**
 * Signatures that are no proof of possession: MD5's collisions let a signature made over
 * one request stand for another. Go's crypto/x509 refuses MD5 (and MD2) in
 * CertificateRequest.CheckSignature, so istiod's CA does too; SHA-1 is still accepted there
 * for CSRs, and here. (node-forge reads no MD2 signature: that CSR is CSR_MALFORMED.)
 */
const INSECURE_SIGNATURES: Readonly<Record<string, string>> = { '1.2.840.113549.1.1.4': 'MD5 (md5WithRSAEncryption)' };

interface AltName {
  type: number;
  value?: string;
  ip?: string;
}

/**
 * Parses a CSR and reports every SAN it asks for, across every extensionRequest attribute.
 * Cheap checks come before the costly one (csr-key-policy.ts): the PEM's length, then the
 * key's algorithm, size and exponent, the signature's digest, and only then the signature,
 * which node-forge verifies in pure JS on the event loop.
 */
export function readCsr(pem: string): ParsedCsr {
  if (pem.length > MAX_CSR_PEM_LENGTH)
    throw new PkiError('CSR_TOO_LARGE', `the CSR is ${pem.length} characters of PEM; at most ${MAX_CSR_PEM_LENGTH} are read`);
  let csr: ReturnType<typeof forge.pki.createCertificationRequest>;
  try {
    // What forge.pki.certificationRequestFromPem does, split so the key is checked in between.
    const msg = forge.pem.decode(pem)[0];
    if (msg?.type !== 'CERTIFICATE REQUEST') throw new Error(`expected a CERTIFICATE REQUEST PEM block, got ${msg ? JSON.stringify(msg.type) : 'none'}`);
    const der = forge.asn1.fromDer(msg.body);
    checkCsrKeyAlgorithm(der);
    csr = forge.pki.certificationRequestFromAsn1(der);
  } catch (e) {
    if (e instanceof PkiError) throw e;
    throw new PkiError('CSR_MALFORMED', `cannot parse the CSR (an RSA PKCS#10 PEM is expected): ${(e as Error).message}`, { cause: e });
  }
  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!publicKey || !('n' in publicKey)) throw new PkiError('CSR_MALFORMED', 'the CSR has no RSA public key');
  checkCsrRsaKey(publicKey);
  const insecure = INSECURE_SIGNATURES[(csr as unknown as { signatureOid: string }).signatureOid];
  if (insecure) throw new PkiError('CSR_INVALID_SIGNATURE', `the CSR is signed with ${insecure}, which proves no possession of the key: sign it with SHA-256`);
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const ips: string[] = [];
  const emails: string[] = [];
  let other = 0;
  const attrs = (csr as unknown as { attributes: { name?: string; extensions?: { name?: string; altNames?: AltName[] }[] }[] }).attributes;
  for (const attr of attrs ?? []) {
    for (const ext of attr.extensions ?? []) {
      if (ext.name !== 'subjectAltName') continue;
      for (const n of ext.altNames ?? []) {
        if (n.type === SAN_TYPE.uri) uris.push(String(n.value));
        else if (n.type === SAN_TYPE.dns) dnsNames.push(String(n.value));
        else if (n.type === SAN_TYPE.ip) ips.push(n.ip ?? String(n.value));
        else if (n.type === SAN_TYPE.email) emails.push(String(n.value));
        else other++;
      }
    }
  }
  let signatureValid: boolean;
  try {
    signatureValid = csr.verify();
  } catch {
    // forge throws on a malformed signature block; that is a bad signature too.
    signatureValid = false;
  }
  return {
    sans: { uris, dnsNames, ips, emails, other },
    publicKeyPem: forge.pki.publicKeyToPem(publicKey),
    publicKeyBits: publicKey.n.bitLength(),
    signatureValid,
    publicKey,
  };
}
