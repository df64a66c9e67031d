import { connect, type Socket } from 'node:net';
import type { ControlPlane } from '../control-plane/server.js';
import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { endpointSliceJson, FakeKubeApi, serviceJson } from './fake-kube-api.js';
import { fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { startKubeControlPlane } from './helpers/kube-control-plane.js';
import { withSidecar } from './helpers/meshed-pod.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';

/**
 * A pod that declares its own server-first port with `wren.io/opaque-ports` (the injector
 * sets its sidecar's WREN_OPAQUE_PORTS, so its inbound splices the port at once) behind a
 * Service that does not declare the port's protocol: the control plane now pushes the
 * declaration with the pod's endpoints (Endpoint.opaque), and the calling sidecar treats a
 * connection to the Service's port, or to the pod's IP:port, as opaque TCP without waiting
 * for the client's first bytes (Linkerd's destination service hints a pod's opaque ports the
 * same way). Before, the server sidecar spliced at once but the caller's sniffed, and the
 * app's greeting came only after the caller's protocol.detectTimeoutMs. Through the real
 * Kubernetes source (client-node informers against a fake API server) and real sidecars.
 */
const pki = testPki();
const DETECT_MS = 2000;
const CLUSTER_IP = '10.96.9.9';
const SVC_PORT = 7000;
let api: FakeKubeApi;
let cp: ControlPlane;
let server: Proxy, client: Proxy;
let greet: FakeApp;
let nextDst = { address: CLUSTER_IP, port: SVC_PORT };

/** A running pod with the sidecar the real injector adds, annotated as the user would. */
const pod = (name: string, annotations: Record<string, string>) =>
  withSidecar({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: 'demo', labels: { app: 'db', 'wren.io/inject': 'enabled' }, annotations },
    spec: { serviceAccountName: 'db', containers: [{ name: 'app', image: 'example/db:1' }] },
    status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] },
  });

beforeAll(async () => {
  greet = await fakeTcpApp('220 greeting\n');
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  cp = await startKubeControlPlane(api, { seed: 41 });
  const common = { pki, namespace: 'demo', controlPlane: `127.0.0.1:${cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 } };
  // The server sidecar as the injector configures it from the annotation (WREN_OPAQUE_PORTS).
  server = await startProxy({ ...common, serviceAccount: 'db', pod: 'db-0', config: { protocol: { detectTimeoutMs: DETECT_MS, inboundOpaquePorts: [greet.port] } } });
  client = await startProxy({ ...common, serviceAccount: 'client', pod: 'client-0', originalDst: () => nextDst, config: { protocol: { detectTimeoutMs: DETECT_MS } } });
  api.apply('pods', pod('db-0', { 'wren.io/opaque-ports': `${greet.port}`, 'wren.io/proxy-port': String(server.inboundPort) }));
  // No appProtocol, no `tcp-` name: the Service says nothing of the port's protocol.
  api.apply('services', serviceJson('db', 'demo', [{ name: 'greet', port: SVC_PORT, targetPort: greet.port }], CLUSTER_IP));
  api.apply('endpointslices', endpointSliceJson('db-1', 'demo', 'db', [{ name: 'greet', port: greet.port }], [{ ip: '127.0.0.1', pod: 'db-0' }]));
  await waitFor(() => client.snapshot.services.find((s) => s.name === 'db')?.ports[0].endpoints.length === 1, 'the client sidecar got db and its endpoint');
});

afterAll(async () => {
  await Promise.all([client, server].map((p) => p?.close()));
  await cp?.close(100);
  await api?.close();
  await greet?.close();
});

/** Connects to the client sidecar's outbound (redirected from nextDst) and resolves with how long the app's greeting took. */
function timeToGreeting(): Promise<{ ms: number; line: string }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const s: Socket = connect(client.outboundPort, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\n')) {
        resolve({ ms: Date.now() - t0, line: got });
        s.destroy();
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed before the greeting (got ${JSON.stringify(got)})`)));
  });
}

test('the control plane pushes the pod\'s own opaque port with its endpoint (the Service declares nothing)', () => {
  const port = client.snapshot.services.find((s) => s.name === 'db')!.ports[0];
  expect(port.protocol).toBe('detect');
  expect(port.endpoints[0]).toMatchObject({ address: '127.0.0.1', port: greet.port, opaque: true, identity: 'spiffe://cluster.local/ns/demo/sa/db' });
});

test('a server-first app greets at once through both sidecars: to the Service\'s ClusterIP:port and to the pod\'s IP:port, no detection wait on the caller', async () => {
  for (const dst of [{ address: CLUSTER_IP, port: SVC_PORT }, { address: '127.0.0.1', port: greet.port }]) {
    nextDst = dst;
    const r = await timeToGreeting();
    expect(r.line).toBe('220 greeting\n');
    // Well under the caller's detection timeout (2 s): it opened the tunnel at once.
    expect(r.ms).toBeLessThan(DETECT_MS / 2);
  }
});

test('the annotation removed (a pod created again without it): the endpoint is no longer opaque, and the caller detects again', async () => {
  api.apply('pods', pod('db-0', { 'wren.io/proxy-port': String(server.inboundPort) }));
  await waitFor(() => client.snapshot.services.find((s) => s.name === 'db')?.ports[0].endpoints[0]?.opaque !== true, 'the opaque flag withdrawn');
  nextDst = { address: CLUSTER_IP, port: SVC_PORT };
  const r = await timeToGreeting();
  expect(r.line).toBe('220 greeting\n');
  expect(r.ms).toBeGreaterThanOrEqual(DETECT_MS - 100);
});
