import type { RetryPolicy } from '../../contract/model.js';
import type { ProxyError } from '../errors/proxy-error.js';

/**
 * One classification of how an attempt on an endpoint ended, consumed by every
 * resilience mechanism (outlier detection, failure-accrual breakers, retries, metrics),
 * so they can never disagree about what a "failure" is.
 *
 * - success: the upstream answered with a non-5xx status (after mapping grpc-status to
 *   HTTP the way Envoy's router does for outlier detection). Healthy for every mechanism,
 *   but a policy may still retry it: a 4xx in `retriableStatusCodes`, gRPC CANCELLED or
 *   RESOURCE_EXHAUSTED (Envoy's retriable-status-codes, x-envoy-retry-grpc-on).
 * - failure, origin 'upstream': the upstream itself answered 5xx or sent garbage.
 * - failure, origin 'local': the attempt failed at the connection level (connect refused
 *   / timed out, TLS, reset before a response): Envoy's "local origin" errors, tracked
 *   apart from 5xx when `splitExternalLocalOriginErrors` is on.
 * - cancelled: the downstream gave up; says nothing about the endpoint (not counted by
 *   breakers or ejection, never retried).
 */
export type RetryOn =
  | '5xx'
  | 'gateway-error'
  | 'reset'
  | 'connect-failure'
  | 'refused-stream'
  | 'per-try-timeout'
  | 'retriable-status-codes'
  | 'cancelled'
  | 'deadline-exceeded'
  | 'internal'
  | 'resource-exhausted'
  | 'unavailable';

export interface Retryability {
  /**
   * The request provably never reached the application (connect failure, HTTP/2
   * REFUSED_STREAM, reset before any byte was sent): retried whatever the policy says.
   */
  readonly alwaysSafe: boolean;
  /** The `retryOn` conditions this outcome matches (retriable-status-codes is checked against the policy list). */
  readonly on: readonly RetryOn[];
}

export type Outcome =
  | {
      readonly kind: 'success';
      /** As a failure's: `http-409`, `grpc-resource-exhausted`, for a success a policy retries (the why view). */
      readonly reason: string;
      readonly status: number | null;
      readonly grpcStatus: number | null;
      readonly retryable: Retryability;
    }
  | {
      readonly kind: 'failure';
      readonly origin: 'upstream' | 'local';
      /** Short stable reason: `http-503`, `grpc-unavailable`, `connect-refused`, ... */
      readonly reason: string;
      /** 502/503/504 or a connection-level failure (Envoy "gateway error"). */
      readonly gateway: boolean;
      readonly status: number | null;
      readonly grpcStatus: number | null;
      readonly retryable: Retryability;
    }
  | { readonly kind: 'cancelled'; readonly reason: string; readonly retryable: Retryability };

export type ClassifyInput =
  | { readonly type: 'response'; readonly status: number; readonly grpcStatus?: number }
  | {
      readonly type: 'error';
      readonly error: ProxyError;
      /** Whether any request byte (headers included) reached the upstream. */
      readonly bytesSent?: boolean;
      /** The upstream refused the HTTP/2 stream (REFUSED_STREAM): never processed. */
      readonly refusedStream?: boolean;
    };

const NONE: Retryability = Object.freeze({ alwaysSafe: false, on: Object.freeze([]) as readonly RetryOn[] });
const retry = (alwaysSafe: boolean, ...on: RetryOn[]): Retryability => Object.freeze({ alwaysSafe, on: Object.freeze(on) });

/** gRPC status names used by `retryOn` (Envoy x-envoy-retry-grpc-on; Linkerd retry.linkerd.io/grpc). */
const GRPC_RETRY: Record<number, RetryOn> = { 1: 'cancelled', 4: 'deadline-exceeded', 8: 'resource-exhausted', 13: 'internal', 14: 'unavailable' };
const GRPC_NAMES = [
  'ok', 'cancelled', 'unknown', 'invalid-argument', 'deadline-exceeded', 'not-found', 'already-exists',
  'permission-denied', 'resource-exhausted', 'failed-precondition', 'aborted', 'out-of-range',
  'unimplemented', 'internal', 'unavailable', 'data-loss', 'unauthenticated',
];

/**
 * grpc-status → HTTP status, Envoy's Grpc::Utility::grpcToHttpStatus (the router uses it
 * to feed outlier detection for gRPC); e.g. UNAVAILABLE → 503, INTERNAL → 500.
 */
export function grpcToHttpStatus(grpc: number): number {
  const table = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];
  return table[grpc] ?? 500;
}

const GATEWAY = new Set([502, 503, 504]);

/** Classify a response (status, optional grpc-status from trailers or trailers-only headers) or a proxy error. */
export function classify(input: ClassifyInput): Outcome {
  return input.type === 'response' ? classifyResponse(input.status, input.grpcStatus) : classifyError(input);
}

