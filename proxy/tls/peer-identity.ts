import type { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';

/**
 * The SPIFFE ID of a certificate: its single URI SAN (X.509-SVID spec, section 2:
 * "An X.509 SVID MUST contain exactly one URI SAN"). Anything else yields ''.
 */
export function spiffeIdOf(cert: X509Certificate | undefined): string {
  const san = cert?.subjectAltName;
  if (!san) return '';
  const uris = san
    .split(/,\s*/)
    .filter((e) => e.startsWith('URI:'))
    .map((e) => e.slice(4));
  return uris.length === 1 && uris[0].startsWith('spiffe://') ? uris[0] : '';
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
