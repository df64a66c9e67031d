import type { BodyStream, HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { bodyBytes, countBodyBytes, countTunnelWrites, isTunnel, tunnelBytesWritten } from '../metrics/body-bytes.js';
import { undeclaredEgressCluster, type LabelSet } from '../metrics/workload-labels.js';
import { stateOf } from './request-state.js';
import type { Direction, ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { Clock } from '../../common/clock.js';
import { header, isGrpc, MESH } from '../http/headers.js';
import { CLIENT_CANCELLED_LABEL, responseFlag, toProxyError } from '../errors/proxy-error.js';
import { cutByOf, endpointOf, flagsOf } from '../access-log/entry.js';
import { LeanBody, type BodyDone } from '../http/lean-body.js';

/**
 * Istio's standard request metrics (istio_requests_total, istio_request_duration_milliseconds,
 * istio_request_bytes, istio_response_bytes) with Istio's labels (metrics/workload-labels.ts):
 * reporter="source" here on the outbound side (the destination workload is the picked
 * endpoint's, from the control plane), reporter="destination" on the inbound side (the
 * caller's workload from its `wren-peer` header, trusted from an mTLS peer only). The
 * duration runs from the request's start to the response's last byte (or its abort), as
 * Istio's stats filter measures a request when the stream completes; body sizes are the
 * bytes of the bodies (metrics/body-bytes.ts). The gRPC status is read from the headers
 * (trailers-only) or the trailers when the body ends.
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
  (req) => {
    if (healthChecks && req.headers[MESH.healthCheck] !== undefined) {
      const probe = isProbeShaped(req);
      metrics.inboundHealthCheckMarked.inc({ source_principal: req.source.identity, probe_shape: probe ? 'true' : 'false' });
      if (probe) return countHealthCheck(metrics, req, inner);
    }
    metrics.inFlight[direction] = (metrics.inFlight[direction] ?? 0) + 1;
    if (req.body) countBodyBytes(req.body);
    // Read before the layers below strip it (deliver-to-app); only an mTLS caller's is believed.
    const peer = direction === 'inbound' ? header(req.headers, MESH.peer) : undefined;
    const done = new Done(metrics, clock, direction, tlsMode, req, peer, isGrpc(req.headers) ? 'grpc' : 'http');
    let p: Promise<ProxyResponse>;
    try {
      p = inner(req);
    } catch (err) {
      return Promise.reject(done.failed(err));
    }
    // Not an async function: one promise (this `then`) per request, its handlers the request's own record.
    return p.then(done.onResponse, done.onError);
  };

const DONE = Symbol('wren.metricsDone');

/** One request's record, from its start to its response body's end. */
class Done implements BodyDone {
  set: LabelSet | undefined;
  res: ProxyResponse | undefined;
  counted = false;

  constructor(
    readonly metrics: ProxyMetrics,
    readonly clock: Clock,
    readonly direction: Direction,
    private readonly tlsMode: () => string,
    readonly req: ProxyRequest,
    private readonly peer: string | undefined,
    readonly protocol: 'http' | 'grpc',
  ) {}

  /** The layers below failed (the errors layer turns it into a response above): no longer active. */
  failed(err: unknown): unknown {
    this.metrics.inFlight[this.direction]! -= 1;
    return err;
  }

  readonly onError = (err: unknown): never => {
    throw this.failed(err);
  };

  readonly onResponse = (res: ProxyResponse): ProxyResponse => {
    const { metrics, req } = this;
    this.res = res;
    this.set =
      this.direction === 'outbound'
        ? req.route === undefined && req.origDst?.egress === true
          ? // Out of the mesh (egress-http.ts): a declared ExternalService host as Istio labels a ServiceEntry's,
            // else Istio's cluster names, as opaque egress (workload-labels.ts forExternal, forEgress).
            req.external !== undefined
            ? metrics.local.forExternal(req.external)
            : metrics.local.forEgress(undeclaredEgressCluster(res.proxyError))
          : metrics.local.forOutbound(req.route, endpointOf(req))
        : metrics.local.forInbound(req.source.identity, this.peer, this.tlsMode() === 'mutual_tls' && req.source.identity !== '');
    if (res.proxyError) metrics.proxyErrors.inc({ direction: this.direction, code: res.proxyError });
    const body = res.body;
    if (body) {
      countBodyBytes(body);
      if (isTunnel(req, res)) countTunnelWrites(body);
      if (body instanceof LeanBody) body.whenDone(this);
      else {
        (body as BodyStream & { [DONE]?: Done })[DONE] = this;
        // on, not once: a stream emits 'end' and 'close' at most once each and the handler
        // counts once (d.counted); once() would wrap it in a bound function and a state
        // object per request and remove it again when it fires.
        body.on('end', onBodyDone);
        body.on('close', onBodyDone);
      }
    } else finish(this);
    return res;
  };

  /** LeanBody.whenDone: the response body ended, or was cut (closed first). */
  bodyDone(ended: boolean): void {
    finish(this, !ended);
  }
}

/** One shared listener for every response body ('end' or 'close', whichever comes first). */
function onBodyDone(this: BodyStream & { [DONE]?: Done }): void {
  const d = this[DONE];
  if (d) finish(d, !this.readableEnded);
}

/** The label value of each gRPC status code, 0..16 (grpc/doc/statuscodes.md), one string each. */
const GRPC_CODES: readonly string[] = Array.from({ length: 17 }, (_, i) => String(i));
/** Digits, at most 9 (a number, not a string an upstream made up). */
const DIGITS = /^[0-9]{1,9}$/;

/**
 * The grpc_response_status label of the `grpc-status` an upstream sent: one of the 17
 * codes, written as a number is (`05` is code 5), else `unknown`. As Envoy reads it
 * (Grpc::Common::getGrpcStatus: a number, and past the last known code InvalidCode), which
 * Istio's metrics take. The upstream chooses this value: `00`..`99` made 110 label values
 * where there are 17 codes, each a new series beside every status code (docs/observability.md).
 */
function grpcLabel(raw: string): string {
  if (!DIGITS.test(raw)) return 'unknown';
  const n = Number(raw);
  return n < GRPC_CODES.length ? GRPC_CODES[n] : 'unknown';
}

/**
 * Envoy's response flags, the access log's (access-log/entry.ts flagsOf): the error table's
 * flag, plus URX (several endpoints tried, the last failed), DC (the client went away
 * mid-response) and DI (a fault delay was injected), which Istio's metrics carry as its access log does. The common case (one
 * attempt, body ended) pays two reads.
 */
function flagsFor(d: Done, cut: boolean): string {
  const attempts = stateOf(d.req)?.tried.size ?? 0;
  const res = d.res!;
  if (attempts < 2 && !cut && d.req.faultDelayed !== true) return responseFlag(res.proxyError);
  // A cut body: the upstream's error (UR, UPE, SI, UT) when it cut it, else DC when the client left.
  return flagsOf(d.req, res.status, res.proxyError, cut, attempts, cutByOf(res, cut));
}

function finish(d: Done, cut = false): void {
  if (d.counted) return;
  d.counted = true;
  const { metrics } = d;
  const res = d.res!;
  metrics.inFlight[d.direction]! -= 1;
  // The client left before any response: the synthetic one (499, or a trailers-only
  // CANCELLED) never reached it. Istio's stats filter says response_code
  // `info.responseCode().value_or(0)`, i.e. "0", no gRPC status (none was sent and there is
  // no HTTP status to infer one from) and 0 response bytes, as the access log's line does.
  if (res.proxyError === CLIENT_CANCELLED_LABEL) {
    d.set!.series(d.protocol, '0', '', flagsFor(d, cut)).record(metrics, d.clock.now() - d.req.startedAt, bodyBytes(d.req.body), 0);
    return;
  }
  let grpc = '';
  if (d.protocol === 'grpc' || isGrpc(res.headers)) {
    const raw = header(res.headers, 'grpc-status') ?? header(res.trailers() ?? {}, 'grpc-status');
    grpc = raw === undefined ? (isGrpcWeb(d.req.headers) ? '' : grpcStatusOfHttp(res.status)) : grpcLabel(raw);
  }
  // The label set's series adds to prom-client's cells directly (metrics/request-series.ts).
  // A tunnel's upload (written into its body) is the request's bytes, as its download is the response's.
  // (Read for a tunnel only: no property look-up on every other body.)
  const upload = isTunnel(d.req, res) ? tunnelBytesWritten(res.body) : 0;
  d.set!.series(d.protocol, String(res.status), grpc, flagsFor(d, cut)).record(metrics, d.clock.now() - d.req.startedAt, bodyBytes(d.req.body) + upload, bodyBytes(res.body));
}

/**
 * A gRPC call answered without any grpc-status (an HTTP error from something that is not a
 * gRPC server, a body cut before its trailers): the status inferred from the HTTP status,
 * as Envoy's Grpc::Common::getGrpcStatus does for Istio's grpc_response_status (trailers,
 * then headers, then Utility::httpToGrpcStatus), the mapping of gRPC's
 * doc/http-grpc-status-mapping.md: what the gRPC client itself reports.
 */
function grpcStatusOfHttp(status: number): string {
  switch (status) {
    case 400:
      return '13'; // INTERNAL
    case 401:
      return '16'; // UNAUTHENTICATED
    case 403:
      return '7'; // PERMISSION_DENIED
    case 404:
      return '12'; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return '14'; // UNAVAILABLE
    default:
      return '2'; // UNKNOWN
  }
}

/**
 * gRPC-Web (`application/grpc-web`, `-web+proto`, `-web-text`) carries its status in a
 * trailer frame inside the body, not in HTTP trailers: no status is read from it, and none
 * is inferred from its HTTP 200 (which would make every such call UNKNOWN).
 */
function isGrpcWeb(h: ProxyRequest['headers']): boolean {
  return header(h, 'content-type')?.startsWith('application/grpc-web') === true;
}


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
