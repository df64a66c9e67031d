import { execFileSync } from 'node:child_process';
import { systemClock } from '../common/clock.js';
import { chromiumSkipReason } from './helpers/chromium.js';
import { AdminAccess } from '../control-plane/admin-access.js';
import { startAdminServer, type AdminServerHandle } from '../control-plane/admin-server.js';
import type { DiscoveryServer } from '../control-plane/discovery/discovery-server.js';
import { ControlPlaneMetrics } from '../control-plane/metrics.js';
import type { MeshStore } from '../control-plane/store/mesh-store.js';
import type { StatRow, StatsStore } from '../control-plane/stats/stats-store.js';
import { statCommand } from '../cli/stat.js';

/**
 * The admin port's render budget over real HTTP, and the CLI waiting it out: a page whose
 * render took long is refused 503 with Retry-After for 4 × that render, and `wren stat`
 * (and every command that polls an admin port) comes back after Retry-After instead of
 * failing. The render "takes" what the test says: the stats store's aggregation moves the
 * clock the budget times renders with, so the refusal does not depend on this machine's load.
 */
const row: StatRow = {
  kind: 'service', name: 'web', namespace: 'shop', reporters: 1, requestRate: 2, successRate: 1, latencyMs: { p50: 1, p95: 2, p99: 3 }, tcp: { open: 0 }, mtlsShare: 1,
} as unknown as StatRow;

let server: AdminServerHandle;
let metrics: ControlPlaneMetrics;
let stats: { edges: () => unknown[]; [k: string]: unknown };
/** Virtual time added to the real monotonic clock; each stat() render adds `renderMs` to it. */
const time = { skew: 0, renderMs: 0, throws: false };

beforeAll(async () => {
  metrics = new ControlPlaneMetrics();
  const view = { version: 'v1', services: new Map(), routes: { byService: new Map() }, policy: { peerAuthentications: [], authorizationPolicies: [], externalServices: [], requestAuthentications: [] } };
  const discovery = { debugProxies: () => [], proxyStatus: () => [], debugHealth: () => [], debugTrust: () => ({ controlPlane: null, proxies: [] }) } as unknown as DiscoveryServer;
  stats = {
    reporterList: () => [], edges: () => [], denials: () => [], retries: () => [], droppedRetries: () => 0,
    stat: () => {
      time.skew += time.renderMs;
      if (time.throws) throw new Error('aggregation failed');
      return [row];
    },
  };
  server = await startAdminServer('127.0.0.1', 0, {
    store: { view, ready: true } as unknown as MeshStore, metrics, discovery, stats: stats as unknown as StatsStore, clock: systemClock, draining: () => false,
    sourceErrors: () => [], sourceIgnored: () => [], sourceName: 'test',
    access: new AdminAccess({ namespace: 'wren-system', authenticator: null, clock: systemClock }),
    renderNow: () => performance.now() + time.skew,
  });
});

afterAll(() => server.close());

