import type { HttpLayer, ProxyResponse } from '../http/exchange.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import { endpointKey } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { header } from '../http/headers.js';

/** Errors raised before any byte of the request reached the peer: always safe to retry elsewhere. */
const SAFE = new Set(['CONNECT_REFUSED', 'CONNECT_TIMEOUT', 'CONNECT_FAILED', 'TLS_HANDSHAKE', 'PEER_IDENTITY']);

/**
 * Picks an endpoint of the routed service port from its cluster, records the result
 * for the balancer and health machinery, and — like Linkerd and Istio by default —
 * retries a request that never left the proxy (connect failure) on another endpoint.
 */
export const pickEndpoint =
  (clusters: () => ClusterSet, clock: Clock, maxConnectAttempts = 3): HttpLayer =>
  (inner) =>
  async (req) => {
    const route = req.route;
    if (!route) throw new ProxyError('NO_ROUTE');
    const cluster = clusters().get(route.service, route.port);
    if (!cluster) throw new ProxyError('NO_ENDPOINTS', `${route.service.name}.${route.service.namespace}:${route.port.port}`);
    const tried = new Set<string>();
    let lastError: ProxyError | undefined;
    const hashKey = header(req.headers, route.service.policy.loadBalancer.hashHeader || 'x-wren-no-hash') ?? req.source.address;
    for (let attempt = 1; ; attempt++) {
      const ep = cluster.pick({ hashKey, exclude: tried });
      // Out of endpoints to retry on: the caller learns why the last attempt failed.
      if (ep instanceof ProxyError) throw lastError ?? ep;
      tried.add(endpointKey(ep));
      req.endpoint = ep;
      const started = clock.now();
      const done = cluster.start(ep);
      let res: ProxyResponse;
      try {
        res = await inner(req);
      } catch (err) {
        const e = toProxyError(err);
        done({ type: 'error', error: e }, clock.now() - started);
        lastError = e;
        if (SAFE.has(e.code) && attempt < maxConnectAttempts && !req.signal.aborted) continue;
        throw e;
      }
      const grpc = header(res.headers, 'grpc-status');
      done({ type: 'response', status: res.status, grpcStatus: grpc === undefined ? undefined : Number(grpc) }, clock.now() - started);
      return res;
    }
  };
