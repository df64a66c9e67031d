import type { HttpLayer, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Connector, Upstream } from '../net/connector.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import { endpointKey, portPolicy, type Endpoint } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { header, isGrpc } from '../http/headers.js';
import { classify, type Outcome } from '../resilience/classify.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import { attachState, stateOf } from './request-state.js';
import { abortReason, raceSignal } from './race-signal.js';

export interface PickEndpointDeps {
  readonly clusters: () => ClusterSet;
  readonly clock: Clock;
  /**
   * The connector that reaches the picked endpoint for this request (proxy/net/connector.ts),
   * or undefined when the service below connects by itself (an HTTP/1.1 pool that applies
   * the cluster's limits on its own). The upstream is opened here, with the policy's connect
   * timeout, before the request is forwarded, so a connect failure is known to have sent
   * nothing; the service below finds it in the request state (`upstream`).
   */
  readonly connectorFor?: (req: ProxyRequest, ep: Endpoint) => Connector | undefined;
}

/** An upstream that connected after its request was given up: only a TCP socket is the request's own to close. */
const closeLate = (u: Upstream): void => {
  if (u.kind === 'tcp') u.socket.destroy();
};

const destroyLateBody = (late: ProxyResponse): void => void late.body?.destroy();

/** Errors raised when the HTTP/2 session was already unusable: the stream was never opened. */
const NOT_SENT = new Set(['ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_OUT_OF_STREAMS']);

/**
 * One attempt: picks an endpoint of the routed cluster (avoiding those this request
 * already tried), or takes the addressed one when the route is pinned to an endpoint;
 * forwards, and reports the attempt's Outcome (classify()) to the cluster exactly once,
 * when the response ends: for gRPC the grpc-status of the trailers (or of trailers-only
 * headers) decides, so failures in trailers count. The latency fed
 * to the EWMA is the time to response headers. A failed attempt's Outcome is left in the
 * request state for the retry layer above.
 *
 * A request that must wait for a peer session is pending (Envoy max_pending_requests) until
 * the session is up, and the request that opens a session takes one of the cluster's
 * connections (max_connections) for the session's life. Over either limit the attempt fails
 * with OVERFLOW before it starts, so the endpoint is not blamed for it.
 */
export const pickEndpoint =
  (d: PickEndpointDeps): HttpLayer =>
  (inner) =>
  async (req) => {
    let st = stateOf(req);
    if (!st) {
      const route = req.route;
      if (!route) throw new ProxyError('NO_ROUTE');
      const c = d.clusters().get(route.service, route.port);
      if (!c) throw new ProxyError('NO_ENDPOINTS', `${route.service.name}.${route.service.namespace}:${route.port.port}`);
      st = attachState(req, c);
    }
    const policy = portPolicy(req.route!.service, req.route!.port);
    const hashHeader = policy.loadBalancer.hashHeader;
    const hashKey = (hashHeader ? header(req.headers, hashHeader) : undefined) ?? req.source.address;
    st.outcome = undefined;
    st.sent = false;
    // A route pinned to one endpoint (a pod IP) is never balanced, retries included.
    const pin = req.route!.endpoint;
    const ep = pin ? st.cluster.pinned(pin) : st.cluster.pick({ hashKey, exclude: st.tried });
    if (ep instanceof ProxyError) throw ep;
    st.tried.add(endpointKey(ep));
    req.endpoint = ep;
    st.endpoint = ep;
    const connector = d.connectorFor?.(req, ep);
    // Already connected (the common case): no admission, no promise.
    const ready = connector?.ready(ep);
    st.upstream = ready;
    const mustConnect = connector !== undefined && ready === undefined;
    let pending: Admission | undefined;
    let connection: Admission | undefined;
    if (mustConnect) {
      const p = st.cluster.admitConnection('pending');
      if (p instanceof ProxyError) throw p;
      pending = p;
      // An opaque TCP connection holds its cluster connection slot already (admission):
      // the session or socket opened for it is that connection, not a second one.
      if (req.origProto !== 'TCP' && !connector.opening(ep)) {
        const c = st.cluster.admitConnection('connections');
        if (c instanceof ProxyError) {
          pending.release();
          throw c;
        }
        connection = c;
      }
    }
    const { clock } = d;
    const started = clock.now();
    const done = st.cluster.start(ep);
    let connected = false;
    let res: ProxyResponse;
    try {
      if (mustConnect) {
        try {
          st.upstream = await raceSignal<Upstream>(connector.connect(ep, policy.timeouts.connectMs, connection), req.signal, closeLate);
        } finally {
          pending!.release();
        }
      }
      connected = true;
      res = await raceSignal(inner(req), req.signal, destroyLateBody);
    } catch (err) {
      const e = req.signal.aborted ? abortReason(req.signal) : toProxyError(err);
      const causeCode = (e.cause as { code?: string } | undefined)?.code;
      const sent = connected && !(causeCode !== undefined && NOT_SENT.has(causeCode));
      const outcome = classify({ type: 'error', error: e, bytesSent: sent, refusedStream: /stream refused|REFUSED_STREAM/.test(e.message) });
      done(outcome, clock.now() - started);
      st.outcome = outcome;
      st.sent = sent && !outcome.retryable.alwaysSafe;
      throw e;
    }
    const ttfb = clock.now() - started;
    const grpcHead = header(res.headers, 'grpc-status');
    const headOutcome = classify({ type: 'response', status: res.status, grpcStatus: grpcHead === undefined ? undefined : Number(grpcHead) });
    const body = res.body;
    if (!body) {
      done(headOutcome, ttfb);
      return res;
    }
    const grpcTrailers = grpcHead === undefined && isGrpc(res.headers);
    let errored = false;
    const finish = (ended: boolean) => {
      let outcome: Outcome = headOutcome;
      if (errored) outcome = classify({ type: 'error', error: new ProxyError('UPSTREAM_RESET', 'response body failed'), bytesSent: true });
      else if (ended && grpcTrailers) {
        const t = header(res.trailers() ?? {}, 'grpc-status');
        if (t !== undefined) outcome = classify({ type: 'response', status: res.status, grpcStatus: Number(t) });
      }
      done(outcome, ttfb);
    };
    body.on('error', () => (errored = true));
    body.once('end', () => finish(true));
    body.once('close', () => finish(false));
    return res;
  };