/**
 * A response's outcome depends on its status and grpc-status only, and is read-only: the
 * common ones (integer statuses 100-999, no grpc-status or 0-16) are made once and shared.
 * Classifying is on every request's path twice (pick-endpoint, retry); this spares each
 * the outcome, its retry-condition list and their freezing.
 */
const RESPONSES = new Map<number, Outcome>();

function classifyResponse(httpStatus: number, grpcStatus?: number): Outcome {
  const g = grpcStatus ?? 17;
  if (!((httpStatus | 0) === httpStatus && httpStatus >= 100 && httpStatus <= 999 && (g | 0) === g && g >= 0 && g <= 17)) return outcomeOf(httpStatus, grpcStatus);
  const key = httpStatus * 18 + g;
  let o = RESPONSES.get(key);
  if (o === undefined) RESPONSES.set(key, (o = Object.freeze(outcomeOf(httpStatus, grpcStatus))));
  return o;
}

function outcomeOf(httpStatus: number, grpcStatus?: number): Outcome {
  const grpc = grpcStatus ?? null;
  // For gRPC the HTTP status is 200 and the real result is in grpc-status.
  const effective = grpc !== null && grpc !== 0 && httpStatus < 300 ? grpcToHttpStatus(grpc) : httpStatus;
  const on: RetryOn[] = [];
  if (effective >= 500) on.push('5xx');
  if (GATEWAY.has(effective)) on.push('gateway-error');
  if (grpc !== null && GRPC_RETRY[grpc]) on.push(GRPC_RETRY[grpc]);
  on.push('retriable-status-codes');
  const retryable = retry(false, ...on);
  const reason = grpc !== null && grpc !== 0 ? `grpc-${GRPC_NAMES[grpc] ?? grpc}` : `http-${httpStatus}`;
  if (effective < 500) return { kind: 'success', reason, status: httpStatus, grpcStatus: grpc, retryable };
  return {
    kind: 'failure',
    origin: 'upstream',
    reason,
    gateway: GATEWAY.has(effective),
    status: httpStatus,
    grpcStatus: grpc,
    retryable,
  };
}

function classifyError(input: Extract<ClassifyInput, { type: 'error' }>): Outcome {
  const { error } = input;
  const sent = input.bytesSent ?? false;
  const local = (reason: string, retryable: Retryability): Outcome => ({
    kind: 'failure', origin: 'local', reason, gateway: true, status: null, grpcStatus: null, retryable,
  });
  const refused = input.refusedStream || /REFUSED_STREAM/.test(error.message);
  switch (error.code) {
    case 'CONNECT_REFUSED':
    case 'CONNECT_TIMEOUT':
    case 'CONNECT_FAILED':
    case 'TLS_HANDSHAKE':
    case 'PEER_IDENTITY':
      // No connection, so nothing reached the app: always safe to try another endpoint.
      return local(error.label, retry(true, 'connect-failure', '5xx', 'gateway-error'));
    case 'UPSTREAM_RESET':
      if (refused) return local('refused-stream', retry(true, 'refused-stream', 'reset', '5xx', 'gateway-error'));
      // Envoy "reset" covers resets before a response; before any byte was sent it is safe.
      return local(error.label, retry(!sent, 'reset', '5xx', 'gateway-error'));
    case 'REQUEST_TIMEOUT':
      // Envoy maps an upstream timeout to 504 (local-origin "timeout" in split mode) and
      // retries per-try timeouts on 5xx / gateway-error. `per-try-timeout` names this
      // failure alone (no 5xx response with it): an HTTPRoute rule's retry retries the tries
      // that hit its backendRequest timeout (GEP-1731: "any retry attempts which reach the
      // configured BackendRequest timeout duration without a response SHOULD be canceled
      // ... and the Gateway SHOULD schedule the next retry attempt"). The retry layer only
      // sees a try's own timeout here: the request timeout, above it, aborts the request
      // itself, which is never retried.
      return local(error.label, retry(false, '5xx', 'gateway-error', 'per-try-timeout'));
    case 'IDLE_TIMEOUT':
      return local(error.label, NONE);
    case 'UPSTREAM_PROTOCOL':
      return { kind: 'failure', origin: 'upstream', reason: error.label, gateway: true, status: null, grpcStatus: null, retryable: retry(false, '5xx', 'gateway-error') };
    case 'CLIENT_CANCELLED':
    case 'DEADLINE_EXCEEDED':
    case 'DRAINING':
      // The caller's deadline or cancellation, or our own shutdown: not the endpoint's fault.
      return { kind: 'cancelled', reason: error.label, retryable: NONE };
    default:
      // Proxy-side refusals (OVERFLOW, NO_ENDPOINTS, ...) should not reach an endpoint;
      // if they do, count them as local, not retried.
      return { kind: 'failure', origin: 'local', reason: error.label, gateway: false, status: null, grpcStatus: null, retryable: NONE };
  }
}

