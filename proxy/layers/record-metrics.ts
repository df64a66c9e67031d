import type { HttpLayer, ProxyResponse } from '../http/exchange.js';
import type { Direction, ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { Clock } from '../../common/clock.js';
import { header } from '../http/headers.js';
import { responseFlag } from '../errors/proxy-error.js';

/**
 * Counts requests and their latency to response headers (Linkerd's response_latency is
 * also time-to-first-byte). The gRPC status is read from the trailers when the body ends.
 */
export const recordMetrics =
  (metrics: ProxyMetrics, direction: Direction, clock: Clock, tlsMode: () => string = () => 'mutual_tls'): HttpLayer =>
  (inner) =>
  async (req) => {
    metrics.activeStreams.inc({ direction });
    let res: ProxyResponse;
    try {
      res = await inner(req);
    } catch (err) {
      metrics.activeStreams.dec({ direction });
      throw err;
    }
    const service = req.route ? `${req.route.service.name}.${req.route.service.namespace}.svc.cluster.local` : 'unknown';
    const code = String(res.status);
    metrics.duration.observe({ direction, destination_service: service, response_code: code }, clock.now() - req.startedAt);
    if (res.proxyError) metrics.proxyErrors.inc({ direction, code: res.proxyError });
    let counted = false;
    const count = () => {
      if (counted) return;
      counted = true;
      metrics.activeStreams.dec({ direction });
      const grpc = header(res.headers, 'grpc-status') ?? header(res.trailers() ?? {}, 'grpc-status') ?? '';
      metrics.requests.inc({ direction, destination_service: service, response_code: code, grpc_response_status: grpc, response_flags: responseFlag(res.proxyError), connection_security_policy: tlsMode() });
    };
    if (res.body) {
      res.body.once('end', count);
      res.body.once('close', count);
    } else count();
    return res;
  };
