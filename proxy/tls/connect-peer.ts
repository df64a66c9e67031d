import { connect as tlsConnect, type ConnectionOptions, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { OnReadOpts } from 'node:net';
import { spiffeIdOf, trustDomainOf } from './peer-identity.js';
import type { TlsIdentity } from './tls-identity.js';
import { ProxyError } from '../errors/proxy-error.js';

/**
 * An mTLS connection to a peer sidecar: the workload's certificate and trust bundle (the
 * rotating secure context), and the peer must present exactly `identity`, the SPIFFE ID
 * its endpoint advertises, or, when it advertises none (''), an X509-SVID of this sidecar's
 * own trust domain: PEER_IDENTITY otherwise. The inbound refuses a caller of another trust
 * domain (inbound-listener.ts, foreign-trust-domain); without the same check here, a bundle
 * that also holds another mesh's root let that mesh's workloads answer for an endpoint
 * whose identity the control plane did not name. Identity is the URI SAN (X.509-SVID), not a DNS name, so it is checked in
 * place of the hostname. `alpn`: what this connection will speak (`h2` for the peer
 * session, `http/1.1` for the mesh HTTP/1.1 pool), or the versions of the mesh multiplexer
 * offered, the newest first (the peer picks one: the socket's alpnProtocol). `onread`: decrypted bytes go to its
 * callback in its buffer instead of 'data' events (net.Socket's onread; the HTTP/1.1 pool).
 */
export function connectPeer(tls: TlsIdentity, host: string, port: number, identity: string, alpn: 'h2' | 'http/1.1' | readonly ('wren-mux/2' | 'wren-mux/1')[], onread?: OnReadOpts): TLSSocket {
  // tls.connect takes net.Socket's `onread` when it creates the socket itself (documented
  // in node's tls.connect; @types/node does not declare it).
  const options: ConnectionOptions & { onread?: OnReadOpts } = {
    onread,
    host,
    port,
    secureContext: tls.secureContext,
    ALPNProtocols: typeof alpn === 'string' ? [alpn] : [...alpn],
    rejectUnauthorized: true,
    checkServerIdentity: (_h: string, cert: PeerCertificate) => {
      const got = spiffeIdOf(cert);
      if (identity !== '') return got === identity ? undefined : new ProxyError('PEER_IDENTITY', `expected ${identity}, got ${got || 'none'}`);
      const domain = trustDomainOf(tls.spiffeId);
      return got !== '' && trustDomainOf(got) === domain ? undefined : new ProxyError('PEER_IDENTITY', `expected a workload of trust domain ${domain}, got ${got || 'none'}`);
    },
  };
  return tlsConnect(options);
}
