import type { Socket } from 'node:net';
import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { AccessLog } from './access-log.js';
import { endpointOf, localAddressOf, tcpEntry, upstreamCluster } from './entry.js';
import { endpointKey } from '../../contract/model.js';
import { stateOf } from '../layers/request-state.js';
import { toProxyError } from '../errors/proxy-error.js';

/** The client socket of an opaque TCP connection, on its request (outbound/tcp-request.ts). */
export const DOWNSTREAM_SOCKET = Symbol('wren.downstream-socket');
type WithSocket = ProxyRequest & { [DOWNSTREAM_SOCKET]?: Socket };

/**
 * The outbound opaque TCP connection's line (outbound/tcp-stack.ts, on top): written when
 * the client connection closes, with the bytes it received and sent (the socket's own
 * counters, so nothing is added to the splice), or at once when the connection could not
 * be opened (its flag from the error table: NR, UH, UF, UO..., URX after retries on
 * several endpoints). Off: one settings read per connection.
 */
export const tcpAccessLog =
  (log: AccessLog): HttpLayer =>
  (inner) =>
  (req) => {
    if (!log.sampled()) return inner(req);
    return logged(log, req, inner);
  };

async function logged(log: AccessLog, req: ProxyRequest, inner: HttpService): Promise<ProxyResponse> {
  const socket = (req as WithSocket)[DOWNSTREAM_SOCKET];
  const write = (proxyError: string | undefined) => {
    const st = stateOf(req);
    const ep = endpointOf(req);
    log.write(
      tcpEntry({
        direction: 'outbound',
        startedAt: req.startedAt,
        endedAt: log.clock.now(),
        downstream: req.source,
        downstreamLocal: req.origDst,
        upstreamHost: ep ? endpointKey(ep) : null,
        upstreamCluster: upstreamCluster('outbound', req),
        upstreamIdentity: ep && ep.proxyPort !== null ? ep.identity || null : null,
        upstreamLocal: localAddressOf(st?.upstream),
        proxyError,
        attempts: st?.tried.size ?? 0,
        bytesReceived: socket?.bytesRead ?? 0,
        bytesSent: socket?.bytesWritten ?? 0,
      }),
    );
  };
  let res: ProxyResponse;
  try {
    res = await inner(req);
  } catch (err) {
    write(toProxyError(err, 'INTERNAL').label);
    throw err;
  }
  if (!socket || socket.closed) write(undefined);
  else socket.once('close', () => write(undefined));
  return res;
}
