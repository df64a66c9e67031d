import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { RetryPolicy } from '../../contract/model.js';
import { classify, retryDecision } from './classify.js';
import { fromPeerSidecar } from './peer-outcome.js';

describe('a peer sidecar\'s own error (fromPeerSidecar)', () => {
  const meshed = { address: '10.0.0.2', port: 8080, proxyPort: 15006, identity: 'spiffe://td/ns/a/sa/b', weight: 1, zone: '', ready: true };
  const unmeshed = { ...meshed, proxyPort: null, identity: '' };
  const policy = (p: Partial<RetryPolicy> = {}): RetryPolicy => ({ ...DEFAULT_POLICY.retry, ...p });
  const post = { attempt: 1, bodySent: true, idempotent: false, bodyBuffered: true };
  const peer = (status: number, label: string, grpcStatus?: number, ep: typeof meshed | typeof unmeshed = meshed) =>
    fromPeerSidecar(classify({ type: 'response', status, grpcStatus }), { 'wren-proxy-error': label }, ep);

  it.each([
    [502, 'connect-refused', undefined],
    [504, 'connect-timeout', undefined],
    [502, 'connect-failed', undefined],
    [200, 'connect-refused', 14], // a gRPC caller's trailers-only answer
  ])('%s %s (grpc %s) from a meshed endpoint is its local-origin connect failure: always safe, even for a POST', (status, label, grpc) => {
    const o = peer(status, label, grpc);
    expect(o).toMatchObject({ kind: 'failure', origin: 'local', reason: label, gateway: true, status });
    expect(o.retryable).toEqual({ alwaysSafe: true, on: ['connect-failure', '5xx', 'gateway-error', 'retriable-status-codes'] });
    expect(retryDecision(o, policy(), post)).toEqual({ retry: true, reason: 'always-safe' });
  });

  it('upstream-reset is a local-origin reset: `reset`, and idempotent-reset for a bodyless GET; not always safe', () => {
    const o = peer(502, 'upstream-reset');
    expect(o).toMatchObject({ kind: 'failure', origin: 'local', reason: 'upstream-reset' });
    expect(o.retryable.alwaysSafe).toBe(false);
    expect(retryDecision(o, policy(), { ...post, idempotent: true, bodyless: true })).toEqual({ retry: true, reason: 'idempotent-reset' });
    expect(retryDecision(o, policy(), post)).toEqual({ retry: false, reason: 'not-retryable' });
    expect(retryDecision(o, policy({ retryOn: ['reset'], retryNonIdempotent: true }), post)).toEqual({ retry: true, reason: 'reset' });
    // Still the 502 the client would see: retriable-status-codes keeps matching it.
    expect(retryDecision(o, policy({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [502] }), { ...post, idempotent: true }).retry).toBe(true);
  });

  it('is read from meshed endpoints only, for failures only, and for the connection errors only', () => {
    const plain = peer(502, 'connect-refused', undefined, unmeshed);
    expect(plain).toBe(classify({ type: 'response', status: 502 }));
    expect(fromPeerSidecar(classify({ type: 'response', status: 502 }), { 'wren-proxy-error': 'connect-refused' }, undefined)).toBe(classify({ type: 'response', status: 502 }));
    expect(peer(200, 'connect-refused')).toBe(classify({ type: 'response', status: 200 }));
    // The peer's other refusals are its answers (overflow, authorization...), as before.
    expect(peer(503, 'overflow')).toBe(classify({ type: 'response', status: 503 }));
    expect(fromPeerSidecar(classify({ type: 'response', status: 502 }), {}, meshed)).toBe(classify({ type: 'response', status: 502 }));
  });
});
