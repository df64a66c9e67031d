import type * as k8s from '@kubernetes/client-node';
import { FakeClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { compileRoutes } from '../translate/route-compile.js';
import { parseHttpRoute } from '../translate/route-objects.js';
import { RouteStatusWriter } from './route-status-writer.js';

const route = (rv: string) =>
  parseHttpRoute({
    kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'shop', generation: 1, resourceVersion: rv },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [{ name: 'reviews', port: 80 }] }] },
  }, '');
const lookup = () => ({ ports: [{ name: 'http', port: 80 }] });
const flush = () => new Promise((r) => setImmediate(r));

test('a failed write whose route event already came (and was skipped while in flight) is retried after retryMs, with the latest object', async () => {
  const calls: { rv: unknown }[] = [];
  let fail = true;
  const custom = {
    patchNamespacedCustomObjectStatus: (req: { body: { metadata?: { resourceVersion?: string } } }) => {
      calls.push({ rv: req.body.metadata?.resourceVersion });
      return fail ? Promise.reject(new Error('409 Conflict')) : Promise.resolve({});
    },
  } as unknown as k8s.CustomObjectsApi;
  const clock = new FakeClock();
  const w = new RouteStatusWriter(custom, clock, silentLogger, 500);
  const first = route('10');
  w.update([first], compileRoutes([first], [], lookup).statuses);
  // The newer object's event arrives while the write is in flight: same wanted status, skipped.
  const newer = route('11');
  w.update([newer], compileRoutes([newer], [], lookup).statuses);
  expect(calls).toEqual([{ rv: '10' }]);
  await flush();
  fail = false;
  clock.advance(499);
  expect(calls).toHaveLength(1);
  clock.advance(1);
  expect(calls).toEqual([{ rv: '10' }, { rv: '11' }]);
  await flush();
  w.stop();
});
