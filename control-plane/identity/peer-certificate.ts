import type { PeerCertificate } from 'node:tls';
import { parseSpiffeId, spiffeIdOfCert } from '../../certs/index.js';

/** A proxy's workload identity, proven by the client certificate of its TLS connection. */
export interface PeerIdentity {
  readonly spiffeId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The certificate's notAfter (epoch ms): a stream bound to it ends then. */
  readonly notAfterMs: number;
  /** Lower-case hex, for logs (never the certificate itself). */
  readonly serial: string;
}

/** Why a call carries no usable identity. Also the `reason` label of the refusal metrics. */
export type PeerRefusal = 'no-client-certificate' | 'bad-client-certificate';

export type PeerAuth = { readonly ok: true; readonly peer: PeerIdentity } | { readonly ok: false; readonly reason: PeerRefusal; readonly detail: string };

/**
 * The identity a gRPC call's client certificate proves, or why there is none.
 *
 * The server asks every client for a certificate but does not reject the handshake
 * without one (control-plane/identity/serving-identity.ts: a proxy's first Certify has
 * none to show), so node:tls verifies a presented chain against the server's `ca` (every
 * anchor of the current trust bundle) and leaves the verdict on the socket. grpc-js's
 * `getAuthContext()` hands out the peer certificate only when that verification passed
 * (`socket.authorized`), so "no certificate" and "a certificate that does not chain to a
 * current anchor (another CA, expired)" both arrive here as no certificate. What is left
 * to check is that the leaf is an X509-SVID for a workload of our trust domain.
 */
export function peerIdentityOf(call: { getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null }, trustDomain: string): PeerAuth {
  const ctx = call.getAuthContext();
  const cert = ctx?.transportSecurityType === 'ssl' ? ctx.sslPeerCertificate : undefined;
  if (!cert?.raw) return { ok: false, reason: 'no-client-certificate', detail: 'no client certificate that chains to a current trust anchor' };
  let spiffeId: string;
  try {
    spiffeId = spiffeIdOfCert(cert.raw);
    const id = parseSpiffeId(spiffeId);
    if (id.trustDomain !== trustDomain) return { ok: false, reason: 'bad-client-certificate', detail: `the client certificate is for trust domain "${id.trustDomain}", not "${trustDomain}"` };
    const notAfterMs = new Date(cert.valid_to).getTime();
    return { ok: true, peer: { spiffeId, namespace: id.namespace, serviceAccount: id.serviceAccount, notAfterMs: Number.isFinite(notAfterMs) ? notAfterMs : 0, serial: String(cert.serialNumber ?? '').toLowerCase() } };
  } catch (e) {
    return { ok: false, reason: 'bad-client-certificate', detail: `the client certificate is not a workload X509-SVID: ${(e as Error).message}` };
  }
}
