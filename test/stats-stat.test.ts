import { request as httpRequest } from 'node:http';
import { statCommand } from '../cli/stat.js';
import { waitFor } from './control-plane-harness.js';
import { testPki } from './helpers/pki.js';
import { startStatsMesh, type StatsMesh } from './helpers/stats-mesh.js';
import { adminGet } from './helpers/admin-get.js';

/**
 * `wren stat` end to end: real sidecars on loopback report their traffic to a real control
 * plane (StatsReport on the discovery stream), which aggregates it; `wren stat` and the
 * /api/ JSON show rates, success rates, latency and mTLS per service, workload and edge.
 */
const pki = testPki();
let mesh: StatsMesh;

beforeAll(async () => {
  mesh = await startStatsMesh(pki);
});
afterAll(async () => {
  await mesh?.close();
});

interface Row { kind: string; name: string; namespace: string; reporters: number; requestRate: number; successRate: number | null; latencyMs: { p99: number } | null; mtlsShare: number | null; from?: { workload: string }; to?: { service: string } }
const rows = async (kind: string, window = '30s'): Promise<Row[]> => ((await mesh.admin(`/api/stat?kind=${kind}&window=${window}`)) as { rows: Row[] }).rows;

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await statCommand([...argv, '--control-plane', `127.0.0.1:${mesh.cp.adminPort}`], (s) => void (out += s), (s) => void (err += s));
  return { code, out, err };
}

test('traffic through the mesh shows up per service, per workload and per edge, with success rate, latency and mTLS', async () => {
  for (let i = 0; i < 20; i++) expect(await mesh.call()).toBe(200);
  // A little traffic all along: a rate is the growth of the counters between two reports,
  // and the 20 calls above may all predate the proxies' first report.
  const svc = await waitFor(async () => {
    expect(await mesh.call()).toBe(200);
    const r = (await rows('service')).find((x) => x.name === 'api');
    return r && r.requestRate > 0 && r.reporters === 1 ? r : null;
  }, 'the api service row with traffic', 10_000);
  expect(svc).toMatchObject({ kind: 'service', namespace: 'default', successRate: 1, mtlsShare: 1 });
  expect(svc.latencyMs!.p99).toBeGreaterThan(0);
  const workloads = await waitFor(async () => {
    expect(await mesh.call()).toBe(200);
    const r = await rows('workload');
    return r.find((x) => x.name === 'api' && x.requestRate > 0) ? r : null;
  }, 'the api workload row (inbound view)', 10_000);
  expect(workloads.map((w) => w.name).sort()).toEqual(['api', 'web']);
  const [edge] = await rows('edge');
  expect(edge).toMatchObject({ from: { workload: 'web' }, to: { service: 'api.default' }, successRate: 1, mtlsShare: 1 });

  const table = await run('svc/api', '--window', '30s');
  expect(table).toMatchObject({ code: 0, err: '' });
  expect(table.out).toMatch(/^NAMESPACE\s+SERVICE\s+MESHED\s+SUCCESS\s+RPS\s+LATENCY_P50\s+LATENCY_P95\s+LATENCY_P99\s+TCP_CONN\s+MTLS$/m);
  expect(table.out).toMatch(/^default\s+api\s+1\s+100\.00%\s+\d+\.\d\d\s+\S+ms\s+\S+ms\s+\S+ms\s+0\s+100\.00%$/m);
  const json = await run('--from', 'deploy/web', '--to', 'svc/api', '-o', 'json', '--window', '30s');
  expect(json.code).toBe(0);
  const parsed = JSON.parse(json.out) as { rows: Row[] };
  expect(parsed.rows).toHaveLength(1);
  expect(parsed.rows[0]).toMatchObject({ kind: 'edge', from: { workload: 'web' }, to: { service: 'api.default' } });
  expect((await run('--from', 'deploy/nobody', '--window', '30s')).out).toBe('No traffic reported in the last 30s.\n');
  expect((await run('deploy/api')).out).toMatch(/^default\s+api\s+1\s+100\.00%/m);
});

test('failures lower the success rate', async () => {
  mesh.failing = true;
  // Round robin: every other request hits the bad endpoint until it is ejected (2 in a row there).
  const codes: number[] = [];
  for (let i = 0; i < 6; i++) codes.push(await mesh.call());
  expect(codes).toContain(503);
  // A little traffic all along: a rate is the growth of the counters between two reports,
  // and the 20 calls above may all predate the proxies' first report.
  const svc = await waitFor(async () => {
    expect(await mesh.call()).toBe(200);
    const r = (await rows('service')).find((x) => x.name === 'api');
    return r && r.successRate !== null && r.successRate < 1 ? r : null;
  }, 'a success rate below 100%', 10_000);
  expect(svc.successRate).toBeGreaterThan(0.5);
});

