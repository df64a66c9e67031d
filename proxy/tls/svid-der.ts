/**
 * What the X509-SVID profile check (peer-identity.ts) reads of a leaf certificate, straight
 * from its DER (X.690 §8, §10; RFC 5280 §4.1, §4.2): basicConstraints' cA, keyUsage's
 * keyCertSign and cRLSign bits, and the subjectAltName URIs. The sidecar had read them with
 * node-forge (certs/x509.ts), which loaded that library into every sidecar for this one
 * read: 1.5 MB more heap at start and 1.0-1.5 MB more resident after load, against an aim
 * of 100 MB per sidecar (docs/benchmarks.md, "twenty-seventh session").
 *
 * OpenSSL has verified the chain before this runs, so the bytes are a certificate it
 * parsed; still, every length is checked against its parent's end, and anything that is
 * not DER as expected (indefinite or overlong lengths, a tag out of place, a second
 * extension of the same kind, which RFC 5280 §4.2 forbids) reads as no certificate (null):
 * the peer then has no identity. Other extensions' values are not looked into, as OpenSSL
 * and Go's crypto/x509 treat a private extension as opaque bytes.
 */
export interface SvidFacts {
  readonly ca: boolean;
  /** keyUsage keyCertSign or cRLSign (X509-SVID §5.2: a leaf has neither). */
  readonly signs: boolean;
  /** The uniformResourceIdentifier names of subjectAltName, as their bytes read in Latin-1. */
  readonly uris: readonly string[];
}

const SEQUENCE = 0x30;
const BOOLEAN = 0x01;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const OID = 0x06;
/** tbsCertificate's [3] EXPLICIT extensions. */
const EXTENSIONS = 0xa3;
/** GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String. */
const URI_NAME = 0x86;

/** The extensions read, by their OID's content bytes (2.5.29.19, 2.5.29.15, 2.5.29.17). */
const BASIC_CONSTRAINTS = 0x13;
const KEY_USAGE = 0x0f;
const SUBJECT_ALT_NAME = 0x11;

/** Where the last element read has its content. Reused: one per certificate, no object per element. */
class Tlv {
  start = 0;
  end = 0;

  /** Reads the element at `at`, which must end by `limit`: its tag, or -1 if it does not fit (or is not DER). */
  read(b: Buffer, at: number, limit: number): number {
    if (at + 2 > limit) return -1;
    const tag = b[at];
    // High tag numbers appear nowhere in what is read.
    if ((tag & 0x1f) === 0x1f) return -1;
    let len = b[at + 1];
    let p = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      // 0: indefinite length, not DER; more than 3 bytes: beyond any certificate.
      if (n === 0 || n > 3 || p + n > limit) return -1;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[p++];
    }
    if (p + len > limit) return -1;
    this.start = p;
    this.end = p + len;
    return tag;
  }
}

/** The facts, or null when the bytes are not a certificate as read here. */
export function svidFacts(der: Buffer): SvidFacts | null {
  const t = new Tlv();
  if (t.read(der, 0, der.length) !== SEQUENCE) return null;
  if (t.read(der, t.start, t.end) !== SEQUENCE) return null;
  // tbsCertificate's fields; the extensions are the [3] one, if any.
  const tbsEnd = t.end;
  let at = t.start;
  let extStart = -1;
  let extEnd = -1;
  while (at < tbsEnd) {
    const tag = t.read(der, at, tbsEnd);
    if (tag < 0) return null;
    if (tag === EXTENSIONS) {
      extStart = t.start;
      extEnd = t.end;
    }
    at = t.end;
  }
  let ca = false;
  let signs = false;
  const uris: string[] = [];
  if (extStart < 0) return { ca, signs, uris };
  if (t.read(der, extStart, extEnd) !== SEQUENCE) return null;
  const listEnd = t.end;
  at = t.start;
  let seen = 0;
  while (at < listEnd) {
    // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    if (t.read(der, at, listEnd) !== SEQUENCE) return null;
    const extEndAt = t.end;
    at = t.end;
    if (t.read(der, t.start, extEndAt) !== OID) return null;
    const kind = t.end - t.start === 3 && der[t.start] === 0x55 && der[t.start + 1] === 0x1d ? der[t.start + 2] : -1;
    let tag = t.read(der, t.end, extEndAt);
    if (tag === BOOLEAN) tag = t.read(der, t.end, extEndAt);
    if (tag !== OCTET_STRING || t.end !== extEndAt) return null;
    if (kind !== BASIC_CONSTRAINTS && kind !== KEY_USAGE && kind !== SUBJECT_ALT_NAME) continue;
    const bit = 1 << kind;
    if (seen & bit) return null;
    seen |= bit;
    const valueEnd = t.end;
    const inner = t.read(der, t.start, valueEnd);
    if (inner < 0 || t.end !== valueEnd) return null;
    if (kind === BASIC_CONSTRAINTS) {
      // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }
      if (inner !== SEQUENCE) return null;
      const seqEnd = t.end;
      if (t.start < seqEnd) {
        const first = t.read(der, t.start, seqEnd);
        if (first < 0) return null;
        if (first === BOOLEAN) ca = t.end > t.start && der[t.start] !== 0;
      }
    } else if (kind === KEY_USAGE) {
      // KeyUsage ::= BIT STRING: the first content byte counts the unused bits; bit 5
      // keyCertSign and bit 6 cRLSign are in the first byte of the bits.
      if (inner !== BIT_STRING) return null;
      signs = t.end - t.start >= 2 && (der[t.start + 1] & 0x06) !== 0;
    } else {
      // SubjectAltName ::= SEQUENCE OF GeneralName
      if (inner !== SEQUENCE) return null;
      const namesEnd = t.end;
      let n = t.start;
      while (n < namesEnd) {
        const name = t.read(der, n, namesEnd);
        if (name < 0) return null;
        if (name === URI_NAME) uris.push(der.toString('latin1', t.start, t.end));
        n = t.end;
      }
    }
  }
  return { ca, signs, uris };
}
