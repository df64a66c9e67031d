import type { ProxyRequest } from '../http/exchange.js';
import type { Endpoint } from '../../contract/model.js';
import { SessionConnector, TcpConnector, type Connector } from '../net/connector.js';
import type { PeerPool } from './peer-pool.js';
import { viaH1Pool, type MeshVia } from './forward-to-endpoint.js';
import type { Clock } from '../../common/clock.js';

/**
 * Which connector reaches an outbound endpoint: the peer sidecar's HTTP/2 session (mTLS)
 * for a meshed one, whatever the request; for an unmeshed one an h2c session for HTTP/2,
 * a TCP socket of its own for opaque TCP, and none for HTTP/1.1 (forward-to-endpoint's
 * HTTP/1.1 pool connects and applies the cluster's connection limits itself). With `meshH1`
 * (protocol.meshHttp1 'h1') plain HTTP/1.1 to a peer sidecar goes on the mesh HTTP/1.1 pool,
 * which connects by itself too: no connector then.
 */
export function outboundConnector(peers: PeerPool, clock: Clock, via: MeshVia = { h1: false, h2: false }): (req: ProxyRequest, ep: Endpoint) => Connector | undefined {
  const sessions = new SessionConnector(peers);
  const tcp = new TcpConnector({ clock });
  return (req, ep) => {
    if (viaH1Pool(req, ep, via)) return undefined;
    if (ep.proxyPort !== null || req.origProto === 'HTTP/2') return sessions;
    return req.origProto === 'TCP' ? tcp : undefined;
  };
}
