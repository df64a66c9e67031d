import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { ProxyError as PE, toProxyError } from '../errors/proxy-error.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { header, isGrpc, type Headers } from '../http/headers.js';
import { IDEMPOTENT } from '../http/idempotent.js';
import { classify, retriesSuccess, retryDecision, type Outcome } from '../resilience/classify.js';
import { fromPeerSidecar } from '../resilience/peer-outcome.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import { attemptGrpcTimeout } from '../resilience/grpc-timeout.js';
import { ReplayableBody } from './replayable-body.js';
import { portPolicy, type TrafficPolicy } from '../../contract/model.js';
import type { RetryCause } from '../../contract/discovery.js';

type RetryPolicy = TrafficPolicy['retry'];
import { stateOf, TryTimer, type ResilienceState } from './request-state.js';
import { sleep } from './race-signal.js';
import { linkedAbort } from '../../common/linked-abort.js';

/** Marks retried requests for the upstream (like Envoy's x-envoy-attempt-count): 2 on the first retry. */
export const ATTEMPT_HEADER = 'wren-attempt';

/**
 * Told about each request the layer retried, or wanted to retry and the cluster refused
 * (retry budget, maxRetries), once, when it is over: the attempts made, what ended each
 * attempt that was retried and why it was retried (`causes`, in order), how the last
 * attempt ended (`result`: 'success' or classify()'s reason) and why there was no further
 * attempt (`stopped`: '' after a success, else retryDecision()'s reason, or
 * 'budget-exhausted' / 'max-retries'). For the dashboard's "why" view
 * (proxy/stats/recent-retries.ts). A request that was not retried costs nothing.
 */
export type RetryObserver = (req: ProxyRequest, attempts: number, causes: readonly RetryCause[], result: string, stopped: string) => void;


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
 * stream once it has started; the idle timeout is for that. It does not run while the
 * attempt waits for a connection (a new one, its TLS handshake, or a free one): as Envoy's
 * per_try_timeout, it starts over once the request has one (request-state.ts TryTimer).
 */
export const retry =
  (clock: Clock, logger?: Logger, onRetried?: RetryObserver): HttpLayer =>
  (inner) =>
  (req) => {
    const st = stateOf(req);
    if (!st || !req.route) return inner(req);
    const policy = portPolicy(req.route.service, req.route.port).retry;
    // Keep a copy of the body only when a policy retry could need it: always-safe retries
    // happen before any byte was read; with `attempts: 0` nothing is retried at all.
    const body = req.body ? new ReplayableBody(req.body, policy.retryOn.length > 0 && policy.attempts > 0 ? policy.maxBufferedBodyBytes : 0) : null;
    const run = new RetryRun(clock, logger, inner, req, st, policy, body, onRetried);
    // The common first attempt (no per-try timeout, no gRPC deadline to propagate, so the
    // request's own headers: attemptHeaders): one `then`, no async frame; only an attempt
    // that failed, or whose success the policy retries, goes on in the retry loop.
    if (policy.perTryTimeoutMs <= 0 && !(run.grpc && st.deadlineAt !== undefined)) {
      const abody = body?.attempt() ?? null;
      const areq: ProxyRequest = abody === req.body ? req : { ...req, body: abody };
      let p: Promise<ProxyResponse>;
      try {
        p = inner(areq);
      } catch (err) {
        p = Promise.reject(err);
      }
      return p.then(run.onFirstResponse, run.onFirstError);
    }
    return run.loop(1, undefined, undefined);
  };

