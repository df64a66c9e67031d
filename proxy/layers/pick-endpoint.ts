import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Connector, Upstream } from '../net/connector.js';
import { ProxyError, toProxyError } from '../errors/proxy-error.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import { keyOfEndpoint, portPolicy, type Endpoint } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { header, isGrpc, requestField } from '../http/headers.js';
import { classify, type Outcome } from '../resilience/classify.js';
import { fromPeerSidecar } from '../resilience/peer-outcome.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import { attachState, stateOf, type ResilienceState } from './request-state.js';
import { abortReason, raceSignal } from './race-signal.js';
import { grpcTimeoutOnceConnected } from './timeouts.js';
import { LeanBody, type BodyDone } from '../http/lean-body.js';

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
  /**
   * Whether the service below settles as soon as the request's signal aborts because it
   * watches the signal itself (the HTTP/1.1 pool's exchange rejects, the HTTP/2 call resets
   * its stream and rejects): the attempt then needs no race against the signal, which cost
   * two promises, three closures and an abort listener per request. Absent: always raced.
   */
  readonly watchesSignal?: (req: ProxyRequest, ep: Endpoint) => boolean;
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
  (req) => {
    let st = stateOf(req);
    if (!st) {
      const route = req.route;
      if (!route) return Promise.reject(new ProxyError('NO_ROUTE'));
      const c = d.clusters().get(route.service, route.port);
      if (!c) return Promise.reject(new ProxyError('NO_ENDPOINTS', `${route.service.name}.${route.service.namespace}:${route.port.port}`));
      st = attachState(req, c);
    }
    const policy = portPolicy(req.route!.service, req.route!.port);
    const hashHeader = policy.loadBalancer.hashHeader;
    // requestField: `host` is the request's authority, as for route matches.
    const hashed = hashHeader ? requestField(req, hashHeader) : undefined;
    const hashKey = (Array.isArray(hashed) ? hashed[0] : hashed) ?? req.source.address;
    st.outcome = undefined;
    st.sent = false;
    st.tries++;
    // A route pinned to one endpoint (a pod IP) is never balanced, retries included.
    const pin = req.route!.endpoint;
    const ep = pin ? st.cluster.pinned(pin) : st.cluster.pick({ hashKey, exclude: st.tried });
    if (ep instanceof ProxyError) return Promise.reject(ep);
    st.tried.add(keyOfEndpoint(ep));
    req.endpoint = ep;
    st.endpoint = ep;
    const connector = d.connectorFor?.(req, ep);
    // Already connected (the common case): no admission, no promise.
    const ready = connector?.ready(ep);
    st.upstream = ready;
    if (connector !== undefined && ready === undefined) return connectThenForward(d, inner, req, st, ep, connector, policy.timeouts.connectMs);
    const attempt = new Attempt(req, st, d.clock, ep);
    attempt.goesOut();
    if (!d.watchesSignal?.(req, ep)) return raced(inner, req, attempt);
    // The common case: the service below watches the signal, so no race and no async frame:
    // one promise (this `then`), its handlers the attempt's.
    let p: Promise<ProxyResponse>;
    try {
      p = inner(req);
    } catch (err) {
      return Promise.reject(attempt.failed(err));
    }
    return p.then(attempt.onResponse, attempt.onError);
  };

/** An attempt whose upstream must be opened first: the connection limits, then the connect (raced against the signal). */
async function connectThenForward(d: PickEndpointDeps, inner: HttpService, req: ProxyRequest, st: ResilienceState, ep: Endpoint, connector: Connector, connectMs: number): Promise<ProxyResponse> {
  const p = st.cluster.admitConnection('pending');
  if (p instanceof ProxyError) throw p;
  const pending = p;
  let connection: Admission | undefined;
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
  const attempt = new Attempt(req, st, d.clock, ep);
  // The per-try timers wait with the request (the connect timeout bounds the connect): request-state.ts TryTimer.
  st.waitsForConnection();
  try {
    st.upstream = await raceSignal<Upstream>(connector.connect(ep, connectMs, connection), req.signal, closeLate);
  } catch (err) {
    throw attempt.failed(err);
  } finally {
    pending.release();
  }
  st.connected();
  // A gRPC deadline kept running through the wait: the time left now (timeouts.ts).
  const sent = grpcTimeoutOnceConnected(req, st, d.clock);
  if (sent instanceof ProxyError) throw attempt.failed(sent);
  attempt.sendsNow();
  return raced(inner, sent, attempt, d.watchesSignal?.(sent, ep) ?? false);
}

/** The attempt raced against the request's signal (unless the service below watches it): one that does not watch it at every step (a tunnel's). */
async function raced(inner: HttpService, req: ProxyRequest, attempt: Attempt, watches = false): Promise<ProxyResponse> {
  let res: ProxyResponse;
  try {
    res = await (watches ? inner(req) : raceSignal(inner(req), req.signal, destroyLateBody));
  } catch (err) {
    throw attempt.failed(err);
  }
  return attempt.onResponse(res);
}

/** One attempt's facts, from its start to its response body's end; reported to the cluster exactly once. */
class Attempt implements BodyDone {
  /** From when the balancer's latency sample runs: the pick, or once connected (sendsNow), or the pool's ProxyResponse.sentAt. */
  private started: number;
  /** Its number among the request's attempts (ResilienceState.tries): it writes the request state only while it is the current one. */
  private readonly tryNo: number;
  private readonly done: (outcome: Outcome, latencyMs: number) => void;
  connected = false;
  ttfb = 0;
  headOutcome: Outcome | undefined;
  res: ProxyResponse | undefined;
  grpcTrailers = false;
  errored = false;

