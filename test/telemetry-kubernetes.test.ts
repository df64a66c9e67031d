import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { FakeKubeApi, podJson } from './fake-kube-api.js';
import { waitFor } from './control-plane-harness.js';

/** Telemetry resources watched through the real client-node informers (Kubernetes faked at the HTTP level), resolved per subscriber. */
let api: FakeKubeApi;
let cp: ControlPlane;
let client: DiscoveryClient;

const telemetry = (name: string, ns: string, spec: Record<string, unknown>) => ({ apiVersion: 'policy.wren.io/v1alpha1', kind: 'Telemetry', metadata: { name, namespace: ns }, spec });

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  api.apply('pods', podJson('web-a', 'shop', 'web-sa', '10.0.0.1')); // labels app: web
  api.apply('telemetries', telemetry('mesh-default', 'wren-system', { tracing: [{ randomSamplingPercentage: 10 }] }));
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(11), logger: silentLogger,
    source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }),
  });
  await cp.whenReady();
  client = new DiscoveryClient({
    address: `127.0.0.1:${cp.grpcPort}`,
    identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web-sa', namespace: 'shop', pod: 'web-a', labels: {} },
    clock: systemClock, random: seededRandom(1), logger: silentLogger, backoff: { initialMs: 20, maxMs: 200 },
    apply: () => undefined,
  });
  client.start();
});

afterAll(async () => {
  await client?.stop();
  await cp?.close(100);
  await api?.close();
});

const pushed = () => client.current()?.telemetry;

test('the first snapshot carries the mesh-wide settings; a workload resource (selecting the Pod\'s labels) is pushed over it', async () => {
  const snap = await client.onFirstSnapshot();
  expect(snap.telemetry).toEqual({ tracing: { samplingPercent: 10 }, accessLog: { enabled: undefined, samplingPercent: undefined } });
  api.apply('telemetries', telemetry('web', 'shop', { selector: { matchLabels: { app: 'web' } }, accessLogging: [{ randomSamplingPercentage: 5 }] }));
  await waitFor(() => pushed()?.accessLog.enabled === true, 'workload resource pushed');
  expect(pushed()).toEqual({ tracing: { samplingPercent: 10 }, accessLog: { enabled: true, samplingPercent: 5 } });
});

test('an invalid update is rejected (counted) and the last good settings stay; deletes revert to no pushed settings', async () => {
  api.apply('telemetries', telemetry('web', 'shop', { selector: { matchLabels: { app: 'web' } }, accessLogging: [{ randomSamplingPercentage: 500 }] }));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [1-9]/.test(await cp.metrics.registry.metrics()), 'rejection counted');
  expect(pushed()).toEqual({ tracing: { samplingPercent: 10 }, accessLog: { enabled: true, samplingPercent: 5 } });
  api.delete('telemetries', 'shop', 'web');
  api.delete('telemetries', 'wren-system', 'mesh-default');
  await waitFor(() => pushed()?.tracing.samplingPercent === undefined && pushed()?.accessLog.enabled === undefined, 'deletes pushed');
  expect(pushed()).toEqual({ tracing: { samplingPercent: undefined }, accessLog: { enabled: undefined, samplingPercent: undefined } });
});
