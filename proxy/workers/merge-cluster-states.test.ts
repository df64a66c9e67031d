import { mergeClusterStates } from './merge-cluster-states.js';

const ep = (key: string, health: string, extra: Record<string, unknown> = {}) => ({ key, health, ...extra });

test('an endpoint any worker keeps out of balancing is shown as out; otherwise the first worker speaks', () => {
  const w0 = { 'web.default:80': { endpoints: [ep('a', 'healthy', { rq: 1 }), ep('b', 'healthy', { rq: 2 })] }, 'db.default:5432': { endpoints: [ep('c', 'healthy')] } };
  const w1 = { 'web.default:80': { endpoints: [ep('a', 'healthy', { rq: 9 }), ep('b', 'outlier-ejected', { lastEjectionReason: '5xx' })] }, 'db.default:5432': { endpoints: [ep('c', 'healthy')] } };
  const merged = mergeClusterStates([w0, w1]);
  expect(merged['web.default:80']).toEqual({ endpoints: [ep('a', 'healthy', { rq: 1 }), ep('b', 'outlier-ejected', { lastEjectionReason: '5xx' })] });
  expect(merged['db.default:5432']).toEqual(w0['db.default:5432']);
  // The inputs are not changed.
  expect(w0['web.default:80'].endpoints[1].health).toBe('healthy');
});

test('per endpoint: each worker\'s counts summed, its estimates at the worst, active checks passing only if they pass in every worker; panic in any worker is the cluster\'s', () => {
  const limits = { requests: { active: 7, max: 1024 } };
  const at = (health: string, n: number, ewmaMs: number, activeHealthy: boolean) =>
    ep('a', health, { inflight: n, successes: 10 * n, failures: n, timesEjected: health === 'ejected' ? 1 : 0, ewmaMs, consecutiveConnectFailures: n, activeHealthy });
  // timesEjected is the sidecar's (shared-outliers.ts): both workers show the one ejection, which is one, not two.
  const w0 = { 'web.default:80': { panic: false, limits, endpoints: [{ ...at('healthy', 1, 40, true), timesEjected: 1 }] } };
  const w1 = { 'web.default:80': { panic: true, limits, endpoints: [at('ejected', 2, 25, false)] } };
  expect(mergeClusterStates([w0, w1])).toEqual({
    'web.default:80': { panic: true, limits, endpoints: [ep('a', 'ejected', { inflight: 3, successes: 30, failures: 3, timesEjected: 1, ewmaMs: 40, consecutiveConnectFailures: 2, activeHealthy: false })] },
  });
});

test('a cluster only one worker knows yet (a config still arriving) is shown; no workers, no clusters', () => {
  expect(mergeClusterStates([{}, { 'api.default:80': { endpoints: [] } }])).toEqual({ 'api.default:80': { endpoints: [] } });
  expect(mergeClusterStates([])).toEqual({});
});
