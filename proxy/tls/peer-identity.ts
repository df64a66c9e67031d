import type { TLSSocket } from 'node:tls';
import { parseSpiffeUri } from '../../certs/spiffe.js';
import { svidFacts } from './svid-der.js';

/**
 * The SPIFFE ID of a peer's X509-SVID, or '' when the certificate is not one. OpenSSL has
 * verified the chain to the trust bundle (expiry, signatures, CA:true and pathLen on the
 * issuers, the TLS purpose's extKeyUsage); what it does not check is the SVID profile of
 * the leaf, which the mesh CA keeps to when it signs (certs/ca.ts) but another CA in the
 * bundle (shared with another system, cert-manager, an operator's CA for `tls:` files)
 * need not. So, as the X509-SVID spec asks of validators (§5.2) and go-spiffe's
 * x509svid.Verify does, the leaf has an identity only when:
 *  - it is not a CA (basicConstraints CA false) and its keyUsage has neither keyCertSign
 *    nor cRLSign (§5.2): OpenSSL takes a CA certificate as the end of a chain;
 *  - it has exactly one URI SAN (§2);
 *  - that URI is a well-formed SPIFFE ID with a path (SPIFFE-ID §2: scheme `spiffe` in
 *    lower case, a lower-case trust domain, no port, userinfo, query, fragment or
 *    percent-encoding, no empty, "." or ".." segment; certs/spiffe.ts). It becomes the
 *    principal authorization matches and the `URI=` of x-forwarded-client-cert, whose
 *    `;`-separated fields a URI like `…/sa/b;URI=spiffe://…/sa/admin` would add to.
 * Read from the DER once per connection (svid-der.ts): Node's X509Certificate exposes
 * neither keyUsage bits nor the SANs as values.
 */
export function spiffeIdOf(cert: { readonly raw?: Buffer } | undefined): string {
  if (!cert?.raw) return '';
  const facts = svidFacts(cert.raw);
  if (facts === null || facts.ca || facts.signs || facts.uris.length !== 1) return '';
  const uri = facts.uris[0];
  try {
    return parseSpiffeUri(uri).segments.length > 0 ? uri : '';
  } catch {
    return '';
  }
}

const cache = new WeakMap<TLSSocket, string>();

/**
 * The verified peer identity of an mTLS socket ('' if it presented no valid SVID).
 * Parsed once per connection: every stream on a session shares the same peer.
 */
export function peerSpiffeId(socket: TLSSocket): string {
  let id = cache.get(socket);
  if (id === undefined) {
    id = socket.authorized ? spiffeIdOf(socket.getPeerX509Certificate()) : '';
    cache.set(socket, id);
  }
  return id;
}

/**
 * The trust domain of a SPIFFE ID (`spiffe://TD/...`, SPIFFE ID spec section 2.1), or ''
 * for anything else. Trust domains are lower case (the spec's allowed characters), so
 * comparing them is comparing strings.
 */
export function trustDomainOf(id: string): string {
  if (!id.startsWith('spiffe://')) return '';
  const end = id.indexOf('/', 9);
  return end < 0 ? id.slice(9) : id.slice(9, end);
}
