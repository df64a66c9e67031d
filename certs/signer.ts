/**
 * RSA signatures through node:crypto (OpenSSL) instead of node-forge's pure-JS big
 * integers, which take over a second per 2048-bit signature under jest. forge's
 * `cert.sign(key, md)` / `csr.sign(key, md)` only call `key.sign(md)` with the digest
 * of the to-be-signed bytes, so we hand them an object whose `sign` produces the
 * RSASSA-PKCS1-v1_5 signature (RFC 8017 §8.2.1): DigestInfo(sha256, digest) padded with
 * block type 1 and raised to the private exponent, which is what `privateEncrypt` with
 * RSA_PKCS1_PADDING computes.
 */
import { constants, createPrivateKey, privateEncrypt, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

const SHA256_OID = '2.16.840.1.101.3.4.2.1';

export interface ForgeSigner {
  sign(md: forge.md.MessageDigest): string;
}

export function nodeRsaSigner(keyPem: string | KeyObject): ForgeSigner {
  const key = typeof keyPem === 'string' ? createPrivateKey(keyPem) : keyPem;
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`only RSA keys can sign here, got ${key.asymmetricKeyType}`);
  return {
    sign(md) {
      if (md.algorithm !== 'sha256') throw new Error(`only sha256 signatures are produced, got ${md.algorithm}`);
      const { asn1 } = forge;
      const digestInfo = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
          asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(SHA256_OID).getBytes()),
          asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
        ]),
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, md.digest().getBytes()),
      ]);
      const der = Buffer.from(asn1.toDer(digestInfo).getBytes(), 'binary');
      return privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, der).toString('binary');
    },
  };
}

/** Typed as forge wants it; forge only ever calls `sign` on it. */
export function asForgeKey(s: ForgeSigner): forge.pki.rsa.PrivateKey {
  return s as unknown as forge.pki.rsa.PrivateKey;
}