/** One request's attempts (docs/resilience.md, Retries). */
class RetryRun {
  readonly grpc: boolean;
  private readonly idempotent: boolean;
  /** One per retry, allocated at the first: null for the common request that is never retried. */
  private causes: RetryCause[] | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger | undefined,
    private readonly inner: HttpService,
    private readonly req: ProxyRequest,
    private readonly st: ResilienceState,
    private readonly policy: RetryPolicy,
    private readonly body: ReplayableBody | null,
    private readonly onRetried: RetryObserver | undefined,
  ) {
    this.grpc = isGrpc(req.headers);
    this.idempotent = this.grpc || IDEMPOTENT.has(req.method);
  }

  readonly onFirstResponse = (res: ProxyResponse): ProxyResponse | Promise<ProxyResponse> => {
    const outcome = responseOutcome(res, this.st);
    // A success that no `retryOn` condition names (the common case) is the answer.
    if (outcome.kind === 'success' && !retriesSuccess(outcome, this.policy)) {
      this.body?.release();
      return res;
    }
    return this.loop(1, { res, outcome }, undefined);
  };

  readonly onFirstError = (err: unknown): Promise<ProxyResponse> => {
    const error = toProxyError(err);
    return this.loop(1, undefined, { error, outcome: this.st.outcome ?? classify({ type: 'error', error }) });
  };

  /**
   * Attempts from `attempt` on; `first` / `firstError`: that attempt already ran (the fast
   * path above) with this result, so the loop starts at its retry decision.
   */
  async loop(attempt: number, first: { res: ProxyResponse; outcome: Outcome } | undefined, firstError: { error: PE; outcome: Outcome } | undefined): Promise<ProxyResponse> {
    const { clock, logger, inner, req, st, policy, body } = this;
    let held: Admission | null = null;
    try {
      for (; ; attempt++) {
        let res: ProxyResponse | undefined;
        let error: PE | undefined;
        let outcome: Outcome;
        if (first || firstError) {
          res = first?.res;
          error = firstError?.error;
          outcome = (first ?? firstError)!.outcome;
          first = firstError = undefined;
        } else {
          const perTry = policy.perTryTimeoutMs;
          const headers = attemptHeaders(req, attempt, this.grpc, st.deadlineAt, perTry, clock);
          // Under 1 ms of the caller's deadline left (after a backoff, or the time since the
          // timeouts layer): failed here, never forwarded with more time than is left.
          if (headers === null) throw new PE(st.deadlineCode, 'less than 1 ms of the deadline was left for the attempt');
          let signal = req.signal;
          let timer: TryTimer | undefined;
          st.newTry();
          if (perTry > 0) {
            const ac = linkedAbort(req.signal);
            signal = ac.signal;
            // Stopped while the attempt waits for a connection (request-state.ts TryTimer).
            timer = new TryTimer(clock, perTry, () => ac.abort(new PE('REQUEST_TIMEOUT', `per-try timeout ${perTry} ms`)));
            st.addTryTimer(timer);
          }
          const abody = body?.attempt() ?? null;
          // The first attempt of a bodyless request without a per-try timeout is the request itself.
          const areq: ProxyRequest = headers === req.headers && abody === req.body && signal === req.signal ? req : { ...req, headers, body: abody, signal };
          try {
            res = await inner(areq);
            outcome = responseOutcome(res, st);
          } catch (err) {
            error = toProxyError(err);
            outcome = st.outcome ?? classify({ type: 'error', error });
          } finally {
            timer?.clear();
            held?.release();
            held = null;
          }
        }
        const surface = (): ProxyResponse => {
          if (res) return res;
          throw error;
        };
        if (outcome.kind === 'success' && !retriesSuccess(outcome, policy)) {
          this.report(attempt, 'success', '');
          return surface();
        }
        const sent = res !== undefined || st.sent;
        const decision = retryDecision(outcome, policy, {
          attempt,
          bodySent: sent || (body?.started ?? false),
          idempotent: this.idempotent,
          bodyBuffered: body === null || body.replayable,
          bodyless: body === null,
        });
        if (!decision.retry || req.signal.aborted) {
          this.report(attempt, outcome.reason, decision.retry ? 'cancelled' : decision.reason);
          return surface();
        }
        const adm = st.cluster.admit('retry');
        if (adm instanceof PE) {
          logger?.debug('retry refused', { code: adm.code, cluster: st.cluster.name });
          // A retry the policy asked for and the cluster refused is reported too: "why was it not retried?"
          this.causes ??= [];
          this.report(attempt, outcome.reason, adm.code === 'RETRY_BUDGET' ? 'budget-exhausted' : 'max-retries');
          return surface();
        }
        (this.causes ??= []).push({ outcome: outcome.reason, retryOn: decision.reason });
        held = adm;
        res?.body?.destroy();
        const wait = Math.max(st.cluster.backoff(attempt), policy.minBackoffMs ?? 0);
        if (wait > 0) await sleep(clock, wait, req.signal);
      }
    } finally {
      held?.release();
      body?.release();
    }
  }

  /** Tells the observer, if this request was retried (or a retry was refused). */
  private report(attempts: number, result: string, stopped: string): void {
    if (this.causes === null || this.onRetried === undefined) return;
    try {
      this.onRetried(this.req, attempts, this.causes, result, stopped);
    } catch (e) {
      this.logger?.warn('retry observer failed', { error: (e as Error).message });
    }
  }
}

/**
 * An attempt's response, classified (grpc-status of trailers-only headers; the trailers'
 * come too late for a retry), and a meshed endpoint's sidecar's own error as the failure it
 * stands for (peer-outcome.ts fromPeerSidecar: read for failures only).
 */
function responseOutcome(res: ProxyResponse, st: ResilienceState): Outcome {
  const g = header(res.headers, 'grpc-status');
  return fromPeerSidecar(classify({ type: 'response', status: res.status, grpcStatus: g === undefined ? undefined : Number(g) }), res.headers, st.endpoint);
}

/** The attempt's request headers, or null when the caller's deadline is spent (under 1 ms left: grpc-timeout.ts deadlineSpent). */
function attemptHeaders(req: ProxyRequest, attempt: number, grpc: boolean, deadlineAt: number | undefined, perTry: number, clock: Clock): Headers | null {
  const deadline = grpc && deadlineAt !== undefined;
  if (attempt === 1 && !deadline) return req.headers;
  const h: Headers = { ...req.headers };
  if (attempt > 1) h[ATTEMPT_HEADER] = String(attempt);
  if (deadline) {
    const v = attemptGrpcTimeout(deadlineAt, perTry, clock.now());
    if (v === null) return null;
    if (v === '') delete h['grpc-timeout'];
    else h['grpc-timeout'] = v;
  }
  return h;
}
