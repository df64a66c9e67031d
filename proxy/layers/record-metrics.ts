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
 * sidecar (`wren-health-check`) is counted in wren_inbound_health_checks_total instead of
 * the request metrics: probes are not user traffic (Envoy counts its own under
 * health_check.*, and Istio's rewritten kubelet probes never reach the request metrics
 * either). Any mesh peer can set that header, though, and Envoy counts every downstream
 * request in downstream_rq_* whatever it carries; so only a request of the exact shape the
 * prober sends (isProbeShaped) is counted apart, anything else marked is counted as the
 * request it is. Every marked request is also counted per caller identity
 * (wren_inbound_health_check_marked_total) so a peer abusing the marker is visible.
 */
export const recordMetrics =
  (metrics: ProxyMetrics, direction: Direction, clock: Clock, tlsMode: () => string = () => 'mutual_tls', healthChecks = false): HttpLayer =>
  (inner) =>
  async (req) => {
    if (healthChecks && req.headers[MESH.healthCheck] !== undefined) {
      const probe = isProbeShaped(req);
      metrics.inboundHealthCheckMarked.inc({ source_principal: req.source.identity, probe_shape: probe ? 'true' : 'false' });
      if (probe) return countHealthCheck(metrics, req, inner);
    }
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

/** The gRPC health service's Check method (grpc/grpc health/v1/health.proto), what the gRPC probe calls. */
const GRPC_HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/**
 * The shapes MeshProbes sends (proxy/resilience/mesh-probes.ts): an HTTP probe is a GET
 * with END_STREAM on its HEADERS (no body, no content-length > 0, no transfer-encoding);
 * a gRPC probe is `POST /grpc.health.v1.Health/Check` (its one tiny message is the body).
 * The TCP probe is a CONNECT, handled by the inbound listener before this layer.
 */
function isProbeShaped(req: ProxyRequest): boolean {
  if (req.method === 'GET') {
    const cl = header(req.headers, 'content-length');
    return req.body === null && (cl === undefined || Number(cl) === 0) && header(req.headers, 'transfer-encoding') === undefined && req.upgrade === undefined;
  }
  return req.method === 'POST' && req.path === GRPC_HEALTH_CHECK_PATH && isGrpc(req.headers);
}

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