test('an authorization denial shows in /api/why with the deciding policy and its rule', async () => {
  expect(await mesh.call('/admin?token=secret')).toBe(403);
  const why = await waitFor(async () => {
    const w = (await mesh.admin('/api/why')) as { denials: { policy: string; action: string; path: string; workload: string; decidingPolicy: { rules: unknown[] } | null }[] };
    return w.denials.length > 0 ? w.denials : null;
  }, 'the denial at the control plane', 10_000);
  expect(why[0]).toMatchObject({ policy: 'default/deny-admin', action: 'DENY', path: '/admin', workload: 'api' });
  expect(why[0].decidingPolicy!.rules).toHaveLength(1);
});

test('bad input: usage errors exit 2, an unreachable control plane exits 1, bad API parameters are 400', async () => {
  expect((await run('pods/x')).code).toBe(2);
  expect((await run('svc/a', '--from', 'deploy/b')).code).toBe(2);
  expect((await run('--window', '5m')).code).toBe(2);
  let err = '';
  expect(await statCommand(['--control-plane', '127.0.0.1:1'], () => undefined, (s) => void (err += s))).toBe(1);
  expect(err).toMatch(/cannot reach the control plane at 127\.0\.0\.1:1/);
  const res = await adminGet(`http://127.0.0.1:${mesh.cp.adminPort}/api/stat?kind=pods`);
  expect(res.status).toBe(400);
  expect((await adminGet(`http://127.0.0.1:${mesh.cp.adminPort}/api/stat?window=2h`)).status).toBe(400);
  expect((await adminGet(`http://127.0.0.1:${mesh.cp.adminPort}/api/services/nope.default`)).status).toBe(404);
  expect((await adminGet(`http://127.0.0.1:${mesh.cp.adminPort}/api/nope`)).status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${mesh.cp.adminPort}/dashboard/secret.txt`)).status).toBe(404);
  const page = await fetch(`http://127.0.0.1:${mesh.cp.adminPort}/dashboard/`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self';/);
  expect(await page.text()).toContain('<script type="module" src="dashboard.js"></script>');
  // The module it imports, the Retry-After parser shared with the CLI (common/http-retry-after.ts), from the same origin.
  const shared = await fetch(`http://127.0.0.1:${mesh.cp.adminPort}/dashboard/retry-after.js`);
  expect([shared.status, shared.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
  expect(await shared.text()).toMatch(/^export function retryAfterMs\(value, nowMs\)/m);
  // The DNS-rebinding guard covers the dashboard too.
  const rebinding = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: mesh.cp.adminPort, path: '/dashboard/', headers: { host: 'evil.example:15014' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  expect(rebinding).toBe(403);
});

test('--watch prints again every interval until stopped', async () => {
  const ac = new AbortController();
  let out = '';
  const done = statCommand(['svc/api', '--watch', '--interval', '200ms', '--window', '30s', '--control-plane', `127.0.0.1:${mesh.cp.adminPort}`], (s) => {
    out += s;
    if ((out.match(/^NAMESPACE/gm) ?? []).length >= 3) ac.abort();
  }, () => undefined, { signal: ac.signal });
  expect(await done).toBe(0);
  expect((out.match(/^default\s+api/gm) ?? []).length).toBeGreaterThanOrEqual(3);
});

test('a burst before the proxies\' first report shows in `wren stat` at once: counters start at 0 with the proxy', async () => {
  // Reports every 5 s: the whole burst below comes before the first one.
  const young = await startStatsMesh(pki, { statsIntervalMs: 5_000 });
  try {
    const reported = async () => ((await young.admin('/api/proxies')) as { proxies: { pod: string; stats: unknown }[] }).proxies.filter((p) => p.stats !== null).map((p) => p.pod);
    expect(await reported()).toEqual([]);
    for (let i = 0; i < 30; i++) expect(await young.call()).toBe(200);
    expect(await reported()).toEqual([]);
    // No traffic after the burst: the first report's counters, counted from the proxy's
    // start (StatsReport.uptime_ms), are all that can make the rate.
    const rps = await waitFor(async () => {
      let out = '';
      expect(await statCommand(['svc/api', '--window', '1m', '--control-plane', `127.0.0.1:${young.cp.adminPort}`], (s) => void (out += s), () => undefined)).toBe(0);
      const m = /^default\s+api\s+1\s+100\.00%\s+(\d+\.\d\d)\s/m.exec(out);
      return m && Number(m[1]) > 0 ? Number(m[1]) : null;
    }, 'a non-zero rate for the burst', 15_000);
    // 30 requests over the proxy's life so far (a few seconds): well above zero, at most 30 per second of it.
    expect(rps).toBeGreaterThan(0.5);
    expect(await reported()).toContain('default/web-0');
  } finally {
    await young.close();
  }
});
