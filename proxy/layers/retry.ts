import type { HttpLayer, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyError as PE, toProxyError } from '../errors/proxy-error.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { header, isGrpc, type Headers } from '../http/headers.js';
import { classify, retryDecision, type Outcome } from '../resilience/classify.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import { formatGrpcTimeout } from '../resilience/grpc-timeout.js';
import { ReplayableBody } from './replayable-body.js';
import { portPolicy } from '../../contract/model.js';
import { stateOf } from './request-state.js';
import { sleep } from './race-signal.js';

/** Marks retried requests for the upstream (like Envoy's x-envoy-attempt-count): 2 on the first retry. */
export const ATTEMPT_HEADER = 'wren-attempt';

/** Idempotent methods, RFC 9110 section 9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Retries, per the service's RetryPolicy. Each attempt goes through the layers below
 * (pick-endpoint excludes endpoints already tried). After a failed attempt:
 * retryDecision() (always-safe retries whatever the policy; `retryOn` conditions
 * otherwise; non-idempotent requests that reached the upstream only with
 * retryNonIdempotent; bodies only if replayable) → Cluster.admit('retry') (retry budget,
 * max retries) → full-jitter backoff → next attempt with `wren-attempt: N`.
 * The decision is taken on response headers; a response that is not retried is returned
 * as is, so a spent budget surfaces the upstream's own failure.
 *
 * gRPC calls are retried on the `retryOn` conditions whatever their method (all gRPC is
 * POST): as in gRPC's own retry design (gRFC A6) naming the status codes is the opt-in.
 * The per-try timeout covers one attempt up to its response headers, so it never cuts a
 * stream once it has started; the idle timeout is for that.
 */
export const retry =
  (clock: Clock, logger?: Logger): HttpLayer =>
  (inner) =>
  async (req) => {
    const st = stateOf(req);
    if (!st || !req.route) return inner(req);
    const policy = portPolicy(req.route.service, req.route.port).retry;
    const grpc = isGrpc(req.headers);
    const idempotent = grpc || IDEMPOTENT.has(req.method);
    // Keep a copy of the body only when a policy retry could need it: always-safe retries
    // happen before any byte was read.
    const body = req.body ? new ReplayableBody(req.body, policy.retryOn.length > 0 ? policy.maxBufferedBodyBytes : 0) : null;
    let held: Admission | null = null;
    try {
      for (let attempt = 1; ; attempt++) {
        const perTry = policy.perTryTimeoutMs;
        let signal = req.signal;
        let timer: ReturnType<Clock['setTimeout']> | undefined;
        if (perTry > 0) {
          const ac = new AbortController();
          signal = AbortSignal.any([req.signal, ac.signal]);
          timer = clock.setTimeout(() => ac.abort(new PE('REQUEST_TIMEOUT', `per-try timeout ${perTry} ms`)), perTry);
        }
        const headers = attemptHeaders(req, attempt, grpc, st.deadlineAt, perTry, clock);
        const abody = body?.attempt() ?? null;
        // The first attempt of a bodyless request without a per-try timeout is the request itself.
        const areq: ProxyRequest = headers === req.headers && abody === req.body && signal === req.signal ? req : { ...req, headers, body: abody, signal };
        let res: ProxyResponse | undefined;
        let error: PE | undefined;
        let outcome: Outcome;
        try {
          res = await inner(areq);
          const g = header(res.headers, 'grpc-status');
          outcome = classify({ type: 'response', status: res.status, grpcStatus: g === undefined ? undefined : Number(g) });
        } catch (err) {
          error = toProxyError(err);
          outcome = st.outcome ?? classify({ type: 'error', error });
        } finally {
          if (timer) clock.clearTimeout(timer);
          held?.release();
          held = null;
        }
        const surface = (): ProxyResponse => {
          if (res) return res;
          throw error;
        };
        if (outcome.kind === 'success') return surface();
        const sent = res !== undefined || st.sent;
        const decision = retryDecision(outcome, policy, {
          attempt,
          bodySent: sent || (body?.started ?? false),
          idempotent,
          bodyBuffered: body === null || body.replayable,
          bodyless: body === null,
        });
        if (!decision.retry || req.signal.aborted) return surface();
        const adm = st.cluster.admit('retry');
        if (adm instanceof PE) {
          logger?.debug('retry refused', { code: adm.code, cluster: st.cluster.name });
          return surface();
        }
        held = adm;
        res?.body?.destroy();
        const wait = Math.max(st.cluster.backoff(attempt), policy.minBackoffMs ?? 0);
        if (wait > 0) await sleep(clock, wait, req.signal);
      }
    } finally {
      held?.release();
      body?.release();
    }
  };

function attemptHeaders(req: ProxyRequest, attempt: number, grpc: boolean, deadlineAt: number | undefined, perTry: number, clock: Clock): Headers {
  const deadline = grpc && deadlineAt !== undefined;
  if (attempt === 1 && !deadline) return req.headers;
  const h: Headers = { ...req.headers };
  if (attempt > 1) h[ATTEMPT_HEADER] = String(attempt);
  if (deadline) {
    // Propagate what is left of the caller's deadline (gRPC deadline propagation), or the
    // per-try timeout if that is shorter.
    const left = deadlineAt - clock.now();
    h['grpc-timeout'] = formatGrpcTimeout(perTry > 0 ? Math.min(left, perTry) : left);
  }
  return h;
}
