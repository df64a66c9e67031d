import { createLogger } from '../common/logger.js';
import type { ControlPlane } from '../control-plane/server.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { waitFor } from './control-plane-harness.js';
import { startKubeControlPlane } from './helpers/kube-control-plane.js';
import { subscriber } from './helpers/subscriber.js';

/** ExternalServices watched through the real client-node informers (Kubernetes faked at the HTTP level) and pushed with the mesh-wide egress mode. */
let api: FakeKubeApi;
let cp: ControlPlane;
let client: DiscoveryClient;
const logs: string[] = [];

const externalService = (name: string, ns: string, spec: Record<string, unknown>) => ({ apiVersion: 'policy.wren.io/v1alpha1', kind: 'ExternalService', metadata: { name, namespace: ns }, spec });

beforeAll(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  api.apply('externalservices', externalService('github', 'shop', { hosts: ['api.github.com'], ports: [{ number: 443, protocol: 'TLS' }] }));
  cp = await startKubeControlPlane(api, { seed: 12, control: { logger: createLogger({ level: 'warn', sink: (l) => void logs.push(l) }), egressMode: 'REGISTRY_ONLY' } });
  client = subscriber(cp, { namespace: 'other', serviceAccount: 'app', pod: 'app-0', labels: {} });
});

afterAll(async () => {
  await client?.stop();
  await cp?.close(100);
  await api?.close();
});

const pushed = () => client.current()?.egress;

test('the first snapshot carries the mode and every ExternalService (any namespace); a new one is pushed', async () => {
  const snap = await client.onFirstSnapshot();
  expect(snap.egress).toEqual({ mode: 'REGISTRY_ONLY', externalServices: [{ name: 'shop/github', hosts: ['api.github.com'], addresses: [], ports: [{ number: 443, protocol: 'TLS', name: '' }] }] });
  api.apply('externalservices', externalService('db', 'data', { hosts: ['db.corp'], addresses: ['10.1.0.0/16'], ports: [{ number: 5432, protocol: 'TCP' }] }));
  await waitFor(() => pushed()?.externalServices.length === 2, 'new ExternalService pushed');
  expect(pushed()?.externalServices.map((e) => e.name)).toEqual(['data/db', 'shop/github']);
});

test('an invalid update is rejected with its field path (logged, counted) and the last good version stays; a delete is pushed', async () => {
  api.apply('externalservices', externalService('db', 'data', { hosts: ['db.corp'], ports: [{ number: 5432, protocol: 'TCP' }] }));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [1-9]/.test(await cp.metrics.registry.metrics()), 'rejection counted');
  expect(logs.join('\n')).toContain('spec.addresses: required with a TCP port (ports[0])');
  expect(pushed()?.externalServices.find((e) => e.name === 'data/db')?.addresses).toEqual(['10.1.0.0/16']);
  api.delete('externalservices', 'data', 'db');
  await waitFor(() => pushed()?.externalServices.length === 1, 'delete pushed');
  expect(pushed()?.externalServices.map((e) => e.name)).toEqual(['shop/github']);
});
