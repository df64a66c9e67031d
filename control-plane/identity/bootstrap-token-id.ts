import { scrypt, scryptSync } from 'node:crypto';

/**
 * What stands for a bootstrap token in its Certify limit key (certify-limiter.ts keyOf:
 * `bootstrap-token NS/SA ID`), which every certificate signed for the token carries and every
 * TLS peer of its holders reads: 128 bits of scrypt (RFC 7914) of the token, salted with the
 * identity it proves. The same at every replica and under every CA. It was the CA's keyed
 * digest (HMAC under a key derived from the CA's private key), so when the issuer rotated (a
 * new key) the token's next Certify was a key of its own beside the one its certificates from
 * before carried and renewed from: two buckets, two budgets, per rotation (adv59). A plain hash
 * would let a peer test guesses of a weak token against the key at hash speed; scrypt at these
 * costs (N 2^14, r 8: 16 MiB and some tens of ms a guess) makes each guess as dear as
 * a login's. Tokens are at least 16 characters (bootstrap-token-authenticator.ts); make
 * them random (`openssl rand -hex 32`) and no guess gets anywhere.
 */
const SCRYPT = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const ID_BYTES = 16;
const salt = (namespace: string, serviceAccount: string): string => `wren certify-limit bootstrap-token v2 ${namespace}/${serviceAccount}`;

/** The id, off the event loop (libuv's pool): what the bootstrap authenticator computes, once per token. */
export function bootstrapTokenId(namespace: string, serviceAccount: string, token: string): Promise<string> {
  return new Promise((resolve, reject) => scrypt(token, salt(namespace, serviceAccount), ID_BYTES, SCRYPT, (e, key) => (e ? reject(e) : resolve(key.toString('hex')))));
}

/** The same, computed here (a principal that came without one). */
export function bootstrapTokenIdSync(namespace: string, serviceAccount: string, token: string): string {
  return scryptSync(token, salt(namespace, serviceAccount), ID_BYTES, SCRYPT).toString('hex');
}
