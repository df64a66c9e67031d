import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'puppeteer-core';
import { dashboardAsset } from '../control-plane/dashboard/dashboard-assets.js';
import { waitFor } from './control-plane-harness.js';
import { chromiumSkipReason } from './helpers/chromium.js';

/**
 * The dashboard's handling of "not now" (429/503 with Retry-After) in headless Chromium
 * (Debian's `chromium`, driven by puppeteer-core), against a scripted server: the page and
 * its modules as the admin port serves them (dashboardAsset), and /api/ answers the test
 * chooses, headers included, which the control plane's render budget would not send (a
 * Retry-After as an asctime date, or one that is no date at all).
 */
const SKIP = chromiumSkipReason('test/dashboard-retry-after.test.ts');
const suite = SKIP ? describe.skip : describe;

interface Scripted { status: number; headers?: Record<string, string>; body: unknown }
const TOPOLOGY = { window: '1m', at: '', services: [{ name: 'web', namespace: 'shop', endpoints: 1, stat: null }], workloads: [], edges: [] };
const WHY = { denials: [], retries: [], droppedRetries: 0 };

/** asctime-date (RFC 9110 section 5.6.7), which is UTC: "Mon Dec  7 20:00:09 2026". */
function asctime(ms: number): string {
  const d = new Date(ms);
  const [wd, mon] = [['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()], ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()]];
  const two = (n: number) => String(n).padStart(2, '0');
  return `${wd} ${mon} ${String(d.getUTCDate()).padStart(2, ' ')} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

suite('the dashboard and Retry-After, in headless Chromium', () => {
  let server: Server;
  let browser: Browser;
  let page: Page;
  let base: string;
  /** What each /api/ path answers now. */
  const answers = new Map<string, () => Scripted>();
  /** Each /api/ request: path and when. */
  const asked: { path: string; at: number }[] = [];
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const asset = dashboardAsset(url.pathname);
      if (asset) {
        res.writeHead(200, { 'content-type': asset.contentType });
        return res.end(asset.body);
      }
      asked.push({ path: url.pathname, at: Date.now() });
      const a = answers.get(url.pathname)?.() ?? { status: 404, body: { error: 'not found' } };
      res.writeHead(a.status, { 'content-type': 'application/json', ...(a.headers ?? {}) });
      res.end(JSON.stringify(a.body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard/`;
    const { launch } = await import('puppeteer-core');
    browser = await launch({
      executablePath: execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim(), headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    });
    page = await browser.newPage();
    page.on('console', (m) => {
      // The scripted refusals themselves are logged by Chromium as failed loads: not errors of the page's.
      if (m.type() === 'error' && !/status of (429|503)/.test(m.text())) consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => void consoleErrors.push(`page error: ${(e as Error).message}`));
  }, 60_000);

  beforeEach(() => {
    answers.set('/api/topology', () => ({ status: 200, body: TOPOLOGY }));
    answers.set('/api/why', () => ({ status: 200, body: WHY }));
    asked.length = 0;
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
  });

  const status = () => page.$eval('#status', (e) => e.textContent ?? '');
  const statusStarts = (prefix: string) => `(document.getElementById('status')?.textContent ?? '').startsWith(${JSON.stringify(prefix)})`;

  test('the page loads the Retry-After parser the CLI uses (common/http-retry-after.ts, as /dashboard/retry-after.js): the same answers', async () => {
    await page.goto(base, { waitUntil: 'load' });
    await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    const now = Date.parse('2026-12-07T20:00:00Z');
    const values = ['3', 'Mon, 07 Dec 2026 20:00:05 GMT', 'Sunday, 06-Dec-26 20:00:07 GMT', 'Mon Dec  7 20:00:09 2026', 'x 5', '2026-12-07T20:00:05Z', 'Mon, 07 Dec 2026 20:00:05 GMT (comment)', '-1', '1.5', ''];
    const inPage = await page.evaluate(`import('./retry-after.js').then((m) => ${JSON.stringify(values)}.map((v) => m.retryAfterMs(v, ${now}) ?? null))`);
    const { retryAfterMs } = await import('../cli/retry-after.js');
    expect(inPage).toEqual(values.map((v) => retryAfterMs(v, now) ?? null));
    // The RFC 850 date is a day before now: no wait. What Date.parse would take but is no HTTP-date: null.
    expect(inPage).toEqual([3000, 5000, 0, 9000, null, null, null, null, null, null]);
  }, 30_000);

  test('an asctime Retry-After is UTC whatever the browser\'s zone (Date.parse read it as local time: 14 h early on UTC+14, so no wait at all)', async () => {
    await page.emulateTimezone('Pacific/Kiritimati'); // UTC+14
    try {
      await page.goto(base, { waitUntil: 'load' });
      await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
      answers.set('/api/topology', () => ({ status: 503, headers: { 'retry-after': asctime(Date.now() + 8_000) }, body: { error: 'busy' } }));
      await page.waitForFunction(statusStarts('control plane busy; retrying in'), { timeout: 10_000 });
      const wait = Number(/retrying in (\d+) s/.exec(await status())?.[1]);
      expect(wait).toBeGreaterThanOrEqual(6);
      expect(wait).toBeLessThanOrEqual(9);
    } finally {
      await page.emulateTimezone(undefined);
    }
  }, 30_000);

  test('a Retry-After that is no delay-seconds nor HTTP-date ("x 5", an ISO 8601 time) is no Retry-After: the 503 is the answer, shown as an error', async () => {
    await page.goto(base, { waitUntil: 'load' });
    await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    for (const value of ['x 5', '2099-12-07T20:00:05Z']) {
      answers.set('/api/topology', () => ({ status: 503, headers: { 'retry-after': value }, body: { error: 'busy' } }));
      await page.waitForFunction(`document.getElementById('status')?.textContent === 'error'`, { timeout: 10_000 });
      expect(await page.$eval('#view', (e) => e.textContent ?? '')).toContain('Cannot load: /api/topology: 503 busy');
      answers.set('/api/topology', () => ({ status: 200, body: TOPOLOGY }));
      await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    }
  }, 30_000);

  const viewText = () => page.$eval('#view', (e) => e.textContent ?? '');
  const note = () => page.$eval('#stale', (e) => ({ kind: e.getAttribute('data-stale'), text: e.textContent ?? '' })).catch(() => null);

  test('a refused navigation does not leave the old page under the new address: it says the page was refused and when it is asked again', async () => {
    await page.goto(base, { waitUntil: 'load' });
    await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    expect(await viewText()).toContain('service web.shop');
    answers.set('/api/why', () => ({ status: 503, headers: { 'retry-after': '5' }, body: { error: 'busy: /api/why took 1250 ms to render' } }));
    await page.evaluate(`window.location.hash = '#/why'`);
    await page.waitForSelector('#stale[data-stale="refused"]', { timeout: 10_000 });
    const refusedAt = Date.now();
    // The topology is gone: what is shown is the refusal of the page asked for.
    expect(await viewText()).not.toContain('web.shop');
    expect((await note())!.text).toMatch(/^Not loaded: #\/why \(window 30s\): the control plane refused it \(HTTP 503: busy: \/api\/why took 1250 ms to render\); retrying at \S.* \(in 5 s\)\.$/);
    expect(await status()).toMatch(/^control plane busy; retrying in 5 s \(at /);
    answers.set('/api/why', () => ({ status: 200, body: WHY }));
    await page.waitForFunction(`document.querySelector('#view h2')?.textContent === 'Why was it denied?'`, { timeout: 10_000 });
    expect(await note()).toBeNull();
    // Asked again after the Retry-After, not at the 2 s refresh.
    const whys = asked.filter((a) => a.path === '/api/why');
    expect(whys).toHaveLength(2);
    expect(whys[1].at - refusedAt).toBeGreaterThanOrEqual(4_000);
    // Another window is another page too.
    answers.set('/api/why', () => ({ status: 429, headers: { 'retry-after': '3' }, body: {} }));
    await page.select('#window', '1m');
    await page.waitForSelector('#stale[data-stale="refused"]', { timeout: 10_000 });
    expect((await note())!.text).toMatch(/^Not loaded: #\/why \(window 1m\): the control plane refused it \(HTTP 429\); retrying at .* \(in 3 s\)\.$/);
    expect(await viewText()).not.toContain('Why was it denied?');
    answers.set('/api/why', () => ({ status: 200, body: WHY }));
    await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    await page.select('#window', '30s');
  }, 40_000);

  test('a refused refresh keeps the page shown, marked stale with the time it was loaded, and says when it is asked again; the next load clears it', async () => {
    await page.goto(base, { waitUntil: 'load' });
    await page.waitForFunction(statusStarts('updated'), { timeout: 10_000 });
    const loadedAt = /updated (.*)$/.exec(await status())![1];
    answers.set('/api/topology', () => ({ status: 503, headers: { 'retry-after': '4' }, body: { error: 'busy' } }));
    await page.waitForSelector('#stale[data-stale="stale"]', { timeout: 10_000 });
    const n = await note();
    expect(n!.text).toMatch(/^Stale: shown as loaded at .*; the refresh was refused: the control plane refused it \(HTTP 503: busy\); retrying at .* \(in 4 s\)\.$/);
    // The time it was loaded, in the form the status line gave it ("updated 11:22:33 PM").
    const at = /^Stale: shown as loaded at (.*?); /.exec(n!.text)![1];
    expect(at.length).toBe(loadedAt.length);
    expect(await viewText()).toContain('service web.shop');
    expect(await page.$eval('#view', (e) => e.classList.contains('stale'))).toBe(true);
    // Refused again (the retry after 4 s): still one note, not two.
    const refusals = asked.filter((a) => a.path === '/api/topology').length;
    await waitFor(async () => asked.filter((a) => a.path === '/api/topology').length > refusals, 'the retry', 10_000);
    await page.waitForFunction(statusStarts('control plane busy'), { timeout: 10_000 });
    expect(await page.$$eval('#view .stale-note', (ns) => ns.length)).toBe(1);
    answers.set('/api/topology', () => ({ status: 200, body: TOPOLOGY }));
    await page.waitForFunction(`document.getElementById('stale') === null`, { timeout: 10_000 });
    expect(await page.$eval('#view', (e) => e.classList.contains('stale'))).toBe(false);
    expect(await viewText()).toContain('service web.shop');
  }, 30_000);

  test('no page error', () => {
    expect(consoleErrors).toEqual([]);
  });
});
