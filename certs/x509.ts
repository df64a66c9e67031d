/**
 * Reading certificates: node:crypto's X509Certificate (OpenSSL) for parsing, dates,
 * fingerprints and signature checks, plus a small DER walk with forge's ASN.1 reader for
 * the extensions Node does not expose (key usage bits, basic constraints, SANs as
 * structured values). Works for any key type, not only the RSA keys we issue.
 */
import { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.js';

const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
} as const;
/**
 * The leaf extension the control plane's Certify limit writes its state into
 * (control-plane/identity/certify-limiter.ts: the bucket a certificate is charged to and what
 * was left in it), so that any replica sharing the CA reads it back from a renewal's client
 * certificate: Netscape's comment extension (nsComment), an IA5String of free text that
 * OpenSSL's own configuration writes and every verifier ignores, never critical (RFC 5280
 * §4.2). Not a private OID: Wren has no enterprise number, and one made from a UUID (2.25.x,
 * X.667) has a 128-bit arc that node-forge cannot write and Go's crypto/x509 refuses to parse,
 * which would make the whole certificate unreadable to a Go peer.
 */
export const CERTIFY_STATE_OID = '2.16.840.1.113730.1.13';
export const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2' } as const;
/** Extensions whose meaning verifyChain enforces; any other critical extension fails validation. */
const UNDERSTOOD = new Set<string>(Object.values(OID));

const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;
export type KeyUsage = (typeof KEY_USAGE_BITS)[number];

export interface CertExtensions {
  basicConstraints?: { critical: boolean; ca: boolean; pathLen?: number };
  keyUsage?: { critical: boolean; usages: KeyUsage[] };
  extKeyUsage?: string[];
  san?: { critical: boolean; uris: string[]; dnsNames: string[]; ips: string[]; emails: string[]; other: number };
  subjectKeyIdentifier?: string;
  authorityKeyIdentifier?: string;
  /** The CERTIFY_STATE_OID (nsComment) extension's text, when present and not critical. */
  certifyState?: string;
  /** OIDs of critical extensions not in the list above. */
  unknownCritical: string[];
}

export interface ReadCert {
  readonly x509: X509Certificate;
  readonly ext: CertExtensions;
  readonly pem: string | Buffer;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block in a PEM text (a bundle or leaf + chain file), in order. */
export function splitPemCerts(text: string): string[] {
  return (text.match(PEM_BLOCK) ?? []).map((b) => b + '\n');
}

export function readCert(pem: string | Buffer): ReadCert {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch (e) {
    throw new PkiError('INVALID_PEM', `not a certificate PEM: ${(e as Error).message}`, { cause: e });
  }
  return { x509, ext: parseExtensions(x509.raw), pem };
}

const hex = (bytes: string): string => forge.util.bytesToHex(bytes);
// The typings omit fromDer's options object and util.bytesToIP; both exist in node-forge 1.x.
const fromDer = forge.asn1.fromDer as unknown as (der: string | forge.util.ByteStringBuffer, opts: { decodeBitStrings: boolean }) => forge.asn1.Asn1;
const bytesToIP = (forge.util as unknown as { bytesToIP(b: string): string | null }).bytesToIP;

export function parseExtensions(der: Buffer): CertExtensions {
  const out: CertExtensions = { unknownCritical: [] };
  const cert = fromDer(forge.util.createBuffer(der.toString('binary')), { decodeBitStrings: false });
  const tbs = (cert.value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[];
  const wrapper = tbs.find((n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  if (!wrapper) return out;
  const list = (wrapper.value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[];
  for (const e of list) {
    const parts = e.value as forge.asn1.Asn1[];
    const oid = forge.asn1.derToOid(parts[0].value as string);
    const critical = parts.length === 3 && (parts[1].value as string).charCodeAt(0) !== 0;
    // Only the extensions read below are decoded. Another's value is opaque here, as in
    // OpenSSL and Go's crypto/x509: a private extension whose bytes are not DER (or a
    // Certificate Transparency list, decoded for nothing) made the whole certificate
    // unreadable, and a sidecar's peer (peer-identity.ts) lose the identity OpenSSL had
    // verified the chain of. A critical one is still reported (unknownCritical).
    if (oid === CERTIFY_STATE_OID && !critical) {
      // Read only if it is what the CA writes (an IA5String); anything else is ignored as an unknown extension would be.
      try {
        const v = fromDer(parts[parts.length - 1].value as string, { decodeBitStrings: false });
        if (v.tagClass === forge.asn1.Class.UNIVERSAL && v.type === forge.asn1.Type.IA5STRING) out.certifyState = v.value as string;
      } catch {
        // Not DER: as an unknown extension, opaque.
      }
      continue;
    }
    if (!UNDERSTOOD.has(oid)) {
      if (critical) out.unknownCritical.push(oid);
      continue;
    }
    const inner = parts[parts.length - 1].value as string;
    const value = fromDer(inner, { decodeBitStrings: false });
    if (oid === OID.basicConstraints) {
      const seq = value.value as forge.asn1.Asn1[];
      let ca = false;
      let pathLen: number | undefined;
      for (const v of seq) {
        if (v.type === forge.asn1.Type.BOOLEAN) ca = (v.value as string).charCodeAt(0) !== 0;
        else if (v.type === forge.asn1.Type.INTEGER) pathLen = forge.asn1.derToInteger(v.value as string);
      }
      out.basicConstraints = { critical, ca, ...(pathLen === undefined ? {} : { pathLen }) };
    } else if (oid === OID.keyUsage) {
      const bytes = value.value as string; // first byte: number of unused bits
      const usages: KeyUsage[] = [];
      KEY_USAGE_BITS.forEach((name, i) => {
        const byte = bytes.charCodeAt(1 + (i >> 3));
        if (!Number.isNaN(byte) && byte & (0x80 >> (i & 7))) usages.push(name);
      });
      out.keyUsage = { critical, usages };
    } else if (oid === OID.extKeyUsage) {
      out.extKeyUsage = (value.value as forge.asn1.Asn1[]).map((v) => forge.asn1.derToOid(v.value as string));
    } else if (oid === OID.subjectAltName) {
      const san = { critical, uris: [] as string[], dnsNames: [] as string[], ips: [] as string[], emails: [] as string[], other: 0 };
      for (const gn of value.value as forge.asn1.Asn1[]) {
        const v = gn.value as string;
        if (gn.tagClass !== forge.asn1.Class.CONTEXT_SPECIFIC) san.other++;
        else if (gn.type === 6) san.uris.push(v);
        else if (gn.type === 2) san.dnsNames.push(v);
        else if (gn.type === 1) san.emails.push(v);
        else if (gn.type === 7) san.ips.push(bytesToIP(v) ?? hex(v));
        else san.other++;
      }
      out.san = san;
    } else if (oid === OID.subjectKeyIdentifier) {
      out.subjectKeyIdentifier = hex(value.value as string);
    } else if (oid === OID.authorityKeyIdentifier) {
      const kid = (value.value as forge.asn1.Asn1[]).find((v) => v.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && v.type === 0);
      if (kid) out.authorityKeyIdentifier = hex(kid.value as string);
    }
  }
  return out;
}

/** `CN=a, O=b` from Node's multi-line distinguished-name rendering ('' for an empty name, which Node reports as undefined). */
export function dnString(nodeDn: string | undefined): string {
  return (nodeDn ?? '')
    .split('\n')
    .filter((l) => l.length > 0)
    .join(', ');
}