const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`).then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.text() }));
const refusedCount = async (page = '/api/stat?kind=service') => (await metrics.registry.getSingleMetricAsString('wren_cp_admin_render_refused_total')).match(new RegExp(`page="${page.replace(/[?/]/g, '\\$&')}"} (\\d+)`))?.[1] ?? '0';

test('a 300 ms render of /api/stat: the next request is 503 with Retry-After: 2 (4 × 300 ms, rounded up) and counted; other pages are served', async () => {
  time.renderMs = 300;
  expect((await get('/api/stat?kind=service')).status).toBe(200);
  time.renderMs = 0;
  const refused = await get('/api/stat?kind=service');
  expect(refused.status).toBe(503);
  expect(refused.retryAfter).toBe('2');
  expect(JSON.parse(refused.body).error).toMatch(/^busy: \/api\/stat\?kind=service took 30\d ms to render and is served again in \d+ ms/);
  expect(await refusedCount()).toBe('1');
  expect((await get('/api/why')).status).toBe(200);
  expect((await get('/ready')).status).toBe(200);
  // The refusal ends: virtual time moves past it.
  time.skew += 2000;
  expect((await get('/api/stat?kind=service')).status).toBe(200);
});

test('each /api/stat kind has its own budget: a slow kind=edge refuses kind=edge, not kind=service or kind=workload', async () => {
  time.skew += 60_000; // past any refusal of the tests above
  time.renderMs = 300;
  // edges() is the edge kind's aggregation: it "takes" 300 ms, as stat() does.
  const edges = stats.edges;
  stats.edges = () => {
    time.skew += time.renderMs;
    return [];
  };
  try {
    expect((await get('/api/stat?kind=edge')).status).toBe(200);
  } finally {
    time.renderMs = 0;
    stats.edges = edges;
  }
  const refused = await get('/api/stat?kind=edge&window=30s');
  expect(refused.status).toBe(503);
  expect(JSON.parse(refused.body).error).toMatch(/^busy: \/api\/stat\?kind=edge took 30\d ms/);
  expect(await refusedCount('/api/stat?kind=edge')).toBe('1');
  const before = await refusedCount();
  expect((await get('/api/stat?kind=service')).status).toBe(200);
  expect((await get('/api/stat')).status).toBe(200);
  expect((await get('/api/stat?kind=workload')).status).toBe(200);
  expect(await refusedCount()).toBe(before);
  // A kind the page refuses is a 400 (never budgeted under a name the caller chose).
  expect((await get('/api/stat?kind=pods')).status).toBe(400);
});

test('a render that throws after 300 ms is counted against the budget too: the 500 is followed by a 503 with Retry-After, not by another render at once', async () => {
  time.skew += 60_000; // past any refusal of the tests above
  time.renderMs = 300;
  time.throws = true;
  let failed;
  try {
    failed = await get('/api/stat?kind=service');
  } finally {
    time.renderMs = 0;
    time.throws = false;
  }
  expect(failed.status).toBe(500);
  expect(JSON.parse(failed.body).error).toBe('aggregation failed');
  const before = Number(await refusedCount());
  const refused = await get('/api/stat?kind=service');
  expect(refused.status).toBe(503);
  expect(refused.retryAfter).toBe('2');
  expect(Number(await refusedCount())).toBe(before + 1);
  time.skew += 2000;
  expect((await get('/api/stat?kind=service')).status).toBe(200);
});

test('wren stat, refused once by the render budget, waits the Retry-After and prints the rows (exit 0)', async () => {
  time.renderMs = 300;
  expect((await get('/api/stat?kind=service')).status).toBe(200);
  time.renderMs = 0;
  const before = Number(await refusedCount());
  let out = '';
  let err = '';
  const started = Date.now();
  const code = await statCommand(['svc', '--control-plane', `127.0.0.1:${server.port}`], (s) => void (out += s), (s) => void (err += s));
  expect({ code, err }).toEqual({ code: 0, err: '' });
  expect(out).toMatch(/^shop\s+web\s+1\s+100\.00%/m);
  // It was refused (the metric counted it) and it waited about the 2 s asked for before asking again.
  expect(Number(await refusedCount())).toBe(before + 1);
  expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
}, 15_000);

/** The dashboard's own polling in headless Chromium, against the same admin port: a refused refresh waits the Retry-After. */
/** A page-side predicate: the dashboard's status line starts with `prefix`. */
const statusStarts = (prefix: string) => `(document.getElementById('status')?.textContent ?? '').startsWith(${JSON.stringify(prefix)})`;
const SKIP = chromiumSkipReason('test/admin-render-budget.test.ts');
(SKIP ? test.skip : test)('the dashboard, refused by the render budget, keeps its page, says it is busy, and refreshes only after the Retry-After', async () => {
  const { launch } = await import('puppeteer-core');
  const browser = await launch({
    executablePath: execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim(), headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage();
    const topology: number[] = [];
    page.on('request', (r) => void (r.url().includes('/api/topology') && topology.push(Date.now())));
    time.skew += 60_000; // past any refusal of the tests above
    time.renderMs = 0;
    await page.goto(`http://127.0.0.1:${server.port}/dashboard/`);
    await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    // From now each render "takes" 1 s (the topology aggregates twice: 2 s), so the next refresh is served and then refused for 8 s.
    time.renderMs = 1000;
    await page.waitForFunction(statusStarts('control plane busy; retrying in'), { timeout: 15_000 });
    const busyAt = Date.now();
    const status = await page.$eval('#status', (e) => e.textContent);
    const asked = Number(/retrying in (\d+) s/.exec(status ?? '')?.[1]);
    expect(asked).toBeGreaterThanOrEqual(3); // the Retry-After (up to 8 s), not the 2 s refresh
    // What was shown stays: the topology's table is still on the page.
    expect(await page.$eval('#view', (e) => e.textContent ?? '')).toMatch(/web/);
    const n = topology.length;
    time.renderMs = 0;
    time.skew += 60_000; // the refusal is over once the page asks again
    await page.waitForFunction(statusStarts('updated'), { timeout: 20_000 });
    // It asked again once, after about the Retry-After, not every 2 s meanwhile.
    expect(topology.length).toBe(n + 1);
    expect(topology[n] - busyAt).toBeGreaterThanOrEqual(asked * 1000 - 500);
  } finally {
    await browser.close();
  }
}, 60_000);
