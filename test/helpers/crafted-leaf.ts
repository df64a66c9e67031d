import forge from 'node-forge';
import { generateKeyPair } from '../../certs/keys.js';
import { asForgeKey, nodeRsaSigner } from '../../certs/signer.js';

/** A subjectAltName entry as node-forge writes it (6: URI, 2: DNS, 7: IP). */
export type AltName = { type: number; value?: string; ip?: string };

export interface CraftOptions {
  /** basicConstraints CA:true (keyCertSign comes with it). */
  readonly ca?: boolean;
  readonly keyCertSign?: boolean;
  /** More keyUsage bits (cRLSign...). */
  readonly ku?: Readonly<Record<string, boolean>>;
  /** Extensions as they are (an OID and its DER value). */
  readonly extra?: readonly { id: string; critical?: boolean; value: string }[];
  /** Hex serial number (default 01). */
  readonly serial?: string;
}

/**
 * A leaf the given root signs exactly as asked (SANs, CA flag, key usages, extra
 * extensions): what a CA of the bundle without the X509-SVID profile the mesh CA keeps to
 * could issue (cert-manager, an operator's CA for `tls:` files). Valid from a minute ago
 * for an hour; RSA key; signed SHA-256, so OpenSSL verifies the chain.
 */
export function craftLeaf(root: { readonly certPem: string; readonly keyPem: string }, altNames: readonly AltName[], o: CraftOptions = {}): { keyPem: string; certPem: string } {
  const keyPem = generateKeyPair().privateKeyPem;
  const k = forge.pki.privateKeyFromPem(keyPem);
  const c = forge.pki.createCertificate();
  c.publicKey = forge.pki.setRsaPublicKey(k.n, k.e);
  c.serialNumber = o.serial ?? '01';
  c.validity.notBefore = new Date(Date.now() - 60_000);
  c.validity.notAfter = new Date(Date.now() + 3_600_000);
  c.setSubject([]);
  c.setIssuer(forge.pki.certificateFromPem(root.certPem).subject.attributes);
  c.setExtensions([
    { name: 'basicConstraints', critical: true, cA: o.ca === true },
    { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true, ...(o.ca || o.keyCertSign ? { keyCertSign: true } : {}), ...o.ku },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', critical: true, altNames: [...altNames] },
    ...(o.extra ?? []),
  ]);
  c.sign(asForgeKey(nodeRsaSigner(root.keyPem)), forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(c) };
}
