import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { closedPort } from './helpers/closed-port.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { meshServiceYaml } from './helpers/mesh-service-yaml.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { statusOf } from './helpers/status-of.js';

/**
 * discovery.healthReport.connectFailures reaches the HealthReport a running sidecar sends
 * (connect-proxy.ts hands it to the HealthReporter): with 1, an endpoint this proxy could
 * not connect to once is reported to the control plane (kind connect-failure), where the
 * default, 2 in a row, would wait for a second. Only the reporter's unit tests set the
 * threshold, so a sidecar that kept the default whatever its config said passed every test.
 */
const pki = testPki();
let plane: DirControlPlane;
let client: Proxy;
let deadPort: number;

beforeAll(async () => {
  deadPort = await closedPort();
  // A meshed endpoint whose sidecar port refuses connections; no retries, so a call makes exactly one attempt.
  const api = meshServiceYaml('api', [{ port: 8080, proxyPort: deadPort, identity: `spiffe://${pki.trustDomain}/ns/default/sa/api` }], { retry: { attempts: 0 } });
  plane = await startDirControlPlane({ prefix: 'wren-adv31-cf-', trustDomain: pki.trustDomain, seed: 31, mesh: { 'api.yaml': api }, dirSource: { rescanMs: 5_000 } });
  client = await startProxy({ pki, serviceAccount: 'web', controlPlane: `127.0.0.1:${plane.cp.grpcPort}`, config: { discovery: { healthReport: { connectFailures: 1 } } } });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${client.adminPort}/ready`)).ok, 'client proxy configured');
});

afterAll(async () => {
  await client.close();
  await plane.close(100);
});

interface HealthRow { port: number; reporters: { kind: string }[] }
const health = async (): Promise<HealthRow[]> => ((await (await fetch(`http://127.0.0.1:${plane.cp.adminPort}/debug/health`)).json()) as { endpoints: HealthRow[] }).endpoints;

test('discovery.healthReport.connectFailures: 1 reports an endpoint after its first connect failure', async () => {
  expect(await statusOf(client.outboundPort, 'api.default.svc.cluster.local')).toBe(502);
  // Exactly one attempt was made (the threshold, not the default, decides the report).
  const clusters = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: { port: number; consecutiveConnectFailures: number }[] }>;
  expect(clusters['api.default:80'].endpoints.map((e) => e.consecutiveConnectFailures)).toEqual([1]);
  const rows = await waitFor(async () => {
    const r = await health();
    return r.length > 0 ? r : null;
  }, 'connect-failure report at the control plane');
  expect(rows.map((r) => [r.port, r.reporters.map((x) => x.kind)])).toEqual([[8080, ['connect-failure']]]);
});