export interface RetryContext {
  /** Attempts made so far, the original included (1 after the first try failed). */
  readonly attempt: number;
  /** Whether any request byte reached the upstream on the failed attempt. */
  readonly bodySent: boolean;
  readonly idempotent: boolean;
  /** Whether the request body is buffered and can be replayed (≤ maxBufferedBodyBytes). */
  readonly bodyBuffered: boolean;
  /** The request has no body at all (a GET, HEAD...): nothing but its head can have reached the upstream. */
  readonly bodyless?: boolean;
}

export type RetryDecision = { readonly retry: true; readonly reason: string } | { readonly retry: false; readonly reason: string };

/**
 * Whether to retry after `outcome`. `policy.attempts` is the number of retries allowed
 * (Istio HTTPRetry.attempts semantics), so the original plus up to `attempts` retries;
 * 0 retries nothing, not even the always-safe failures below (Istio: `attempts: 0`
 * disables retries, its default connect-failure retry included; Gateway API
 * HTTPRouteRetry.attempts likewise). `outcome` may be a success that `retryOn` names (a
 * 4xx in retriableStatusCodes, gRPC CANCELLED or RESOURCE_EXHAUSTED: retriesSuccess()).
 * Order of checks:
 * 1. cancelled → never; attempts exhausted (or 0) → no;
 * 2. a body that was sent and is not buffered cannot be replayed → no;
 * 3. always-safe outcomes (request never reached the app) → yes, regardless of retryOn
 *    and idempotency (Istio's default connect-failure,refused-stream; Linkerd);
 * 3b. a bodyless idempotent request whose connection was reset before any response
 *    (`upstream-reset`: the endpoint died with the request in flight) → yes, regardless of
 *    retryOn: RFC 9110 section 9.2.2 lets a client retry an idempotent request
 *    automatically when its connection closes before the response, as browsers and
 *    HTTP client pools do. Wren's default retryOn is empty, so without this a GET caught on
 *    a backend killed mid-flight failed though another endpoint could answer it (issue 14,
 *    mesh-wide health: the only failures left). Envoy/Istio need `reset` in retryOn for it.
 * 4. otherwise the outcome must match a `retryOn` condition, and a non-idempotent request
 *    that reached the upstream is retried only with `retryNonIdempotent` (istio#13851).
 * Budget and concurrency limits are checked by the caller (Cluster.admit('retry')).
 */
export function retryDecision(outcome: Outcome, policy: RetryPolicy, ctx: RetryContext): RetryDecision {
  if (outcome.kind === 'cancelled') return { retry: false, reason: 'cancelled' };
  if (ctx.attempt > policy.attempts) return { retry: false, reason: 'attempts-exhausted' };
  if (ctx.bodySent && !ctx.bodyBuffered) return { retry: false, reason: 'body-not-replayable' };
  const r = outcome.retryable;
  if (r.alwaysSafe) return { retry: true, reason: 'always-safe' };
  if (ctx.bodyless && ctx.idempotent && outcome.kind === 'failure' && outcome.reason === 'upstream-reset') return { retry: true, reason: 'idempotent-reset' };
  const matched = matchRetryOn(outcome, policy);
  if (!matched) return { retry: false, reason: outcome.kind === 'success' ? 'success' : 'not-retryable' };
  if (!ctx.idempotent && ctx.bodySent && !policy.retryNonIdempotent) return { retry: false, reason: 'non-idempotent' };
  return { retry: true, reason: matched };
}

/**
 * Whether `policy` names a condition this successful response matches, so that it goes
 * to retryDecision() rather than straight back to the client: a 4xx in
 * retriableStatusCodes (Envoy's retriable-status-codes retries any listed status; the docs'
 * 409), gRPC CANCELLED or RESOURCE_EXHAUSTED, which map below 500 (Envoy's
 * x-envoy-retry-grpc-on). Every successful response asks: the default policy (empty
 * `retryOn`) answers with one length check, others with a look at the one or two
 * conditions a success can carry.
 */
export function retriesSuccess(outcome: Outcome, policy: RetryPolicy): boolean {
  return policy.retryOn.length !== 0 && matchRetryOn(outcome, policy) !== null;
}

function matchRetryOn(outcome: Outcome, policy: RetryPolicy): string | null {
  if (outcome.kind === 'cancelled') return null;
  for (const cond of outcome.retryable.on) {
    if (!policy.retryOn.includes(cond)) continue;
    if (cond === 'retriable-status-codes') {
      if (outcome.status !== null && policy.retriableStatusCodes.includes(outcome.status)) return cond;
      continue;
    }
    return cond;
  }
  return null;
}
