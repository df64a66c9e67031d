import { isIP } from 'node:net';

/**
 * The address a gRPC call comes from (grpc-js's getPeer: `ADDRESS:PORT`, an IPv6 address
 * bracketed or not), an IPv4-mapped IPv6 address as its IPv4; null for loopback or an
 * address it cannot tell. What the per-address shares count by: a plaintext control plane's
 * streams (discovery-server.ts MAX_PLAINTEXT_STREAMS_PER_ADDRESS) and the TokenReviews of
 * Certify calls (token-review-authenticator.ts maxInFlightPerSource). Loopback is not an
 * address to share by: every local client (a test, a sidecar on the same host) is one.
 */
export function sourceAddress(peer: string): string | null {
  const address = peer.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (isIP(address) === 0 || address.startsWith('127.') || address === '::1') return null;
  return address;
}
