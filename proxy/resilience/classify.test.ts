import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { RetryPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import { classify, grpcToHttpStatus, retriesSuccess, retryDecision, type Outcome } from './classify.js';

const err = (code: ConstructorParameters<typeof ProxyError>[0], extra: { bytesSent?: boolean; refusedStream?: boolean } = {}) =>
  classify({ type: 'error', error: new ProxyError(code), ...extra });

describe('classify', () => {
  it.each([
    [200, undefined, 'success', false],
    [404, undefined, 'success', false],
    [429, undefined, 'success', false],
    [500, undefined, 'failure', false],
    [502, undefined, 'failure', true],
    [503, undefined, 'failure', true],
    [504, undefined, 'failure', true],
    [200, 0, 'success', false],
    [200, 5, 'success', false], // NOT_FOUND → 404
    [200, 8, 'success', false], // RESOURCE_EXHAUSTED → 429
    [200, 13, 'failure', false], // INTERNAL → 500
    [200, 14, 'failure', true], // UNAVAILABLE → 503
    [200, 4, 'failure', true], // DEADLINE_EXCEEDED → 504
  ])('status %s grpc %s → %s (gateway %s)', (status, grpcStatus, kind, gateway) => {
    const o = classify({ type: 'response', status, grpcStatus });
    expect(o.kind).toBe(kind);
    if (o.kind === 'failure') {
      expect(o.origin).toBe('upstream');
      expect(o.gateway).toBe(gateway);
    }
  });

  it('names reasons stably', () => {
    expect((classify({ type: 'response', status: 503 }) as { reason: string }).reason).toBe('http-503');
    expect((classify({ type: 'response', status: 200, grpcStatus: 14 }) as { reason: string }).reason).toBe('grpc-unavailable');
    expect(grpcToHttpStatus(16)).toBe(401);
    expect(grpcToHttpStatus(99)).toBe(500);
  });

  it.each([
    ['CONNECT_REFUSED', 'local', true],
    ['CONNECT_TIMEOUT', 'local', true],
    ['CONNECT_FAILED', 'local', true],
    ['TLS_HANDSHAKE', 'local', true],
    ['PEER_IDENTITY', 'local', true],
  ] as const)('%s is a local-origin, always-safe failure', (code, origin, safe) => {
    const o = err(code, { bytesSent: true });
    expect(o.kind).toBe('failure');
    if (o.kind !== 'failure') return;
    expect(o.origin).toBe(origin);
    expect(o.gateway).toBe(true);
    expect(o.retryable.alwaysSafe).toBe(safe);
    expect(o.retryable.on).toContain('connect-failure');
  });

  it('a reset is always safe only before any byte was sent; refused streams always', () => {
    expect(err('UPSTREAM_RESET', { bytesSent: false }).retryable.alwaysSafe).toBe(true);
    expect(err('UPSTREAM_RESET', { bytesSent: true }).retryable.alwaysSafe).toBe(false);
    const refused = err('UPSTREAM_RESET', { bytesSent: true, refusedStream: true });
    expect(refused.retryable.alwaysSafe).toBe(true);
    expect((refused as { reason: string }).reason).toBe('refused-stream');
    const byMessage = classify({ type: 'error', error: new ProxyError('UPSTREAM_RESET', 'Stream closed with error code NGHTTP2_REFUSED_STREAM'), bytesSent: true });
    expect(byMessage.retryable.alwaysSafe).toBe(true);
  });

  it('protocol errors are upstream-origin; cancellations and deadlines are neutral', () => {
    const p = err('UPSTREAM_PROTOCOL');
    expect(p.kind === 'failure' && p.origin).toBe('upstream');
    expect(err('CLIENT_CANCELLED').kind).toBe('cancelled');
    expect(err('DEADLINE_EXCEEDED').kind).toBe('cancelled');
    const t = err('REQUEST_TIMEOUT');
    expect(t.kind === 'failure' && t.origin).toBe('local');
  });
});

describe('retryDecision', () => {
  const policy = (p: Partial<RetryPolicy> = {}): RetryPolicy => ({ ...DEFAULT_POLICY.retry, ...p });
  const ctx = { attempt: 1, bodySent: true, idempotent: true, bodyBuffered: true };
  const resp = (status: number, grpcStatus?: number): Outcome => classify({ type: 'response', status, grpcStatus });

  it('retries always-safe failures with an empty retryOn, even non-idempotent ones', () => {
    expect(retryDecision(err('CONNECT_REFUSED'), policy(), { ...ctx, idempotent: false })).toEqual({ retry: true, reason: 'always-safe' });
    expect(retryDecision(err('UPSTREAM_RESET', { bytesSent: false }), policy(), { ...ctx, bodySent: false }).retry).toBe(true);
  });

  it('does not retry 5xx or resets after bytes were sent unless retryOn names them', () => {
    expect(retryDecision(resp(503), policy(), ctx)).toEqual({ retry: false, reason: 'not-retryable' });
    expect(retryDecision(err('UPSTREAM_RESET', { bytesSent: true }), policy(), ctx).retry).toBe(false);
    expect(retryDecision(resp(503), policy({ retryOn: ['5xx'] }), ctx)).toEqual({ retry: true, reason: '5xx' });
    expect(retryDecision(resp(500), policy({ retryOn: ['gateway-error'] }), ctx).retry).toBe(false);
    expect(retryDecision(resp(502), policy({ retryOn: ['gateway-error'] }), ctx).retry).toBe(true);
    expect(retryDecision(err('UPSTREAM_RESET', { bytesSent: true }), policy({ retryOn: ['reset'] }), ctx).retry).toBe(true);
  });

  it('retries a bodyless idempotent request reset before its response whatever retryOn says (RFC 9110 section 9.2.2), nothing else', () => {
    const reset = err('UPSTREAM_RESET', { bytesSent: true });
    expect(retryDecision(reset, policy(), { ...ctx, bodyless: true })).toEqual({ retry: true, reason: 'idempotent-reset' });
    // With a body, or a non-idempotent method, or after the attempts: no.
    expect(retryDecision(reset, policy(), { ...ctx, bodyless: false }).retry).toBe(false);
    expect(retryDecision(reset, policy(), { ...ctx, bodyless: true, idempotent: false }).retry).toBe(false);
    expect(retryDecision(reset, policy({ attempts: 1 }), { ...ctx, bodyless: true, attempt: 2 }).retry).toBe(false);
    // Other failures of a bodyless GET still need retryOn.
    expect(retryDecision(err('REQUEST_TIMEOUT'), policy(), { ...ctx, bodyless: true }).retry).toBe(false);
    expect(retryDecision(resp(503), policy(), { ...ctx, bodyless: true }).retry).toBe(false);
  });

  it('a try that hit its per-try timeout matches `per-try-timeout` (a rule retry: GEP-1731), and no status condition', () => {
    const timedOut = err('REQUEST_TIMEOUT', { bytesSent: true });
    const p = policy({ retryOn: ['per-try-timeout'] });
    expect(retryDecision(timedOut, p, ctx)).toEqual({ retry: true, reason: 'per-try-timeout' });
    // A timeout is no 504 response: retriable-status-codes with 504 does not match it.
    expect(retryDecision(timedOut, policy({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [504] }), ctx).retry).toBe(false);
    // per-try-timeout retries no response and no other failure.
    expect(retryDecision(resp(504), p, ctx).retry).toBe(false);
    expect(retryDecision(err('UPSTREAM_RESET', { bytesSent: true }), p, ctx).retry).toBe(false);
    // A non-idempotent request that reached the upstream still needs retryNonIdempotent.
    expect(retryDecision(timedOut, p, { ...ctx, idempotent: false })).toEqual({ retry: false, reason: 'non-idempotent' });
    // The existing conditions keep their reasons.
    expect(retryDecision(timedOut, policy({ retryOn: ['5xx', 'per-try-timeout'] }), ctx).reason).toBe('5xx');
  });

  it('matches retriable status codes, including non-5xx ones', () => {
    const p = policy({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [409, 503] });
    expect(retryDecision(resp(409), p, ctx)).toEqual({ retry: true, reason: 'retriable-status-codes' });
    expect(retryDecision(resp(503), p, ctx).retry).toBe(true);
    expect(retryDecision(resp(500), p, ctx).retry).toBe(false);
    expect(retryDecision(resp(200), p, ctx)).toEqual({ retry: false, reason: 'success' });
  });

  it('matches gRPC conditions by grpc-status', () => {
    const p = policy({ retryOn: ['unavailable', 'resource-exhausted', 'cancelled'] });
    expect(retryDecision(resp(200, 14), p, ctx).reason).toBe('unavailable');
    expect(retryDecision(resp(200, 8), p, ctx).reason).toBe('resource-exhausted');
    expect(retryDecision(resp(200, 1), p, ctx).reason).toBe('cancelled');
    expect(retryDecision(resp(200, 13), p, ctx).retry).toBe(false);
    expect(retryDecision(resp(200, 13), policy({ retryOn: ['internal'] }), ctx).retry).toBe(true);
    expect(retryDecision(resp(200, 4), policy({ retryOn: ['deadline-exceeded'] }), ctx).retry).toBe(true);
  });

  it('guards non-idempotent requests, unreplayable bodies, attempts and cancellations', () => {
    const p = policy({ retryOn: ['5xx'], attempts: 2 });
    expect(retryDecision(resp(503), p, { ...ctx, idempotent: false })).toEqual({ retry: false, reason: 'non-idempotent' });
    expect(retryDecision(resp(503), { ...p, retryNonIdempotent: true }, { ...ctx, idempotent: false }).retry).toBe(true);
    expect(retryDecision(resp(503), p, { ...ctx, bodyBuffered: false })).toEqual({ retry: false, reason: 'body-not-replayable' });
    expect(retryDecision(err('CONNECT_REFUSED'), p, { ...ctx, bodySent: false, bodyBuffered: false }).retry).toBe(true);
    expect(retryDecision(resp(503), p, { ...ctx, attempt: 2 }).retry).toBe(true);
    expect(retryDecision(resp(503), p, { ...ctx, attempt: 3 })).toEqual({ retry: false, reason: 'attempts-exhausted' });
    expect(retryDecision(err('CLIENT_CANCELLED'), p, ctx)).toEqual({ retry: false, reason: 'cancelled' });
  });
});

test('a response outcome is made once per (status, grpc-status) and shared read-only: no outcome, list or freeze per request', () => {
  const a = classify({ type: 'response', status: 200 });
  expect(classify({ type: 'response', status: 200 })).toBe(a);
  expect(Object.isFrozen(a)).toBe(true);
  expect(classify({ type: 'response', status: 200, grpcStatus: 14 })).toBe(classify({ type: 'response', status: 200, grpcStatus: 14 }));
  expect(classify({ type: 'response', status: 200, grpcStatus: 14 })).not.toBe(a);
  // Outside the cached range: classified as before, each time.
  expect(classify({ type: 'response', status: 200, grpcStatus: 99 })).toEqual(classify({ type: 'response', status: 200, grpcStatus: 99 }));
  expect(classify({ type: 'response', status: 200, grpcStatus: NaN }).kind).toBe('failure');
});

describe('retries on a success status (retriesSuccess) and attempts 0', () => {
  const policy = (p: Partial<RetryPolicy> = {}): RetryPolicy => ({ ...DEFAULT_POLICY.retry, ...p });
  const resp = (status: number, grpcStatus?: number): Outcome => classify({ type: 'response', status, grpcStatus });
  const get = { attempt: 1, bodySent: true, idempotent: true, bodyBuffered: true };

  it('a 4xx listed in retriableStatusCodes and gRPC CANCELLED / RESOURCE_EXHAUSTED named in retryOn; nothing for a 200 or the default policy', () => {
    const codes = policy({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [409, 503] });
    expect(retriesSuccess(resp(409), codes)).toBe(true);
    expect(retriesSuccess(resp(429), codes)).toBe(false);
    expect(retriesSuccess(resp(200), codes)).toBe(false);
    expect(retriesSuccess(resp(409), policy())).toBe(false);
    expect(retriesSuccess(resp(200), policy({ retryOn: ['5xx'] }))).toBe(false);
    const grpc = policy({ retryOn: ['resource-exhausted', 'cancelled'] });
    expect(retriesSuccess(resp(200, 8), grpc)).toBe(true);
    expect(retriesSuccess(resp(200, 1), grpc)).toBe(true);
    expect(retriesSuccess(resp(200, 5), grpc)).toBe(false);
    expect(retriesSuccess(resp(200, 0), grpc)).toBe(false);
    // A success's reason names it, as a failure's does.
    expect(resp(409)).toMatchObject({ kind: 'success', reason: 'http-409' });
    expect(resp(200, 8)).toMatchObject({ kind: 'success', reason: 'grpc-resource-exhausted' });
  });

  it('attempts 0 retries nothing, the always-safe failures and idempotent-reset included (Istio: 0 disables retries)', () => {
    const none = policy({ attempts: 0, retryOn: ['5xx', 'connect-failure', 'reset'] });
    expect(retryDecision(err('CONNECT_REFUSED'), none, { ...get, bodySent: false })).toEqual({ retry: false, reason: 'attempts-exhausted' });
    expect(retryDecision(err('UPSTREAM_RESET', { bytesSent: true }), none, { ...get, bodyless: true })).toEqual({ retry: false, reason: 'attempts-exhausted' });
    expect(retryDecision(resp(503), none, get)).toEqual({ retry: false, reason: 'attempts-exhausted' });
  });
});
