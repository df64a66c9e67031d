import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { portPolicy, type TrafficPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import { grpcErrorTrailers } from '../errors/error-response.js';
import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { header, isGrpc, type Headers } from '../http/headers.js';
import { attemptGrpcTimeout, deadlineSpent, parseGrpcTimeout } from '../resilience/grpc-timeout.js';
import { stateOf, TryTimer, type ResilienceState } from './request-state.js';
import { raceSignal } from './race-signal.js';
import { linkedAbort } from '../../common/linked-abort.js';
import { RelayedBody } from '../http/relayed-body.js';

/**
 * Whole-request timeouts, above the retry layer so they bound every attempt together
 * (Envoy's route timeout includes retries):
 * - `timeouts.requestMs` (off by default, so streams live): 504 REQUEST_TIMEOUT;
 * - a gRPC caller's deadline (`grpc-timeout`, parsed per the gRPC HTTP/2 spec), when it
 *   is the sooner one: DEADLINE_EXCEEDED (grpc-status 4). The retry layer propagates the
 *   time left upstream by rewriting grpc-timeout on every attempt;
 * - `timeouts.idleMs`: IDLE_TIMEOUT when neither the request body nor the response
 *   moves for that long (Envoy's stream idle timeout).
 * Before response headers the failure is a synthetic response (errors-to-response). Once
 * headers were sent a gRPC response is ended with grpc-status 4 in its trailers; any
 * other response is cut (reset), so the client never takes it for complete.
 * When a timer fires, the attempt in flight is cancelled (the upstream stream is reset).
 */
export const timeouts =
  (clock: Clock, logger?: Logger): HttpLayer =>
  (inner) =>
  (req) => {
    const policy = req.route ? portPolicy(req.route.service, req.route.port).timeouts : undefined;
    // The common case (no request or idle timeout, no gRPC deadline) passes straight through.
    if (!policy || (policy.requestMs <= 0 && policy.idleMs <= 0 && req.headers['grpc-timeout'] === undefined)) return inner(req);
    return withTimeouts(req, inner, policy, clock, logger, false);
  };

/**
 * An HTTPRoute rule's `timeouts.backendRequest`, below the retry layer so it bounds each
 * try: "the time from when the request first starts being sent from the gateway to when
 * the full response has been received from the backend" (HTTPRouteTimeouts, GEP-1742): not
 * while the try waits for a connection (request-state.ts TryTimer). So,
 * unlike the per-try timeout of a TrafficPolicy (Envoy's per_try_timeout, which stops at
 * the response headers), it keeps running over the response body: before the headers it
 * fails the try (REQUEST_TIMEOUT, which the retry layer may retry), after them it ends the
 * response as the request timeout does (reset; gRPC: grpc-status 4 in the trailers). Only
 * requests routed by such a rule pay for it: one property read for the others.
 */
export const backendRequestTimeout =
  (clock: Clock): HttpLayer =>
  (inner) =>
  (req) => {
    const ms = req.route ? portPolicy(req.route.service, req.route.port).timeouts.backendRequestMs : undefined;
    if (ms === undefined || ms <= 0) return inner(req);
    return withTimeouts(req, inner, { connectMs: 0, requestMs: ms, idleMs: 0 }, clock, undefined, true);
  };

async function withTimeouts(
  req: ProxyRequest,
  inner: HttpService,
  policy: TrafficPolicy['timeouts'],
  clock: Clock,
  logger: Logger | undefined,
  /** One try (backendRequest): no gRPC deadline of its own, and the request's deadline left as it is. */
  perTry: boolean,
): Promise<ProxyResponse> {
  const grpc = isGrpc(req.headers);
  let budget = policy.requestMs > 0 ? policy.requestMs : Infinity;
  let code: 'REQUEST_TIMEOUT' | 'DEADLINE_EXCEEDED' = 'REQUEST_TIMEOUT';
  if (grpc && !perTry) {
    const raw = header(req.headers, 'grpc-timeout');
    const t = raw === undefined ? null : parseGrpcTimeout(raw);
    if (raw !== undefined && t === null) logger?.debug('ignoring malformed grpc-timeout', { value: raw });
    if (t !== null && t <= budget) {
      budget = t;
      code = 'DEADLINE_EXCEEDED';
    }
  }
  const idleMs = policy.idleMs;
  if (budget === Infinity && idleMs <= 0) return inner(req);
  // A deadline already spent on arrival (`grpc-timeout: 0m`, `1n`, `500u`: under 1 ms)
  // fails here with DEADLINE_EXCEEDED, as a gRPC client fails a call whose deadline has
  // passed without sending it; forwarding it would have to grant the upstream "1m", more
  // than the caller left (the grpc-timeout the proxy writes, and its timers, are in ms).
  if (deadlineSpent(budget)) throw new ProxyError(code, `${budget} ms left on arrival, under 1 ms`);

  const start = clock.now();
  const st = stateOf(req);
  if (st && budget !== Infinity && !perTry) {
    st.deadlineAt = start + budget;
    st.deadlineCode = code;
  }
  // Aborted by the caller's signal or by our timers (not AbortSignal.any: common/linked-abort.ts).
  const ac = linkedAbort(req.signal);
  const signal = ac.signal;
  let deadlineTimer: Timer | null = null;
  let tryTimer: TryTimer | null = null;
  let idleTimer: Timer | null = null;
  let active = true;
  let onFire: (e: ProxyError) => void = (e) => ac.abort(e);
  const fire = (e: ProxyError) => {
    clear();
    onFire(e);
  };
  const clear = () => {
    active = false;
    if (deadlineTimer) clock.clearTimeout(deadlineTimer);
    tryTimer?.clear();
    if (idleTimer) clock.clearTimeout(idleTimer);
    deadlineTimer = idleTimer = null;
    tryTimer = null;
  };
  const touch = () => {
    if (idleMs <= 0 || !active) return;
    if (idleTimer) clock.clearTimeout(idleTimer);
    idleTimer = clock.setTimeout(() => fire(new ProxyError('IDLE_TIMEOUT', `no activity for ${idleMs} ms`)), idleMs);
  };
  if (budget !== Infinity) {
    const onDeadline = () => fire(new ProxyError(code, `after ${budget} ms`));
    // One try's (backendRequest): stopped while the try waits for a connection, as the retry
    // layer's per-try timeout is (request-state.ts TryTimer; GEP-1742: "from when the request
    // first starts being sent").
    if (perTry && st) st.addTryTimer((tryTimer = new TryTimer(clock, budget, onDeadline)));
    else deadlineTimer = clock.setTimeout(onDeadline, budget);
  }
  touch();
  let reqBody = req.body;
  if (reqBody && idleMs > 0) {
    // Request-body activity keeps the stream alive too (client streaming).
    reqBody = new RelayedBody(reqBody, touch);
  }
  let res: ProxyResponse;
  try {
    res = await raceSignal(inner({ ...req, body: reqBody, signal }), signal, (late) => late.body?.destroy());
  } catch (err) {
    clear();
    throw err;
  }
  const upstream = res.body;
  // A 101's body is the upgraded connection (a Duplex): the timers bound the upgrade's
  // answer, not the tunnel's life.
  if (!upstream || !active || res.status === 101) {
    clear();
    return res;
  }
  touch();
  // After headers: a timer ends the response in-band instead of failing the request. The
  // relay is a Readable, not a PassThrough (relayed-body.ts: what a Writable keeps alive).
  const out = new RelayedBody(upstream, touch);
  let trailers: Headers | undefined;
  onFire = (e) => {
    // Detached before the attempt is cancelled: an upstream that fails its body at once on
    // abort (an HTTP/1.1 pool's exchange) must not cut the response this ends in-band.
    out.detach();
    ac.abort(e);
    upstream.destroy();
    if (grpc && isGrpc(res.headers)) {
      // The one gRPC error mapping (grpc-message percent-encoded, PROTOCOL-HTTP2.md "Responses").
      trailers = grpcErrorTrailers(e);
      out.push(null);
    } else out.destroy(e);
  };
  upstream.once('end', clear);
  out.once('close', () => {
    clear();
    if (!upstream.readableEnded) upstream.destroy();
  });
  return { ...res, body: out, trailers: () => trailers ?? res.trailers() };
}

/**
 * The `grpc-timeout` of an attempt that waited for its connection (pick-endpoint.ts
 * connectThenForward: a new session to the peer, its mTLS handshake), as it is sent: the
 * time the try has once sent. The retry layer wrote it as the attempt started (the caller's
 * deadline left, or the per-try timeout if shorter: an HTTPRoute rule's `backendRequest` is
 * one); the per-try timers stood still through the wait and start whole now (TryTimer), but
 * the deadline kept running, so a deadline left of 2 s before a 1 s wait was 1 s when sent,
 * and the upstream was told 2 s. Rewritten here to what is left now, rounded down, or the
 * per-try timeout if shorter; an error when under 1 ms is left (grpc-timeout.ts
 * deadlineSpent), as for an attempt that starts so. Envoy writes the header before its
 * pool wait (router.cc decodeHeaders), so it may grant the upstream up to that wait more
 * than the caller has. Only requests whose header the retry layer wrote (a gRPC call with a
 * deadline) are looked at; the others are returned as they are.
 */
export function grpcTimeoutOnceConnected(req: ProxyRequest, st: ResilienceState, clock: Clock): ProxyRequest | ProxyError {
  const at = st.deadlineAt;
  if (at === undefined || req.headers['grpc-timeout'] === undefined || !req.route || !isGrpc(req.headers)) return req;
  const v = attemptGrpcTimeout(at, portPolicy(req.route.service, req.route.port).retry.perTryTimeoutMs, clock.now());
  if (v === null) return new ProxyError(st.deadlineCode, 'less than 1 ms of the deadline was left once the attempt had its connection');
  if (v === header(req.headers, 'grpc-timeout')) return req;
  const headers = { ...req.headers };
  if (v === '') delete headers['grpc-timeout'];
  else headers['grpc-timeout'] = v;
  return { ...req, headers };
}
