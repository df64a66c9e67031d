import type { Agent } from 'node:http';
import type { HttpService } from '../http/exchange.js';
import { MESH } from '../http/headers.js';
import { forwardH2 } from '../http/h2-forward.js';
import { forwardH1 } from '../http/h1-forward.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { PeerPool } from './peer-pool.js';

/**
 * Terminal outbound service. To a meshed endpoint every request becomes an HTTP/2
 * stream on the mTLS session to the peer sidecar: HTTP/1.1 is upgraded and the
 * original protocol travels in `wren-orig-proto` so the peer downgrades it again
 * (Linkerd's l5d-orig-proto); the app port travels in `wren-target-port`.
 * Unmeshed endpoints get the request as the client sent it, in plaintext.
 */
export function forwardToEndpoint(peers: PeerPool, agent: Agent): HttpService {
  return (req) => {
    const ep = req.endpoint;
    if (!ep) return Promise.reject(new ProxyError('NO_ENDPOINTS'));
    if (ep.proxyPort === null && req.origProto !== 'HTTP/2') return forwardH1(agent, ep.address, ep.port, req, req.headers);
    const extra = ep.proxyPort !== null ? { [MESH.targetPort]: String(ep.port), [MESH.origProto]: req.origProto } : undefined;
    // The session is normally open already (pick-endpoint connected it): no promise round trip then.
    const session = peers.ready(ep);
    if (session) return forwardH2(session, req, req.headers, extra);
    return peers.get(ep).then((s) => forwardH2(s, req, req.headers, extra));
  };
}
