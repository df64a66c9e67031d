import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { meshServiceYaml } from './helpers/mesh-service-yaml.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { statusOf } from './helpers/status-of.js';

/**
 * discovery.statsReport.maxEdges reaches the StatsReport a subscribed sidecar sends
 * (connect-proxy.ts hands it to the StatsReporter): with 1, a proxy that called two services
 * reports the busier edge and counts the other in
 * wren_limit_exceeded_total{limit="stats-report-edges"}. Only the reporter's unit tests set
 * the bound, so a sidecar that kept the default 200 whatever its config said passed every test.
 */
const pki = testPki();
let plane: DirControlPlane;
let server: Proxy;
let client: Proxy;
let app: FakeApp;

beforeAll(async () => {
  app = await fakeApp('api');
  server = await startProxy({ pki, serviceAccount: 'api' });
  const ep = [{ port: app.port, proxyPort: server.inboundPort, identity: server.tls.spiffeId }];
  plane = await startDirControlPlane({ prefix: 'wren-adv31-edges-', trustDomain: pki.trustDomain, seed: 32, mesh: { 'a.yaml': meshServiceYaml('a', ep), 'b.yaml': meshServiceYaml('b', ep) }, dirSource: { rescanMs: 5_000 } });
  client = await startProxy({
    pki, serviceAccount: 'web', controlPlane: `127.0.0.1:${plane.cp.grpcPort}`,
    config: { discovery: { statsReport: { intervalMs: '200ms', maxEdges: 1 } } },
  });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${client.adminPort}/ready`)).ok, 'client proxy configured');
});

afterAll(async () => {
  await client.close();
  await server.close();
  await plane.close(100);
  await app.close();
});

test('discovery.statsReport.maxEdges: 1 leaves the second edge out of the report, counted', async () => {
  expect(await statusOf(client.outboundPort, 'a.default.svc.cluster.local', '/name')).toBe(200);
  expect(await statusOf(client.outboundPort, 'b.default.svc.cluster.local', '/name')).toBe(200);
  await waitFor(async () => {
    const text = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
    return /^wren_limit_exceeded_total\{direction="outbound",limit="stats-report-edges"\} [1-9]/m.test(text);
  }, 'an edge left out of a StatsReport, counted');
});
