import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';
import { startProxy as startRawClient, waitFor } from './control-plane-harness.js';
import { chromiumSkipReason } from './helpers/chromium.js';
import { testPki } from './helpers/pki.js';
import { startStatsMesh, type StatsMesh } from './helpers/stats-mesh.js';

/**
 * The control plane's dashboard in a real browser: headless Chromium (Debian's
 * `chromium`, driven by puppeteer-core) loads /dashboard/ of a running mesh (real
 * sidecars and control plane on loopback) under a little traffic. The topology shows both
 * services and the edge with a non-zero rate and its mTLS mark; an endpoint the caller's
 * proxy ejects shows as ejected on the service page within a few seconds; names from
 * reports are shown as text, never run; no page logs a console error. A screenshot of
 * each page goes to test-output/dashboard-chromium/ (WREN_TEST_OUTPUT overrides), and
 * with WREN_UPDATE_SCREENSHOTS=1 the topology's to docs/images/dashboard.png (the README's).
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(process.env['WREN_TEST_OUTPUT'] ?? join(ROOT, 'test-output'), 'dashboard-chromium');
const SKIP = chromiumSkipReason('test/dashboard-chromium.test.ts');
const suite = SKIP ? describe.skip : describe;

suite('the dashboard in headless Chromium', () => {
  const pki = testPki();
  let mesh: StatsMesh;
  let browser: Browser;
  let page: Page;
  let base: string;
  const consoleErrors: string[] = [];
  let traffic: NodeJS.Timeout | null = null;

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    mesh = await startStatsMesh(pki);
    // A little traffic all along: one request every 50 ms.
    traffic = setInterval(() => void mesh.call().catch(() => undefined), 50);
    const { launch } = await import('puppeteer-core');
    browser = await launch({
      executablePath: execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim(),
      headless: true,
      // As root (CI containers) Chromium's sandbox cannot start; the page is our own.
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => void consoleErrors.push(`page error: ${(e as Error).message}`));
    page.on('requestfailed', (r) => void consoleErrors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    base = `http://127.0.0.1:${mesh.cp.adminPort}/dashboard/`;
  }, 60_000);

  afterAll(async () => {
    if (traffic) clearInterval(traffic);
    await browser?.close();
    await mesh?.close();
  });

  const attr = (sel: string, name: string) => page.$eval(sel, (e, n) => e.getAttribute(n), name).catch(() => null);
  const text = (sel: string) => page.$eval(sel, (e) => e.textContent).catch(() => null);
  const shot = (name: string) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });

  test('the topology shows both services and the edge between them with a non-zero rate and its mTLS mark', async () => {
    await page.goto(base, { waitUntil: 'load' });
    await page.select('#window', '30s');
    await page.waitForSelector('g.node.service[data-name="api.default"]', { timeout: 10_000 });
    await page.waitForSelector('g.node.service[data-name="web.default"]', { timeout: 10_000 });
    await page.waitForSelector('g.node.workload[data-name="default/web"]', { timeout: 10_000 });
    const edge = 'g.edge[data-from="default/web"][data-to="api.default"]';
    await waitFor(async () => Number((await attr(edge, 'data-rate')) ?? 0) > 0, 'the edge with a non-zero rate', 15_000);
    expect(await page.$eval(edge, (e) => e.getAttribute('data-mtls'))).toBe('true');
    expect(await page.$eval(edge, (e) => e.textContent)).toMatch(/\d+\.\d\d rps · 100\.00% · p99 .*mTLS/);
    await shot('topology');
    if (process.env['WREN_UPDATE_SCREENSHOTS'] === '1') await page.screenshot({ path: join(ROOT, 'docs/images/dashboard.png') });
  }, 30_000);

  test('an endpoint the caller ejects shows as ejected on the service page within a few seconds', async () => {
    await page.goto(`${base}#/service/api.default`, { waitUntil: 'load' });
    const bad = `tr[data-endpoint="127.0.0.1:${mesh.badPort}"] td[data-state]`;
    await page.waitForSelector(bad, { timeout: 10_000 });
    expect(await page.$eval(bad, (e) => e.getAttribute('data-state'))).toBe('healthy');
    mesh.failing = true;
    const started = performance.now();
    await waitFor(async () => (await attr(bad, 'data-state')) === 'ejected', 'the endpoint shown as ejected', 5_000);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await page.$eval(bad, (e) => e.textContent)).toBe('ejected');
    expect(await page.$eval(`tr[data-endpoint="127.0.0.1:${mesh.goodPort}"] td[data-state]`, (e) => e.getAttribute('data-state'))).toBe('healthy');
    await shot('service-api');
  }, 30_000);

  test('the other pages: services, proxies, one proxy (certificate expiry), why (a denial, its policy and rule)', async () => {
    expect(await mesh.call('/admin')).toBe(403);
    await page.goto(`${base}#/services`, { waitUntil: 'load' });
    await waitFor(async () => (await page.$$('main a[href^="#/service/"]')).length === 2, 'both services listed', 10_000);
    await shot('services');
    await page.goto(`${base}#/proxies`, { waitUntil: 'load' });
    await waitFor(async () => (await page.$$('main a[href^="#/proxy/"]')).length >= 2, 'both proxies listed', 10_000);
    expect(await page.$eval('main', (m) => m.textContent)).toMatch(/days\)|h\)/);
    await shot('proxies');
    await page.goto(`${base}#/proxy/${encodeURIComponent('default/web-0')}`, { waitUntil: 'load' });
    await waitFor(async () => (await text('main h2')) === 'Proxy default/web-0' && /outlier-ejection/.test((await text('main')) ?? ''), 'the web proxy page with its ejection', 10_000);
    await shot('proxy-web');
    await page.goto(`${base}#/why`, { waitUntil: 'load' });
    await waitFor(async () => /decided by default\/deny-admin \(DENY\)/.test((await text('main')) ?? ''), 'the denial and its policy', 10_000);
    expect(await text('section[data-why="denial"] [data-field="rule"]')).toBe('matched rule 0 of default/deny-admin: ns[default]-policy[deny-admin]-rule[0]');
    await shot('why');
  }, 40_000);

  test('names from reports are shown as text: no HTML injection', async () => {
    // A proxy reports a workload and a peer whose names are markup (StatsReport strings are free text).
    const evil = '<img src=x onerror="window.__pwned=1">';
    const raw = startRawClient(`127.0.0.1:${mesh.cp.grpcPort}`, { pod: 'evil' });
    try {
      await raw.client.onFirstSnapshot();
      const edge = (success: number) => ({
        direction: 'outbound' as const, peerWorkload: evil, peerNamespace: 'default', peerIdentity: '', service: 'api.default', destinationWorkload: evil,
        success, failure: 0, latencyBuckets: [success, 0], latencySumMs: 1, tcpOpened: 0, tcpClosed: 0, mtls: false,
      });
      // And a retry whose path and cause are markup: the why page shows it as a row of text.
      const retried = { ageMs: 0, service: 'api.default', port: 80, route: '', method: 'GET', path: `/${evil}`, attempts: 2, causes: [{ outcome: evil, retryOn: '5xx' }], result: 'success', stopped: '' };
      // And a denial whose every string is markup (a proxy's claim: "why was it denied" shows it as text).
      const denied = {
        ageMs: 0, policy: evil, action: 'DENY', reason: evil, principal: `spiffe://cluster.local/ns/default/sa/${evil}`, method: evil, path: `/${evil}`, port: 80,
        rule: 0, effectivePolicyId: evil, policiesConsidered: [evil], closedTunnel: '',
      };
      const report = (success: number) => ({
        workload: evil, workloadNamespace: 'default', latencyBoundsMs: [10], edges: [edge(success)], droppedEdges: 0, recentDenials: [denied], intervalMs: 250, recentRetries: [retried], droppedRetries: 0,
      });
      raw.client.reportStats(report(0));
      await new Promise((r) => setTimeout(r, 300));
      raw.client.reportStats(report(30));
      await waitFor(async () => ((await mesh.admin('/api/stat?kind=edge&window=30s')) as { rows: { from: { workload: string } }[] }).rows.some((r) => r.from.workload === evil), 'the evil edge');
      await page.goto(base, { waitUntil: 'load' });
      await waitFor(async () => (await page.$$eval('g.node.workload', (gs) => gs.map((g) => g.getAttribute('data-name')))).includes(`default/${evil}`), 'the evil workload node', 10_000);
      expect(await page.$$('img')).toHaveLength(0);
      // Evaluated as a string: this file is compiled without the DOM's types.
      expect(await page.evaluate('typeof window.__pwned')).toBe('undefined');
      expect(await page.$eval('main', (m) => m.textContent)).toContain(`workload default/${evil}`);
      await shot('injection');
      await page.goto(`${base}#/why`, { waitUntil: 'load' });
      await page.waitForSelector('tr[data-why="retry"]', { timeout: 10_000 });
      expect(await text('tr[data-why="retry"] [data-field="causes"]')).toBe(`${evil}: 5xx`);
      expect(await text('tr[data-why="retry"] [data-field="attempts"]')).toBe('2');
      expect(await text('tr[data-why="retry"] [data-field="configured-by"]')).toMatch(/^the TrafficPolicy of api\.default: \d+ attempts/);
      await waitFor(async () => ((await text('main')) ?? '').includes(`matched rule 0 of ${evil}: ${evil}`), 'the evil denial', 10_000);
      expect(await page.$$eval('section[data-why="denial"] [data-field="what"]', (hs) => hs.map((h) => h.textContent))).toContainEqual(expect.stringContaining(`${evil} (default/evil) denied ${evil} /${evil} on port 80`));
      expect(await page.$$('img')).toHaveLength(0);
      expect(await page.evaluate('typeof window.__pwned')).toBe('undefined');
      await shot('why-retry');
    } finally {
      await raw.client.stop();
    }
  }, 30_000);

  test('no page logged a console error', () => {
    expect(consoleErrors).toEqual([]);
  });
});
