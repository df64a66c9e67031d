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

/** The verified peer identity of an mTLS socket ('' if it presented no valid SVID). */
export function peerSpiffeId(socket: TLSSocket): string {
  if (!socket.authorized) return '';
  return spiffeIdOf(socket.getPeerX509Certificate());
}
