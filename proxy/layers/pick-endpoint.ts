import type { HttpLayer, ProxyResponse } from '../http/exchange.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import { endpointKey, type Endpoint } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { header, isGrpc } from '../http/headers.js';
import { classify, type Outcome } from '../resilience/classify.js';
import { attachState, stateOf } from './request-state.js';
import { abortReason, raceSignal } from './race-signal.js';

export interface PickEndpointDeps {
  readonly clusters: () => ClusterSet;
  readonly clock: Clock;
  /**
   * Opens (or reuses) the HTTP/2 session to an endpoint with the policy's connect timeout
   * before the request is forwarded, so a connect failure is known to have sent nothing.
   */
  readonly connect?: (ep: Endpoint, timeoutMs: number) => Promise<unknown>;
  /** Whether the endpoint's session is already open (then `connect` is skipped: nothing to wait for). */
  readonly connected?: (ep: Endpoint) => boolean;
}

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
    const policy = req.route!.service.policy;
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
    const { clock } = d;
    const started = clock.now();
    const done = st.cluster.start(ep);
    let connected = false;
    let res: ProxyResponse;
    try {
      // Same condition as forwardToEndpoint uses a session (meshed, or HTTP/2 to an unmeshed app).
      if (d.connect && (ep.proxyPort !== null || req.origProto === 'HTTP/2') && !d.connected?.(ep)) await raceSignal(d.connect(ep, policy.timeouts.connectMs), req.signal);
      connected = true;
      res = await raceSignal(inner(req), req.signal, (late) => late.body?.destroy());
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
