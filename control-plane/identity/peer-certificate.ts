import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { parseSpiffeId, spiffeIdOfLeaf } from '../../certs/index.js';
import { parseExtensions } from '../../certs/x509.js';
import type { ClientAnchors } from './client-anchors.js';

/** A proxy's workload identity, proven by the client certificate of its TLS connection. */
export interface PeerIdentity {
  readonly spiffeId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The certificate's notAfter (epoch ms): a stream bound to it ends then. */
  readonly notAfterMs: number;
  /** Lower-case hex, for logs (never the certificate itself). */
  readonly serial: string;
  /** The Certify limit's state the certificate carries (certs/x509.ts CERTIFY_STATE_OID), or null. */
  readonly certifyState?: string | null;
}

/** Why a call carries no usable identity. Also the `reason` label of the refusal metrics. */
export type PeerRefusal = 'no-client-certificate' | 'bad-client-certificate' | 'untrusted-client-certificate';

/** `anchor`: fingerprint of the current trust anchor the certificate chains to; `certificate`: the leaf, to re-check when the bundle changes. */
export type PeerAuth =
  | { readonly ok: true; readonly peer: PeerIdentity; readonly anchor: string; readonly certificate: X509Certificate }
  | { readonly ok: false; readonly reason: PeerRefusal; readonly detail: string };

/**
 * The identity a gRPC call's client certificate proves, or why there is none.
 *
 * The server asks every client for a certificate but does not reject the handshake
 * without one (control-plane/identity/serving-identity.ts: a proxy's first Certify has
 * none to show), so node:tls verifies a presented chain against the server's `ca` (every
 * anchor of the current trust bundle) and leaves the verdict on the socket. grpc-js's
 * `getAuthContext()` hands out the peer certificate only when that verification passed
 * (`socket.authorized`), so "no certificate" and "a certificate that does not chain to a
 * current anchor (another CA, expired)" both arrive here as no certificate.
 *
 * That verdict is the handshake's: a connection made before the bundle dropped a root
 * keeps reporting its certificate as verified for every later call on it. So the leaf
 * must also chain, now, to an anchor of the current bundle (client-anchors.ts;
 * 'untrusted-client-certificate' otherwise), and be an X509-SVID for a workload of our
 * trust domain.
 */
export function peerIdentityOf(
  call: { getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null },
  trustDomain: string,
  anchors: Pick<ClientAnchors, 'anchorOf'>,
): PeerAuth {
  const ctx = call.getAuthContext();
  const cert = ctx?.transportSecurityType === 'ssl' ? ctx.sslPeerCertificate : undefined;
  if (!cert?.raw) return { ok: false, reason: 'no-client-certificate', detail: 'no client certificate that chains to a current trust anchor' };
  let spiffeId: string;
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert.raw);
  } catch (e) {
    return { ok: false, reason: 'bad-client-certificate', detail: `the client certificate cannot be parsed: ${(e as Error).message}` };
  }
  const anchor = anchors.anchorOf(certificate);
  if (anchor === null) return { ok: false, reason: 'untrusted-client-certificate', detail: 'the client certificate does not chain to an anchor of the current trust bundle' };
  try {
    spiffeId = spiffeIdOfLeaf(cert.raw);
    const id = parseSpiffeId(spiffeId);
    if (id.trustDomain !== trustDomain) return { ok: false, reason: 'bad-client-certificate', detail: `the client certificate is for trust domain "${id.trustDomain}", not "${trustDomain}"` };
    const notAfterMs = new Date(cert.valid_to).getTime();
    return { ok: true, anchor, certificate, peer: { spiffeId, namespace: id.namespace, serviceAccount: id.serviceAccount, notAfterMs: Number.isFinite(notAfterMs) ? notAfterMs : 0, serial: String(cert.serialNumber ?? '').toLowerCase(), certifyState: parseExtensions(cert.raw).certifyState ?? null } };
  } catch (e) {
    return { ok: false, reason: 'bad-client-certificate', detail: `the client certificate is not a workload X509-SVID: ${(e as Error).message}` };
  }
}
