import { createServer, type Server } from 'node:http';
import type { Proxy } from '../proxy/proxy.js';
import { startProxy as startRawClient, waitFor, type TestProxy } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { meshServiceYaml } from './helpers/mesh-service-yaml.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { statusOf } from './helpers/status-of.js';

/**
 * HealthReport end to end: a real client sidecar subscribed to a control plane ejects a
 * failing endpoint (outlier detection) and reports it; the control plane validates the
 * report against what that proxy was sent, shows it on /debug/health and counts it; the
 * clearing is reported too. A report naming endpoints the proxy was never sent is dropped.
 */
const pki = testPki();
let plane: DirControlPlane;
let server: Proxy;
let client: Proxy;
const closers: (() => Promise<void>)[] = [];
const bad = { failing: true, hits: 0 };
let goodPort: number, badPort: number;

async function app(fail: () => boolean, onHit = () => undefined): Promise<number> {
  const s: Server = createServer((req, res) => {
    onHit();
    req.resume();
    req.on('end', () => {
      res.statusCode = fail() ? 503 : 200;
      res.end();
    });
  });
  const l = await listenOnLoopback(s);
  closers.push(l.close);
  return l.port;
}

beforeAll(async () => {
  goodPort = await app(() => false);
  badPort = await app(() => bad.failing, () => void bad.hits++);
  server = await startProxy({ pki, serviceAccount: 'api' });
  const api = meshServiceYaml('api', [goodPort, badPort].map((port) => ({ port, proxyPort: server.inboundPort, identity: server.tls.spiffeId })), {
    loadBalancer: { kind: 'round-robin' },
    outlierDetection: { consecutive5xx: 2, intervalMs: '100ms', baseEjectionTimeMs: '1500ms', maxEjectionPercent: 50 },
  });
  plane = await startDirControlPlane({ prefix: 'wren-health-', trustDomain: pki.trustDomain, seed: 3, mesh: { 'api.yaml': api }, dirSource: { rescanMs: 5_000 } });
  client = await startProxy({ pki, serviceAccount: 'web', controlPlane: `127.0.0.1:${plane.cp.grpcPort}` });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${client.adminPort}/ready`)).ok, 'client proxy configured');
});

afterAll(async () => {
  await client.close();
  await server.close();
  await plane.close(100);
  await Promise.all(closers.map((c) => c()));
});

const call = () => statusOf(client.outboundPort, 'api.default.svc.cluster.local');

interface HealthRow {
  service: string;
  servicePort: number;
  address: string;
  port: number;
  reporters: { identity: string; pod: string; kind: string; reason: string; ejectedForMs: number }[];
}
const health = async (): Promise<HealthRow[]> => ((await (await fetch(`http://127.0.0.1:${plane.cp.adminPort}/debug/health`)).json()) as { endpoints: HealthRow[] }).endpoints;
const cpMetrics = async () => (await fetch(`http://127.0.0.1:${plane.cp.adminPort}/metrics`)).text();

test('a proxy that ejects an endpoint reports it; the control plane keeps it per reporter, shows it on /debug/health, and sees it clear', async () => {
  for (let i = 0; i < 20 && bad.hits < 2; i++) await call();
  expect(bad.hits).toBe(2);
  const rows = await waitFor(async () => {
    const r = await health();
    return r.length > 0 ? r : null;
  }, 'health report at the control plane');
  expect(rows).toEqual([
    {
      service: 'api.default', servicePort: 80, address: '127.0.0.1', port: badPort,
      reporters: [expect.objectContaining({ identity: client.tls.spiffeId, pod: 'default/web-0', kind: 'outlier-ejection', reason: 'consecutive-5xx' })],
    },
  ]);
  const m = await cpMetrics();
  expect(m).toMatch(/^wren_cp_health_reports_total\{result="accepted"\} [1-9]/m);
  expect(m).toMatch(/^wren_cp_reported_unhealthy_endpoints 1$/m);
  const proxies = (await (await fetch(`http://127.0.0.1:${plane.cp.adminPort}/debug/proxies`)).json()) as { proxies: { ejections: unknown[] }[] };
  expect(proxies.proxies.flatMap((p) => p.ejections)).toEqual([expect.objectContaining({ service: 'api.default', port: badPort, kind: 'outlier-ejection' })]);

  // It recovers: the proxy unejects it after the ejection time, and the next report is empty.
  bad.failing = false;
  await waitFor(async () => (await health()).length === 0, 'clearing reported', 5000);
  expect(await cpMetrics()).toMatch(/^wren_cp_reported_unhealthy_endpoints 0$/m);
});

test('entries naming endpoints the reporter was not sent are dropped and counted, never shown', async () => {
  let raw: TestProxy | undefined;
  try {
    raw = startRawClient(`127.0.0.1:${plane.cp.grpcPort}`, { pod: 'liar', services: ['api.default'] });
    await raw.client.onFirstSnapshot();
    raw.client.reportEjections([
      { service: 'api.default', servicePort: 80, address: '10.9.9.9', port: 80, kind: 'outlier-ejection', reason: 'consecutive-5xx', ejectedForMs: 1 },
      { service: 'other.default', servicePort: 80, address: '127.0.0.1', port: goodPort, kind: 'outlier-ejection', reason: 'consecutive-5xx', ejectedForMs: 1 },
      { service: 'api.default', servicePort: 80, address: '127.0.0.1', port: goodPort, kind: 'made-up' as never, reason: '', ejectedForMs: 1 },
      { service: 'api.default', servicePort: 80, address: '127.0.0.1', port: goodPort, kind: 'health-check-failed', reason: '', ejectedForMs: 5 },
    ]);
    await waitFor(async () => /^wren_cp_health_report_rejected_entries_total 3$/m.test(await cpMetrics()), 'rejected entries counted');
    expect(await cpMetrics()).toMatch(/^wren_cp_health_reports_total\{result="partly-rejected"\} 1$/m);
    // Only the entry about an endpoint it was sent is kept.
    const rows = await health();
    expect(rows.map((r) => [r.service, r.port, r.reporters.map((x) => [x.pod, x.kind])])).toEqual([['api.default', goodPort, [['default/liar', 'health-check-failed']]]]);
  } finally {
    await raw?.client.stop();
  }
});
