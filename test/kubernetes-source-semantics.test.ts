import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';

/**
 * The Kubernetes source against API semantics the basic tests do not exercise: a pod
 * recreated under the same name (a StatefulSet member) while the pods watch lags the
 * EndpointSlices watch, a pod whose workload labels change, a terminating endpoint published as
 * ready (publishNotReadyAddresses), an API server down at start and later, RBAC refusing one
 * resource, a CRD that is not installed (the fake's `unavailable`, `forbidden`, `missing`).
 * Fake API server at the HTTP level <- real client-node informers -> store -> real gRPC -> DiscoveryClient.
 */
describe('Kubernetes source: API semantics', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  const proxies: TestProxy[] = [];

  const start = async (): Promise<void> => {
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    });
    await cp.whenReady();
  };

  beforeEach(async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
    api.apply('services', serviceJson('db', 'shop', [{ name: 'tcp-db', port: 5432 }]));
    api.apply('pods', podJson('db-0', 'shop', 'db-sa', '10.0.0.1'));
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [{ ip: '10.0.0.1', pod: 'db-0' }]));
  });

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
    await api.close();
  });

  const proxy = (): TestProxy => {
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`);
    proxies.push(p);
    return p;
  };

  test('a StatefulSet pod recreated under its name comes back, though its slice changed before the pods watch saw the old pod go', async () => {
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    expect(endpointsOf(p.client.current(), 'db.shop')).toEqual(['10.0.0.1:5432']);
    // The EndpointSlice controller has already moved db-0 to the new pod's address (its
    // watch is ahead), then the pods watch delivers the old pod's deletion and the new pod.
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [{ ip: '10.0.0.7', pod: 'db-0' }]));
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').join() === '10.0.0.7:5432', 'slice moved to the new address');
    api.delete('pods', 'shop', 'db-0');
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').length === 0, 'held back while no pod db-0 is known');
    api.apply('pods', podJson('db-0', 'shop', 'db-sa', '10.0.0.7'));
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').join() === '10.0.0.7:5432', 'the new db-0 is an endpoint again');
    const ep = p.client.current()!.services.find((s) => s.name === 'db')!.ports[0].endpoints[0];
    expect(ep.identity).toBe('spiffe://cluster.local/ns/shop/sa/db-sa');
  });

  test('while a slice still names the previous incarnation of a pod (targetRef.uid), its old address is not sent with the new pod', async () => {
    const uid = (name: string) => api.get('pods', 'shop', name)!.metadata.uid as string;
    api.apply('services', serviceJson('other', 'shop', [{ name: 'http', port: 80 }], '10.96.0.80'));
    api.apply('endpointslices', endpointSliceJson('other-x', 'shop', 'other', [{ name: 'http', port: 80 }], [{ ip: '10.0.9.1', pod: 'm-0' }]));
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [{ ip: '10.0.0.1', pod: 'db-0', podUid: uid('db-0') }]));
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    expect(endpointsOf(p.client.current(), 'db.shop')).toEqual(['10.0.0.1:5432']);
    // The pods watch is ahead: db-0 was deleted (force) and created again, with a new uid and
    // address; the slice still lists the old one at 10.0.0.1 (which may already be another pod's).
    api.delete('pods', 'shop', 'db-0');
    api.apply('pods', podJson('db-0', 'shop', 'db-sa', '10.0.0.7'));
    api.apply('pods', podJson('m-0', 'shop', 'default', '10.0.9.1', false)); // same watch, later: db-0 was seen by then
    await waitFor(() => endpointsOf(p.client.current(), 'other.shop').length === 1, 'marker pod seen');
    expect(endpointsOf(p.client.current(), 'db.shop')).toEqual([]);
    // The slice catches up: the new incarnation at its address.
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [{ ip: '10.0.0.7', pod: 'db-0', podUid: uid('db-0') }]));
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').join() === '10.0.0.7:5432', 'the new incarnation');
  });

  test('a pod whose workload labels change (version relabelled) reaches the endpoints proxies have', async () => {
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    const workload = () => p.client.current()?.services.find((s) => s.name === 'db')?.ports[0].endpoints[0]?.workload;
    expect(workload()).toMatchObject({ name: 'db-0', app: 'db', version: '' });
    const pod = podJson('db-0', 'shop', 'db-sa', '10.0.0.1') as { metadata: { labels: Record<string, string> } };
    pod.metadata.labels.version = 'v2';
    api.apply('pods', pod);
    await waitFor(() => workload()?.version === 'v2', 'the endpoint carries the new version label');
  });

  test('a terminating endpoint its Service publishes as ready (publishNotReadyAddresses) keeps routing, as kube-proxy, Istio and Linkerd route it', async () => {
    api.apply('pods', podJson('db-1', 'shop', 'db-sa', '10.0.0.2'));
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    // The EndpointSlice controller's conditions for a Service with publishNotReadyAddresses:
    // ready stays true for a terminating pod (the override the API documents), serving true.
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [
      { ip: '10.0.0.1', pod: 'db-0', ready: true, serving: true, terminating: true },
      { ip: '10.0.0.2', pod: 'db-1' },
    ]));
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').includes('10.0.0.2:5432'), 'slice update applied');
    expect(endpointsOf(p.client.current(), 'db.shop')).toEqual(['10.0.0.1:5432', '10.0.0.2:5432']);
    // Without the override a terminating pod is not ready, and leaves.
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [
      { ip: '10.0.0.1', pod: 'db-0', ready: false, serving: true, terminating: true },
      { ip: '10.0.0.2', pod: 'db-1' },
    ]));
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').join() === '10.0.0.2:5432', 'terminating, not ready: removed');
  });

  test('appProtocol decides a port protocol over its name, as in Istio: proxies get WebSocket-over-TLS as opaque', async () => {
    api.apply('services', serviceJson('ws', 'shop', [{ name: 'http', port: 443, appProtocol: 'kubernetes.io/wss' }, { name: 'tcp-ws', port: 80, appProtocol: 'kubernetes.io/ws' }], '10.96.0.70'));
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    const ws = p.client.current()!.services.find((s) => s.name === 'ws')!;
    expect(ws.ports.map((x) => [x.port, x.protocol])).toEqual([[443, 'opaque'], [80, 'http1']]);
  });

  test('an API server down at start: not ready, then ready once it answers; down later: the last state stays and catches up', async () => {
    api.unavailable = true;
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    });
    const ready = async () => (await fetch(`http://127.0.0.1:${cp.adminPort}/ready`)).status;
    await waitFor(() => api.requests.length > 20, 'lists tried');
    expect(await ready()).toBe(503);
    api.unavailable = false;
    await cp.whenReady();
    expect(await ready()).toBe(200);
    const p = proxy();
    await p.client.onFirstSnapshot();
    expect(endpointsOf(p.client.current(), 'db.shop')).toEqual(['10.0.0.1:5432']);
    // Down again, watches cut: proxies keep the last state, the control plane stays ready.
    api.unavailable = true;
    api.dropWatches();
    api.apply('pods', podJson('db-1', 'shop', 'db-sa', '10.0.0.2'));
    api.apply('endpointslices', endpointSliceJson('db-x', 'shop', 'db', [{ name: 'tcp-db', port: 5432 }], [{ ip: '10.0.0.1', pod: 'db-0' }, { ip: '10.0.0.2', pod: 'db-1' }]));
    await new Promise((r) => setTimeout(r, 300));
    expect(await ready()).toBe(200);
    expect(endpointsOf(p.client.current(), 'db.shop')).toEqual(['10.0.0.1:5432']);
    api.unavailable = false;
    await waitFor(() => endpointsOf(p.client.current(), 'db.shop').join() === '10.0.0.1:5432,10.0.0.2:5432', 'caught up after the outage');
  });

  test('RBAC refusing one resource (403): not ready, since what it cannot read may deny traffic; ready once granted', async () => {
    api.forbidden.add('authorizationpolicies');
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    });
    await waitFor(() => api.requests.filter((r) => r.path.endsWith('/authorizationpolicies')).length >= 3, 'the list retried');
    expect((await fetch(`http://127.0.0.1:${cp.adminPort}/ready`)).status).toBe(503);
    api.forbidden.delete('authorizationpolicies');
    await cp.whenReady();
    expect((await fetch(`http://127.0.0.1:${cp.adminPort}/ready`)).status).toBe(200);
  });

  test('a CRD that is not installed (no Gateway API) is asked for with growing backoff, not in a loop', async () => {
    for (const r of ['httproutes', 'grpcroutes', 'referencegrants'] as const) api.missing.add(r);
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    // The source runs without routes; the missing resource is looked for again with the
    // source's backoff (20 ms doubling to 200 ms here): over 1.5 s that is a few tries, not one every 20 ms.
    const before = api.requests.length;
    await new Promise((r) => setTimeout(r, 1500));
    const asked = api.requests.slice(before).filter((r) => r.path === '/apis/gateway.networking.k8s.io/v1/httproutes').length;
    expect(asked).toBeGreaterThan(0);
    expect(asked).toBeLessThanOrEqual(2 * Math.ceil(1500 / 100) + 2);
    // Installed later, it is picked up: listed and watched.
    api.missing.delete('httproutes');
    await waitFor(() => api.watcherCount('httproutes') === 1, 'httproutes watched once the CRD exists');
  });
});
