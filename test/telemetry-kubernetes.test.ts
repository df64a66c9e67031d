import type { ControlPlane } from '../control-plane/server.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { FakeKubeApi, podJson } from './fake-kube-api.js';
import { waitFor } from './control-plane-harness.js';
import { startKubeControlPlane } from './helpers/kube-control-plane.js';
import { subscriber } from './helpers/subscriber.js';

/** Telemetry resources watched through the real client-node informers (Kubernetes faked at the HTTP level), resolved per subscriber. */
let api: FakeKubeApi;
let cp: ControlPlane;
let client: DiscoveryClient;

const telemetry = (name: string, ns: string, spec: Record<string, unknown>) => ({ apiVersion: 'policy.wren.io/v1alpha1', kind: 'Telemetry', metadata: { name, namespace: ns }, spec });

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  api.apply('pods', podJson('web-a', 'shop', 'web-sa', '10.0.0.1')); // labels app: web
  api.apply('telemetries', telemetry('mesh-default', 'wren-system', { tracing: [{ randomSamplingPercentage: 10 }] }));
  cp = await startKubeControlPlane(api, { seed: 11 });
  client = subscriber(cp, { namespace: 'shop', serviceAccount: 'web-sa', pod: 'web-a', labels: {} });
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
