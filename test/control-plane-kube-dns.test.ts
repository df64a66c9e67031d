import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';

/**
 * Objects every cluster has, or a bad one anyone can write, must not stop the proxies'
 * config: a proxy refuses a whole update when one service in it is invalid (contract/parse.ts),
 * so the control plane refuses such an object alone (with its field path, in /debug/rejected)
 * and sends what the proxies can take.
 */
describe('control plane: objects the proxies could not take do not reach them', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  const proxies: TestProxy[] = [];

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp?.close(100);
    await api?.close();
  });

  test('kube-dns (53/UDP beside 53/TCP) and an EndpointSlice with a bad address: the rest flows, later changes too', async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 500 });
    api.apply('services', serviceJson('web', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }]));
    api.apply('pods', podJson('web-a', 'shop', 'web-sa', '10.0.0.1'));
    api.apply('pods', podJson('web-b', 'shop', 'web-sa', '10.0.0.2'));
    api.apply('endpointslices', endpointSliceJson('web-abc', 'shop', 'web', [{ name: 'http', port: 8080 }], [{ ip: '10.0.0.1', pod: 'web-a' }]));
    // kube-system/kube-dns as `kubectl get svc,endpointslices -o json` shows it (trimmed).
    api.apply('services', {
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'kube-dns', namespace: 'kube-system' },
      spec: {
        clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], type: 'ClusterIP',
        ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 }, { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 }, { name: 'metrics', port: 9153, protocol: 'TCP', targetPort: 9153 }],
      },
    });
    api.apply('endpointslices', {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'kube-dns-x1', namespace: 'kube-system', labels: { 'kubernetes.io/service-name': 'kube-dns' } },
      addressType: 'IPv4',
      ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'metrics', port: 9153, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.244.0.5'], conditions: { ready: true } }],
    });
    // An address no API server would take (leading zeros); one proxy refusing it would refuse everything with it.
    api.apply('services', serviceJson('cache', 'shop', [{ name: 'tcp', port: 6379, targetPort: 6379 }], '10.96.0.30'));
    api.apply('endpointslices', {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'cache-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'cache' } },
      addressType: 'IPv4', ports: [{ name: 'tcp', port: 6379 }], endpoints: [{ addresses: ['010.000.000.004'], conditions: { ready: true } }],
    });

    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(7), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
    });
    await cp.whenReady();
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`, { pod: 'all' });
    proxies.push(p);

    const snap = await p.client.onFirstSnapshot();
    expect(snap.services.map((s) => `${s.name}.${s.namespace}`).sort()).toEqual(['cache.shop', 'kube-dns.kube-system', 'web.shop']);
    const dns = snap.services.find((s) => s.name === 'kube-dns')!;
    expect(dns.ports.map((q) => [q.name, q.port])).toEqual([['dns-tcp', 53], ['metrics', 9153]]);
    expect(endpointsOf(snap, 'kube-dns.kube-system', 53)).toEqual(['10.244.0.5:53']);
    expect(endpointsOf(snap, 'cache.shop')).toEqual([]);
    const rejected = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/rejected`)).json()) as { rejected: { kind: string; name: string; path: string; reason: string }[] };
    expect(rejected.rejected).toEqual([
      expect.objectContaining({ kind: 'EndpointSlice', name: 'cache-1', path: 'endpoints[0].addresses[0]', reason: 'expected an IPv4 address, got "010.000.000.004"' }),
    ]);

    // A later change of another service reaches the proxy (no update is refused).
    api.apply('endpointslices', endpointSliceJson('web-abc', 'shop', 'web', [{ name: 'http', port: 8080 }], [{ ip: '10.0.0.1', pod: 'web-a' }, { ip: '10.0.0.2', pod: 'web-b' }]));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').length === 2, 'the later change pushed');
    // Fixing the slice brings its endpoint.
    api.apply('endpointslices', {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'cache-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'cache' } },
      addressType: 'IPv4', ports: [{ name: 'tcp', port: 6379 }], endpoints: [{ addresses: ['10.0.0.4'], conditions: { ready: true } }],
    });
    await waitFor(() => endpointsOf(p.client.current(), 'cache.shop').length === 1, 'the fixed slice pushed');
    expect(p.client.stats.rejected).toBe(0);
  });
});
