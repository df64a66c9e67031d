import type { Duplex } from 'node:stream';
import type { ClientHttp2Session } from 'node:http2';
import type { HttpService, ProxyResponse } from '../http/exchange.js';
import { MESH } from '../http/headers.js';
import { ProxyError } from '../errors/proxy-error.js';
import { stateOf } from '../layers/request-state.js';
import type { WorkloadLabels } from '../metrics/workload-labels.js';

const noTrailers = (): undefined => undefined;

/**
 * Terminal service of the outbound TCP stack (tcp-stack.ts): the byte stream to the
 * endpoint pick-endpoint connected, as the body of a 200 response. To a meshed endpoint
 * it is an HTTP/2 CONNECT stream on the peer session (RFC 9113 section 8.5) naming the app
 * port in `wren-target-port`; to an unmeshed one, the TCP socket itself.
 *
 * The stream is handed over at once, not after the peer's 200: the peer may sniff the
 * first bytes before answering (a CONNECT to a port it has not declared opaque), so the
 * client's bytes must already flow.
 */
export const openTunnel = (local?: WorkloadLabels): HttpService => (req) => {
  const ep = req.endpoint;
  const up = stateOf(req)?.upstream;
  if (!ep || !up) return Promise.reject(new ProxyError('INTERNAL', 'tunnel without a connected endpoint'));
  if (up.kind === 'tcp') return Promise.resolve(tunnel(up.socket));
  if (up.kind === 'h2' && ep.proxyPort !== null) {
    let stream: Duplex;
    try {
      stream = connectStream(up.session, ep.address, ep.port, local?.peerHeader(req.route?.service));
    } catch (e) {
      // The session is closing (GOAWAY) or gone: nothing was sent (pick-endpoint's NOT_SENT).
      return Promise.reject(new ProxyError('UPSTREAM_RESET', (e as Error).message, { cause: e }));
    }
    return Promise.resolve(tunnel(stream));
  }
  return Promise.reject(new ProxyError('INTERNAL', `no tunnel over a ${up.kind} upstream`));
};

/** The peer metadata rides in the CONNECT stream's headers, as on a request (metrics/peer-metadata.ts). */
function connectStream(session: ClientHttp2Session, address: string, port: number, peer: string | undefined): Duplex {
  const h = { ':method': 'CONNECT', ':authority': `${address}:${port}`, [MESH.targetPort]: String(port) };
  return session.request(peer === undefined ? h : { ...h, [MESH.peer]: peer });
}

function tunnel(body: Duplex): ProxyResponse {
  return { status: 200, headers: {}, body, trailers: noTrailers };
}
