/**
 * Workload and CA key pairs: RSA 2048 (Istio's workload default), generated through
 * node-forge, which hands the work to Node's native `crypto.generateKeyPairSync` when it
 * runs under Node (node-forge lib/rsa.js `_detectNodeCrypto`), so a key costs tens of
 * milliseconds rather than seconds of pure-JS prime search. Keys live in memory only:
 * nothing in this module writes them anywhere.
 */
import { generateKeyPair as nodeGenerateKeyPair } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.js';

export interface KeyPairPem {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

export const RSA_BITS = 2048;

export function generateKeyPair(): KeyPairPem {
  const kp = forge.pki.rsa.generateKeyPair({ bits: RSA_BITS, e: 0x10001 });
  return { privateKeyPem: forge.pki.privateKeyToPem(kp.privateKey), publicKeyPem: forge.pki.publicKeyToPem(kp.publicKey) };
}

/**
 * The same key, generated on libuv's thread pool (node:crypto generateKeyPair) so a
 * running proxy does not stall its event loop for the ~50-200 ms a 2048-bit prime
 * search takes when it renews its certificate. PKCS#1 PEM, like generateKeyPair.
 */
export function generateKeyPairAsync(): Promise<KeyPairPem> {
  return new Promise((resolve, reject) =>
    nodeGenerateKeyPair(
      'rsa',
      { modulusLength: RSA_BITS, publicExponent: 0x10001, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } },
      (err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ privateKeyPem, publicKeyPem })),
    ),
  );
}

/** Parses an RSA private key (PKCS#1 or unencrypted PKCS#8 PEM). */
export function privateKeyFromPem(pem: string): forge.pki.rsa.PrivateKey {
  try {
    return forge.pki.privateKeyFromPem(pem);
  } catch (e) {
    throw new PkiError('INVALID_PEM', `not an unencrypted RSA private key PEM: ${(e as Error).message}`, { cause: e });
  }
}

/** The public half of an RSA private key. */
export function publicKeyOf(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return forge.pki.setRsaPublicKey(key.n, key.e);
}

/** True when both keys have the same modulus and exponent. */
export function samePublicKey(a: forge.pki.rsa.PublicKey, b: forge.pki.rsa.PublicKey): boolean {
  return a.n.equals(b.n) && a.e.equals(b.e);
}