  constructor(
    private readonly req: ProxyRequest,
    private readonly st: ResilienceState,
    private readonly clock: Clock,
    ep: Endpoint,
  ) {
    this.started = clock.approxNow();
    this.done = st.cluster.start(ep);
    this.tryNo = st.tries;
  }

  /** Whether no later attempt of the request has started: the request state is this attempt's. */
  current(): boolean {
    return this.st.tries === this.tryNo;
  }

  /** The attempt failed before a response: classified, reported, left in the request state for retry; returns the error to throw. */
  failed(err: unknown): ProxyError {
    const { req, st } = this;
    const e = req.signal.aborted ? abortReason(req.signal) : toProxyError(err);
    const causeCode = (e.cause as { code?: string } | undefined)?.code;
    const sent = this.connected && !(causeCode !== undefined && NOT_SENT.has(causeCode));
    const outcome = classify({ type: 'error', error: e, bytesSent: sent, refusedStream: /stream refused|REFUSED_STREAM/.test(e.message) });
    this.done(outcome, this.clock.approxNow() - this.started);
    // An attempt that settles after the next one started (ResilienceState.tries) leaves the
    // state to that one: its outcome is its own endpoint's (done, above), not the new try's.
    if (this.current()) {
      st.outcome = outcome;
      st.sent = sent && !outcome.retryable.alwaysSafe;
    }
    return e;
  }

  readonly onError = (err: unknown): never => {
    throw this.failed(err);
  };

  /** The connector opened the upstream: the request goes out now, and its latency sample starts here (ProxyResponse.sentAt). */
  sendsNow(): void {
    this.goesOut();
    this.started = this.clock.approxNow();
  }

  /**
   * The request goes to its upstream now: until the attempt settles (failed() says what
   * reached it), the request state says it may have been sent. A layer above may settle the
   * attempt first (a per-try timeout's race: timeouts.ts backendRequest), and the retry layer
   * then decides on this: it read "not sent" before, and tried a POST that had reached the
   * app again (on an HTTP/2 session, whose call settles a turn after the abort).
   */
  goesOut(): void {
    this.connected = true;
    if (this.current()) this.st.sent = true;
  }

  readonly onResponse = (res: ProxyResponse): ProxyResponse => {
    const sentAt = res.sentAt;
    this.ttfb = this.clock.approxNow() - (sentAt !== undefined && sentAt > this.started ? sentAt : this.started);
    const grpcHead = header(res.headers, 'grpc-status');
    // A meshed endpoint's sidecar answering with its own error (its app refused or reset
    // the connection) is that endpoint's local-origin failure, not its app's 502.
    this.headOutcome = fromPeerSidecar(classify({ type: 'response', status: res.status, grpcStatus: grpcHead === undefined ? undefined : Number(grpcHead) }), res.headers, this.st.endpoint);
    const body = res.body as AttemptBody | null;
    if (!body) {
      this.done(this.headOutcome, this.ttfb);
      return res;
    }
    // One shared listener set per body (no closures per request): the attempt rides on the body.
    this.res = res;
    this.grpcTrailers = grpcHead === undefined && isGrpc(res.headers);
    body[ATTEMPT] = this;
    body.on('error', onBodyError);
    if (body instanceof LeanBody) body.whenDone(this);
    else {
      // on, not once: 'end' and 'close' fire at most once each, and finishAttempt reports once (no once() wrapper per request).
      body.on('end', onBodyEnd);
      body.on('close', onBodyClose);
    }
    return res;
  };

  /** LeanBody.whenDone: the response body ended, or closed first (its 'error' heard by then). */
  bodyDone(ended: boolean): void {
    finishAttempt(this.res!.body as AttemptBody, ended);
  }

  /**
   * The response body ended (`ended`) or closed first: the outcome with the body's facts. A
   * body that failed because the request was cancelled (the client gone, a timeout above)
   * takes the cancellation's outcome, not the endpoint's failure: an upstream that cuts a
   * body when its client goes away (the HTTP/1.1 pool's) says nothing of the endpoint.
   */
  finish(ended: boolean): void {
    let outcome = this.headOutcome!;
    const signal = this.req.signal;
    if (this.errored) outcome = classify({ type: 'error', error: signal.aborted ? abortReason(signal) : new ProxyError('UPSTREAM_RESET', 'response body failed'), bytesSent: true });
    else if (ended && this.grpcTrailers) {
      const t = header(this.res!.trailers() ?? {}, 'grpc-status');
      if (t !== undefined) outcome = classify({ type: 'response', status: this.res!.status, grpcStatus: Number(t) });
    }
    this.done(outcome, this.ttfb);
  }
}

const ATTEMPT = Symbol('wren.attempt');
type AttemptBody = NonNullable<ProxyResponse['body']> & { [ATTEMPT]?: Attempt };

function onBodyError(this: AttemptBody): void {
  const a = this[ATTEMPT];
  if (a) a.errored = true;
}

function onBodyEnd(this: AttemptBody): void {
  finishAttempt(this, true);
}

function onBodyClose(this: AttemptBody): void {
  finishAttempt(this, false);
}

/** The attempt's outcome, reported once, when its response body ends or closes (whichever first). */
function finishAttempt(body: AttemptBody, ended: boolean): void {
  const a = body[ATTEMPT];
  if (!a) return;
  body[ATTEMPT] = undefined;
  a.finish(ended);
}
