import { Counter, type Registry } from 'prom-client';
import { abortableSleep } from '../common/abortable-sleep.js';
import type { Clock } from '../common/clock.js';
import { retryAfterMs } from '../common/http-retry-after.js';

/**
 * The control plane's write requests to the API server (TokenReview; the POSTs that create
 * nothing stored, which repeating cannot duplicate) asked again after a 429 with
 * Retry-After: API Priority and Fairness rejects a request it has no seat for with 429 and
 * Retry-After before executing it, and client-go's rest client retries such an answer for
 * any verb, after the Retry-After, up to its maxRetries (10, rest/with_retry.go checkWait).
 * @kubernetes/client-node does not: the 429 reached the caller as a failure (a Certify
 * refused UNAVAILABLE, an operator's admin token refused 403) although the API server had
 * said when to come back.
 *
 * Bounded both ways: at most `maxAttempts` requests, at most `maxTotalWaitMs` of waiting in
 * all, and never past the request's own deadline (TokenReview's --token-review-timeout): a
 * Retry-After the time left cannot hold is given up on at once, so the caller is answered
 * now rather than at its timeout. Each retry and each give-up is counted in
 * wren_cp_kube_write_retries_total{request, outcome}.
 */
export interface KubeWriteRetryPolicy {
  /** Requests in all, the first included (1: never retried). */
  readonly maxAttempts: number;
  /** Longest wait of all the retries together. */
  readonly maxTotalWaitMs: number;
}

/**
 * 4 requests, 3 s of waiting: APF's Retry-After is a second or a few, and a TokenReview
 * must be answered within its 5 s timeout (half the proxy's Certify deadline), leaving the
 * last attempt its time.
 */
export const DEFAULT_KUBE_WRITE_RETRY: KubeWriteRetryPolicy = Object.freeze({ maxAttempts: 4, maxTotalWaitMs: 3_000 });

/** TokenReview (retryThrottled), RouteStatus (route-status-writer.ts: waits the Retry-After, never gives up). */
export type KubeWriteRequest = 'TokenReview' | 'RouteStatus';
export type KubeWriteRetryOutcome = 'retried' | 'gave-up';

/** The process's counts (one control plane per process; tests read deltas): every ControlPlaneMetrics registry reports them. */
const counts = new Map<string, number>();
const key = (request: KubeWriteRequest, outcome: KubeWriteRetryOutcome): string => `${request} ${outcome}`;

export function countKubeWriteRetry(request: KubeWriteRequest, outcome: KubeWriteRetryOutcome): void {
  counts.set(key(request, outcome), (counts.get(key(request, outcome)) ?? 0) + 1);
}

/** How many retries (or give-ups) of `request` this process has counted. */
export function kubeWriteRetries(request: KubeWriteRequest, outcome: KubeWriteRetryOutcome): number {
  return counts.get(key(request, outcome)) ?? 0;
}

/** `wren_cp_kube_write_retries_total{request, outcome}` on `registry`, read from the process's counts. */
export function registerKubeWriteRetries(registry: Registry): Counter<'request' | 'outcome'> {
  const seen = new Map<string, number>();
  return new Counter({
    name: 'wren_cp_kube_write_retries_total',
    help: 'Write requests to the API server (TokenReview, RouteStatus: a route status PATCH) answered 429 with Retry-After (API Priority and Fairness): outcome retried (asked again after the wait) or gave-up (attempts, total wait or the request deadline reached; the caller got the failure)',
    labelNames: ['request', 'outcome'] as const,
    registers: [registry],
    collect() {
      for (const [k, n] of counts) {
        const [request, outcome] = k.split(' ');
        const d = n - (seen.get(k) ?? 0);
        if (d > 0) this.inc({ request, outcome }, d);
        seen.set(k, n);
      }
    },
  });
}

/**
 * The wait a failed request's 429 asks for, in ms, or undefined when it is no 429 with a
 * usable Retry-After (client-node's ApiException carries `code` and the response `headers`;
 * the header read as RFC 9110 section 10.2.3 has it, common/http-retry-after.ts).
 */
export function throttledForMs(e: unknown, nowMs: number): number | undefined {
  const { code, headers } = (e ?? {}) as { code?: unknown; headers?: unknown };
  if (code !== 429 || typeof headers !== 'object' || headers === null) return undefined;
  const name = Object.keys(headers).find((h) => h.toLowerCase() === 'retry-after');
  const v = name === undefined ? undefined : (headers as Record<string, unknown>)[name];
  return typeof v === 'string' ? retryAfterMs(v, nowMs) : undefined;
}

/**
 * `send()` again while it fails with a 429 and a usable Retry-After, within `policy` and
 * before `deadlineMs` (the clock's now()); the wait ends early when `signal` aborts (the
 * request was given up: its timeout, its caller gone), and the abort's reason is thrown.
 * Other failures, and the last 429, are thrown as they are.
 */
export async function retryThrottled<T>(
  request: KubeWriteRequest,
  send: () => Promise<T>,
  o: { readonly clock: Clock; readonly policy: KubeWriteRetryPolicy; readonly deadlineMs: number; readonly signal: AbortSignal },
): Promise<T> {
  let waited = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (e) {
      const ms = throttledForMs(e, o.clock.wallNow());
      if (ms === undefined || o.signal.aborted) throw e;
      if (attempt >= o.policy.maxAttempts || waited + ms > o.policy.maxTotalWaitMs || o.clock.now() + ms >= o.deadlineMs) {
        countKubeWriteRetry(request, 'gave-up');
        throw e;
      }
      countKubeWriteRetry(request, 'retried');
      await abortableSleep(o.clock, ms, o.signal);
      waited += ms;
    }
  }
}
