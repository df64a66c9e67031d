import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';
import { endpointsOf, percentile, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';

/**
 * Health-based deregistration: an EndpointSlice readiness flip in the (fake) API server
 * reaches 100 real gRPC subscribers. The p99 is printed; the bound asserted is generous
 * on purpose (speed is measured by bench/control-plane.ts, this checks the path works).
 */
describe('deregistration fan-out', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  const proxies: TestProxy[] = [];
  const N = 100;
  const ips = Array.from({ length: 10 }, (_, i) => `10.0.0.${i + 1}`);

  beforeAll(async () => {
    api = await FakeKubeApi.start();
    api.apply('services', serviceJson('web', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }]));
    ips.forEach((ip, i) => api.apply('pods', podJson(`web-${i}`, 'shop', 'web', ip)));
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(9), logger: silentLogger,
      source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig() }),
    });
    api.apply('endpointslices', endpointSliceJson('web-1', 'shop', 'web', [{ name: 'http', port: 8080 }], ips.map((ip, i) => ({ ip, pod: `web-${i}` }))));
    await cp.whenReady();
    for (let i = 0; i < N; i++) proxies.push(startProxy(`127.0.0.1:${cp.grpcPort}`, { pod: `client-${i}`, seed: i + 1 }));
    await Promise.all(proxies.map((p) => p.client.onFirstSnapshot()));
    await waitFor(() => proxies.every((p) => endpointsOf(p.client.current(), 'web.shop').length === ips.length), 'all proxies see 10 endpoints', 15_000);
  }, 30_000);

  afterAll(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
    await api.close();
  });

  test('a readiness change reaches every subscriber; unready, terminating and deleted endpoints disappear', async () => {
    const latencies: number[] = [];
    const steps: { ready: boolean[]; expect: number }[] = [
      { ready: ips.map((_, i) => i !== 3), expect: 9 }, // one pod turns unready
      { ready: ips.map((_, i) => i !== 3 && i !== 4), expect: 8 },
      { ready: ips.map(() => true), expect: 10 }, // back
      { ready: ips.map((_, i) => i !== 7), expect: 9 },
      { ready: ips.map(() => true), expect: 10 },
    ];
    for (const step of steps) {
      const marks = proxies.map((p) => p.applied.length);
      const t0 = performance.now();
      api.apply('endpointslices', endpointSliceJson('web-1', 'shop', 'web', [{ name: 'http', port: 8080 }], ips.map((ip, i) => ({ ip, pod: `web-${i}`, ready: step.ready[i] }))));
      await waitFor(() => proxies.every((p) => endpointsOf(p.client.current(), 'web.shop').length === step.expect), 'fan-out', 10_000);
      proxies.forEach((p, i) => latencies.push(p.appliedAt[marks[i]] - t0));
    }
    // terminating (still serving) is removed as well
    api.apply('endpointslices', endpointSliceJson('web-1', 'shop', 'web', [{ name: 'http', port: 8080 }], ips.map((ip, i) => ({ ip, pod: `web-${i}`, ready: i !== 0, serving: true, terminating: i === 0 }))));
    await waitFor(() => proxies.every((p) => !endpointsOf(p.client.current(), 'web.shop').includes('10.0.0.1:8080')), 'terminating removed', 10_000);
    // the slice deleted -> no endpoints anywhere
    api.delete('endpointslices', 'shop', 'web-1');
    await waitFor(() => proxies.every((p) => endpointsOf(p.client.current(), 'web.shop').length === 0), 'slice deletion', 10_000);

    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    console.log(`deregistration to ${N} proxies: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms over ${latencies.length} deliveries`);
    expect(latencies).toHaveLength(N * steps.length);
    expect(p99).toBeLessThan(5_000);
    // every proxy is recorded on the control plane with its ACKed version
    expect(cp.discovery.debugProxies()).toHaveLength(N);
    await waitFor(() => cp.discovery.debugProxies().every((d) => d.ackedVersion === cp.store.view.version), 'every ACK recorded');
  }, 60_000);
});
