import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson, trafficPolicyJson } from './fake-kube-api.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';

/** Kubernetes source end to end: fake API server <- real client-node informers -> store -> real gRPC -> real DiscoveryClient. */
describe('control plane with the Kubernetes source', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  const proxies: TestProxy[] = [];

  const seed = (): void => {
    api.apply('services', serviceJson('web', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }]));
    api.apply('pods', podJson('web-a', 'shop', 'web-sa', '10.0.0.1'));
    api.apply('pods', podJson('web-b', 'shop', 'web-sa', '10.0.0.2'));
    api.apply('pods', podJson('legacy-c', 'shop', 'default', '10.0.0.3', false));
    api.apply(
      'endpointslices',
      endpointSliceJson('web-abc', 'shop', 'web', [{ name: 'http', port: 8080 }], [
        { ip: '10.0.0.1', pod: 'web-a', zone: 'zone-a' },
        { ip: '10.0.0.2', pod: 'web-b' },
        { ip: '10.0.0.3', pod: 'legacy-c' },
      ]),
    );
  };

  const start = async (): Promise<void> => {
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    });
    await cp.whenReady();
  };

  beforeEach(async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
    seed();
    await start();
  });

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
    await api.close();
  });

  const proxy = (services?: string[]): TestProxy => {
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`, { services });
    proxies.push(p);
    return p;
  };

  test('initial snapshot carries ready endpoints with identities from the pods', async () => {
    const p = proxy();
    const snap = await p.client.onFirstSnapshot();
    const web = snap.services.find((s) => s.name === 'web');
    expect(web).toBeDefined();
    expect(web!.ports[0]).toMatchObject({ name: 'http', port: 80, protocol: 'http1' });
    const eps = web!.ports[0].endpoints;
    expect(eps.map((e) => `${e.address}:${e.port}`)).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
    expect(eps[0]).toMatchObject({ identity: 'spiffe://cluster.local/ns/shop/sa/web-sa', proxyPort: 15006, zone: 'zone-a', ready: true });
    expect(eps[2]).toMatchObject({ identity: '', proxyPort: null });
    expect(snap.source).toBe(`control-plane:127.0.0.1:${cp.grpcPort}`);
  });

  test('create, update (readiness, terminating) and delete objects reach subscribed proxies', async () => {
    const p = proxy(['web.shop', 'api.shop']);
    await p.client.onFirstSnapshot();
    // readiness flips off -> endpoint disappears
    api.apply('endpointslices', endpointSliceJson('web-abc', 'shop', 'web', [{ name: 'http', port: 8080 }], [
      { ip: '10.0.0.1', pod: 'web-a', zone: 'zone-a' },
      { ip: '10.0.0.2', pod: 'web-b', ready: false },
      { ip: '10.0.0.3', pod: 'legacy-c', ready: false, serving: true, terminating: true },
    ]));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.1:8080', 'unready+terminating endpoints removed');
    // a new Service with its slice and pod
    api.apply('services', serviceJson('api', 'shop', [{ name: 'grpc', port: 9090 }], '10.96.0.20'));
    api.apply('endpointslices', endpointSliceJson('api-x', 'shop', 'api', [{ name: 'grpc', port: 9090 }], [{ ip: '10.0.1.1', pod: 'api-0' }]));
    // the endpoint is held back until its Pod is known (never sent as plaintext by mistake)
    await waitFor(() => p.client.current()?.services.some((s) => s.name === 'api'), 'api service appears');
    expect(endpointsOf(p.client.current(), 'api.shop')).toEqual([]);
    api.apply('pods', podJson('api-0', 'shop', 'api-sa', '10.0.1.1'));
    await waitFor(() => endpointsOf(p.client.current(), 'api.shop').join() === '10.0.1.1:9090', 'api endpoint after its pod');
    const apiSvc = p.client.current()!.services.find((s) => s.name === 'api')!;
    expect(apiSvc.ports[0].protocol).toBe('grpc');
    expect(apiSvc.ports[0].endpoints[0].identity).toBe('spiffe://cluster.local/ns/shop/sa/api-sa');
    // a TrafficPolicy changes the service's policy
    api.apply('trafficpolicies', trafficPolicyJson('api-policy', 'shop', 'api', { loadBalancer: { kind: 'round-robin' }, timeouts: { connectMs: '250ms' } }));
    await waitFor(() => p.client.current()?.services.find((s) => s.name === 'api')?.policy.loadBalancer.kind === 'round-robin', 'policy applied');
    expect(p.client.current()!.services.find((s) => s.name === 'api')!.policy.timeouts.connectMs).toBe(250);
    // an invalid TrafficPolicy update is rejected; the last good one stays
    api.apply('trafficpolicies', trafficPolicyJson('api-policy', 'shop', 'api', { loadBalancer: { kind: 'fastest' } }));
    api.apply('pods', podJson('web-z', 'shop', 'web-sa', '10.0.0.9')); // something else to wait on
    await waitFor(async () => (await cp.metrics.invalidObjects.get()).values[0]?.value === 1, 'invalid object counted');
    expect(p.client.current()!.services.find((s) => s.name === 'api')!.policy.loadBalancer.kind).toBe('round-robin');
    // delete the Service -> gone
    api.delete('services', 'shop', 'api');
    await waitFor(() => !p.client.current()?.services.some((s) => s.name === 'api'), 'api service removed');
    // the filtered proxy never saw services it did not ask for
    api.apply('services', serviceJson('other', 'shop', [{ port: 81 }], '10.96.0.30'));
    await waitFor(() => cp.store.view.services.has('other.shop'), 'other in store');
    expect(p.applied.every((s) => s.services.every((x) => ['web', 'api'].includes(x.name)))).toBe(true);
  });

  test('a MeshService created, updated and deleted in Kubernetes reaches proxies; while it exists it wins over the Service of its name', async () => {
    const p = proxy();
    await p.client.onFirstSnapshot();
    const meshService = (endpoints: string[], connectMs: string) => ({
      apiVersion: 'policy.wren.io/v1alpha1',
      kind: 'MeshService',
      metadata: { name: 'cache', namespace: 'shop' },
      spec: {
        clusterIPs: ['10.96.0.60'],
        ports: [{ name: 'redis', port: 6379, protocol: 'opaque' }],
        endpoints: endpoints.map((address) => ({ address, port: 7000 })),
        policy: { timeouts: { connectMs } },
      },
    });
    const cache = () => p.client.current()?.services.find((s) => s.name === 'cache' && s.namespace === 'shop');
    api.apply('meshservices', meshService(['10.0.5.1'], '300ms'));
    await waitFor(() => cache(), 'MeshService created');
    expect(cache()!.clusterIPs).toEqual(['10.96.0.60']);
    expect(cache()!.ports[0]).toMatchObject({ port: 6379, protocol: 'opaque' });
    expect(endpointsOf(p.client.current(), 'cache.shop')).toEqual(['10.0.5.1:7000']);
    expect(cache()!.policy.timeouts.connectMs).toBe(300);

    api.apply('meshservices', meshService(['10.0.5.1', '10.0.5.2'], '700ms'));
    await waitFor(() => endpointsOf(p.client.current(), 'cache.shop').length === 2 && cache()!.policy.timeouts.connectMs === 700, 'MeshService update');

    // A Service of the same name does not replace it while it exists.
    api.apply('services', serviceJson('cache', 'shop', [{ name: 'redis', port: 6380 }], '10.96.0.61'));
    // Same watch, later event: once `marker` arrived, the Service `cache` was processed too.
    api.apply('services', serviceJson('marker', 'shop', [{ port: 81 }], '10.96.0.62'));
    await waitFor(() => p.client.current()?.services.some((s) => s.name === 'marker'), 'marker service');
    expect(cache()!.ports.map((x) => x.port)).toEqual([6379]);

    // Deleted: the Service of that name takes over; deleting that too removes it.
    api.delete('meshservices', 'shop', 'cache');
    await waitFor(() => cache()?.ports[0].port === 6380, 'MeshService deleted, the Service takes over');
    api.delete('services', 'shop', 'cache');
    await waitFor(() => !cache(), 'both gone');
  });

  test.each(['event', 'http'] as const)('a watch answered with 410 Gone (%s) relists and converges', async (mode) => {
    const p = proxy();
    await p.client.onFirstSnapshot();
    api.goneMode = mode;
    // The watches drop; while they are down, things change and the history is compacted.
    api.dropWatches();
    api.apply('endpointslices', endpointSliceJson('web-abc', 'shop', 'web', [{ name: 'http', port: 8080 }], [{ ip: '10.0.0.1', pod: 'web-a' }]));
    api.delete('pods', 'shop', 'legacy-c');
    api.expireHistory();
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.1:8080', 'converged after relist');
    const restarts = await cp.metrics.watchRestarts.get();
    const relists = restarts.values.filter((v) => v.labels.reason === 'relist' && v.labels.resource === 'endpointslices');
    expect(relists.reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(1);
    // and it keeps watching from the new resourceVersion
    api.apply('endpointslices', endpointSliceJson('web-abc', 'shop', 'web', [{ name: 'http', port: 8080 }], [{ ip: '10.0.0.2', pod: 'web-b' }]));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.2:8080', 'watch resumed');
  });

  test('an ERROR 410 event on an open watch makes the informer relist', async () => {
    const p = proxy();
    await p.client.onFirstSnapshot();
    api.expireHistory({ dropWatches: true, withError: true });
    api.apply('services', serviceJson('late', 'shop', [{ port: 82 }], '10.96.0.40'));
    await waitFor(() => p.client.current()?.services.some((s) => s.name === 'late'), 'service created after the 410 arrives');
  });

  test('bookmarks advance the resourceVersion, so a reconnect after compaction needs no relist', async () => {
    const p = proxy();
    await p.client.onFirstSnapshot();
    expect(api.requests.some((r) => r.path === '/api/v1/services' && r.query.watch === 'true' && r.query.allowWatchBookmarks === 'true')).toBe(true);
    // Changes elsewhere advance the global resourceVersion past the Services watch's last event.
    for (let i = 0; i < 5; i++) api.apply('pods', podJson(`other-${i}`, 'misc', 'default', `10.9.0.${i}`));
    const rvAfter = api.resourceVersion;
    api.sendBookmarks();
    await waitFor(() => cp.store.view && true, 'tick');
    await new Promise((r) => setTimeout(r, 50));
    api.expireHistory(); // everything older than rvAfter is gone
    const before = api.requests.length;
    api.dropWatches();
    await waitFor(() => api.requests.slice(before).some((r) => r.path === '/api/v1/services' && r.query.watch === 'true'), 'services watch reconnects');
    const rewatch = api.requests.slice(before).find((r) => r.path === '/api/v1/services' && r.query.watch === 'true')!;
    expect(rewatch.query.resourceVersion).toBe(rvAfter);
    api.apply('services', serviceJson('after', 'shop', [{ port: 83 }], '10.96.0.50'));
    await waitFor(() => p.client.current()?.services.some((s) => s.name === 'after'), 'still watching');
    // No relist of services was needed, in the whole window up to the new event's arrival
    // (checked only now: a 410 answer and the relist it causes come after the rewatch).
    expect(api.requests.slice(before).some((r) => r.path === '/api/v1/services' && r.query.watch !== 'true')).toBe(false);
  });
});
