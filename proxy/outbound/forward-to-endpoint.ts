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
  return async (req) => {
    const ep = req.endpoint;
    if (!ep) throw new ProxyError('NO_ENDPOINTS');
    if (ep.proxyPort !== null) {
      const session = await peers.get(ep);
      const head = { ...req.headers, [MESH.targetPort]: String(ep.port), [MESH.origProto]: req.origProto };
      return forwardH2(session, req, head);
    }
    if (req.origProto === 'HTTP/2') return forwardH2(await peers.get(ep), req, req.headers);
    return forwardH1(agent, ep.address, ep.port, req, req.headers);
  };
}
