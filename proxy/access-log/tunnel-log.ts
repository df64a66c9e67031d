import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ServerHttp2Stream } from 'node:http2';
import type { AccessLog } from './access-log.js';
import { tcpEntry } from './entry.js';
import { peerSpiffeId } from '../tls/peer-identity.js';
import { endpointKey } from '../../contract/model.js';
import type { ProxyError } from '../errors/proxy-error.js';

/** The line of one inbound opaque connection to the app, once it has closed or failed. */
export interface TunnelLine {
  closed(bytesReceived: number, bytesSent: number): void;
  failed(e: ProxyError): void;
  /** Refused by the authorization policy before anything reached the app. */
  denied(reason: string): void;
}

/**
 * For inbound/app-tunnel.ts: a peer's CONNECT stream (its downstream the peer sidecar's
 * session, with its SPIFFE ID) or a plaintext connection on a PERMISSIVE port, spliced to
 * the app's port. null when this connection is not logged (off, or not sampled).
 */
export function inboundTunnelLine(log: AccessLog | undefined, down: Duplex, appAddress: string, port: number): TunnelLine | null {
  if (!log?.sampled()) return null;
  const startedAt = log.clock.now();
  const session = (down as Partial<ServerHttp2Stream>).session;
  const sock = (session ? session.socket : down) as Socket | undefined;
  const identity = session && sock ? peerSpiffeId(sock as TLSSocket) : '';
  const downstream = { address: sock?.remoteAddress ?? '', port: sock?.remotePort ?? 0, identity };
  const downstreamLocal = sock?.localAddress ? { address: sock.localAddress, port: sock.localPort ?? 0 } : undefined;
  const write = (proxyError: string | undefined, bytesReceived: number, bytesSent: number, terminationDetails?: string) =>
    log.write(
      tcpEntry({
        direction: 'inbound', startedAt, endedAt: log.clock.now(), downstream, downstreamLocal,
        upstreamHost: endpointKey({ address: appAddress, port }), upstreamCluster: `inbound|${port}||`, upstreamIdentity: null, upstreamLocal: null,
        proxyError, attempts: 1, bytesReceived, bytesSent, terminationDetails,
      }),
    );
  return {
    closed: (r, s) => write(undefined, r, s),
    failed: (e) => write(e.label, 0, 0),
    // Envoy's RBAC network filter: the connection is closed with this termination detail.
    denied: (reason) => write('forbidden', 0, 0, `rbac_access_denied_matched_policy[${reason}]`),
  };
}
