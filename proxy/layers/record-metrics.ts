import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Direction, ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { Clock } from '../../common/clock.js';
import { header, isGrpc, MESH } from '../http/headers.js';
import { responseFlag, toProxyError } from '../errors/proxy-error.js';

/**
 * Counts requests and their latency to response headers (Linkerd's response_latency is
 * also time-to-first-byte). The gRPC status is read from the trailers when the body ends.
 *
 * With `healthChecks` (the inbound mTLS stack), an active health check from the calling
 * sidecar (`wren-health-check`, which only a sidecar can set) is counted in
 * wren_inbound_health_checks_total instead of the request metrics: probes are not user
 * traffic (Envoy counts its own under health_check.*, and Istio's rewritten kubelet
 * probes never reach the request metrics either).
 */
export const recordMetrics =
  (metrics: ProxyMetrics, direction: Direction, clock: Clock, tlsMode: () => string = () => 'mutual_tls', healthChecks = false): HttpLayer =>
  (inner) =>
  async (req) => {
    if (healthChecks && req.headers[MESH.healthCheck] !== undefined) return countHealthCheck(metrics, req, inner);
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

async function countHealthCheck(metrics: ProxyMetrics, req: ProxyRequest, inner: HttpService): Promise<ProxyResponse> {
  const kind = isGrpc(req.headers) ? 'grpc' : 'http';
  try {
    const res = await inner(req);
    metrics.inboundHealthChecks.inc({ kind, response_code: String(res.status) });
    return res;
  } catch (err) {
    metrics.inboundHealthChecks.inc({ kind, response_code: String(toProxyError(err, 'INTERNAL').httpStatus) });
    throw err;
  }
}
