import * as k8s from '@kubernetes/client-node';
import { FakeClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { kubeWriteRetries } from '../control-plane/kube-write-retry.js';
import { MAX_STATUS_RETRY_AFTER_MS, RouteStatusWriter } from '../control-plane/sources/route-status-writer.js';
import { compileRoutes } from '../control-plane/translate/route-compile.js';
import { parseHttpRoute, type KRoute } from '../control-plane/translate/route-objects.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { until } from './helpers/until.js';

/**
 * A route status PATCH the API server answers 429 with Retry-After (API Priority and
 * Fairness had no seat for it): the writer waits max(1 s, Retry-After), capped, before
 * asking again, as client-go's rest client does (rest/with_retry.go checkWait), and counts
 * it. It asked again after a fixed 1 s, whatever the API server had said.
 */
const PATH = 'PATCH /apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r/status';

const waitFor = async (cond: () => boolean) => expect(await until(cond, 5_000)).toBe(true);

let api: FakeKubeApi;
beforeAll(async () => {
  api = await FakeKubeApi.start();
});
afterAll(() => api.close());

function rig(): { clock: FakeClock; w: RouteStatusWriter; calls: () => number; route: KRoute; update: () => void } {
  const obj = api.apply('httproutes', {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'shop' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }], rules: [{ backendRefs: [{ name: 'reviews', port: 80 }] }] },
  });
  const route = parseHttpRoute(obj, '');
  const custom = api.kubeConfig().makeApiClient(k8s.CustomObjectsApi);
  // Counted as the writer calls it (synchronously), not as the request reaches the server.
  let calls = 0;
  const patch = custom.patchNamespacedCustomObjectStatus.bind(custom);
  custom.patchNamespacedCustomObjectStatus = ((...a: Parameters<typeof patch>) => (calls++, patch(...a))) as typeof patch;
  const clock = new FakeClock();
  const w = new RouteStatusWriter(custom, clock, silentLogger);
  const statuses = compileRoutes([route], [], () => ({ ports: [{ name: 'http', port: 80 }] })).statuses;
  return { clock, w, calls: () => calls, route, update: () => w.update([route], statuses) };
}

beforeEach(() => {
  api.throttle.clear();
  api.throttledSent.clear();
});

test('a 429 with Retry-After: 5 is asked again after 5 s, not 1 s, and counted (wren_cp_kube_write_retries_total{request="RouteStatus"})', async () => {
  const r = rig();
  const retried = kubeWriteRetries('RouteStatus', 'retried');
  api.throttle.set(PATH, { count: 1, retryAfter: '5' });
  const patched = api.statusPatches.length;
  r.update();
  expect(r.calls()).toBe(1);
  await waitFor(() => r.clock.pending() === 1); // the failed write armed its retry
  expect(api.throttledSent.get(PATH)).toBe(1);
  expect(kubeWriteRetries('RouteStatus', 'retried')).toBe(retried + 1);
  r.clock.advance(4_999);
  expect(r.calls()).toBe(1);
  r.clock.advance(1);
  expect(r.calls()).toBe(2);
  await waitFor(() => api.statusPatches.length === patched + 1);
  expect(api.get('httproutes', 'shop', 'r')!.status).toMatchObject({ parents: [{ controllerName: 'wren.io/mesh' }] });
  r.w.stop();
});

test('a Retry-After over the cap waits the cap; a 429 with no Retry-After (or another failure) waits the 1 s it always did', async () => {
  const r = rig();
  api.throttle.set(PATH, { count: 1, retryAfter: '3600' });
  r.update();
  await waitFor(() => r.clock.pending() === 1);
  r.clock.advance(MAX_STATUS_RETRY_AFTER_MS - 1);
  expect(r.calls()).toBe(1);
  api.throttle.set(PATH, { count: 1, retryAfter: 'soon' }); // unusable: as a failure without one
  r.clock.advance(1);
  expect(r.calls()).toBe(2);
  await waitFor(() => api.throttledSent.get(PATH) === 2 && r.clock.pending() === 1);
  r.clock.advance(999);
  expect(r.calls()).toBe(2);
  r.clock.advance(1);
  expect(r.calls()).toBe(3);
  await waitFor(() => api.get('httproutes', 'shop', 'r')!.status !== undefined);
  r.w.stop();
});
