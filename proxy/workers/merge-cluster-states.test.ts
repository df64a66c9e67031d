import { mergeClusterStates } from './merge-cluster-states.js';

const ep = (key: string, health: string, extra: Record<string, unknown> = {}) => ({ key, health, ...extra });

test('an endpoint any worker keeps out of balancing is shown as out; otherwise the first worker speaks', () => {
  const w0 = { 'web.default:80': { endpoints: [ep('a', 'healthy', { rq: 1 }), ep('b', 'healthy', { rq: 2 })] }, 'db.default:5432': { endpoints: [ep('c', 'healthy')] } };
  const w1 = { 'web.default:80': { endpoints: [ep('a', 'healthy', { rq: 9 }), ep('b', 'outlier-ejected', { lastEjectionReason: '5xx' })] }, 'db.default:5432': { endpoints: [ep('c', 'healthy')] } };
  const merged = mergeClusterStates([w0, w1]);
  expect(merged['web.default:80']).toEqual({ endpoints: [ep('a', 'healthy', { rq: 1 }), ep('b', 'outlier-ejected', { lastEjectionReason: '5xx' })] });
  expect(merged['db.default:5432']).toBe(w0['db.default:5432']);
  // The inputs are not changed.
  expect(w0['web.default:80'].endpoints[1].health).toBe('healthy');
});

test('a cluster only one worker knows yet (a config still arriving) is shown; no workers, no clusters', () => {
  expect(mergeClusterStates([{}, { 'api.default:80': { endpoints: [] } }])).toEqual({ 'api.default:80': { endpoints: [] } });
  expect(mergeClusterStates([])).toEqual({});
});
