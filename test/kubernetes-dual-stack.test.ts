import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson, type SliceEndpointSpec } from './fake-kube-api.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';

/**
 * A dual-stack Service as the EndpointSlice controller publishes it: one slice per IP family,
 * each dual-stack pod in both. Each pod is one endpoint of the port, of the Service's primary
 * family (translate.ts portEndpoints), its other address carried along (Endpoint.additionalAddresses).
 * Taken as two endpoints, a dual-stack pod had twice the
 * traffic share of a single-stack one, and counted twice in outlier ejection (adv21).
 * Fake API server at the HTTP level <- real client-node informers -> store -> real gRPC -> DiscoveryClient.
 */
describe('Kubernetes source: dual-stack Services', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  const proxies: TestProxy[] = [];
  const port = [{ name: 'http', port: 8080 }];
  const dualStack = (primary: 'IPv4' | 'IPv6'): Record<string, unknown> => {
    const s = serviceJson('web', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }]) as { spec: Record<string, unknown> };
    const ips = primary === 'IPv4' ? ['10.96.0.10', 'fd00:96::10'] : ['fd00:96::10', '10.96.0.10'];
    return { ...s, spec: { ...s.spec, clusterIP: ips[0], clusterIPs: ips, ipFamilies: primary === 'IPv4' ? ['IPv4', 'IPv6'] : ['IPv6', 'IPv4'], ipFamilyPolicy: 'RequireDualStack' } };
  };
  const v6Slice = (name: string, endpoints: SliceEndpointSpec[]) => ({ ...endpointSliceJson(name, 'shop', 'web', port, endpoints), addressType: 'IPv6' });

  beforeEach(async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
    for (const [pod, ip] of [['web-a', '10.0.0.1'], ['web-b', '10.0.0.2'], ['web-c', '10.0.0.3']]) api.apply('pods', podJson(pod, 'shop', 'web-sa', ip));
    api.apply('endpointslices', endpointSliceJson('web-v4', 'shop', 'web', port, [{ ip: '10.0.0.1', pod: 'web-a' }, { ip: '10.0.0.2', pod: 'web-b' }, { ip: '10.0.0.3', pod: 'web-c' }]));
    // web-c runs on a node without IPv6 (no address of that family).
    api.apply('endpointslices', v6Slice('web-v6', [{ ip: 'fd00::1', pod: 'web-a' }, { ip: 'fd00::2', pod: 'web-b' }]));
  });

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
    await api.close();
  });

  const start = async (): Promise<TestProxy> => {
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    });
    await cp.whenReady();
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`);
    proxies.push(p);
    await p.client.onFirstSnapshot();
    return p;
  };

  test('IPv4-primary: three pods are three endpoints, their IPv4 addresses; a pod that leaves the IPv4 slice only is served by its IPv6 address', async () => {
    api.apply('services', dualStack('IPv4'));
    const p = await start();
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
    const ep = p.client.current()!.services.find((s) => s.name === 'web')!.ports[0].endpoints.find((e) => e.address === '10.0.0.1')!;
    expect(ep.identity).toBe('spiffe://cluster.local/ns/shop/sa/web-sa');
    // Its IPv6 address travels with it (a connection to that pod IP is still the pod's), never balanced to.
    expect(ep.additionalAddresses).toEqual(['fd00::1']);
    api.apply('endpointslices', endpointSliceJson('web-v4', 'shop', 'web', port, [{ ip: '10.0.0.1', pod: 'web-a' }, { ip: '10.0.0.2', pod: 'web-b', ready: false }, { ip: '10.0.0.3', pod: 'web-c' }]));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').includes('fd00::2:8080'), 'web-b by its IPv6 address');
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080', '10.0.0.3:8080', 'fd00::2:8080']);
  });

  test('IPv6-primary: the dual-stack pods by their IPv6 addresses, the IPv4-only pod by its IPv4 one', async () => {
    api.apply('services', dualStack('IPv6'));
    const p = await start();
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.3:8080', 'fd00::1:8080', 'fd00::2:8080']);
  });
});
