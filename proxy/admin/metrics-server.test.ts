import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { MetricsServer } from './metrics-server.js';
import type { AppProbeOutcome } from './app-prober.js';

/**
 * The read-only scrape port on a real socket (port 0): what it serves, what it refuses,
 * and its two limits. The clock is fake so the headers timeout fires when the test says.
 */
const clock = new FakeClock();
const limits: string[] = [];
let ready = { ready: true, reason: 'ready' };
/** The app probes the server answers for (app-prober.ts is tested on its own): path → its next outcome. */
const probeRuns: string[] = [];
let releaseHung: () => void = () => undefined;
const probes = new Map<string, () => Promise<AppProbeOutcome>>([
  ['/app-health/web/readyz', async () => ({ result: 'success', reason: 'ok' })],
  ['/app-health/web/livez', async () => ({ result: 'failure', reason: 'HTTP 500' })],
  ['/app-health/web/startupz', async () => ({ result: 'timeout', reason: 'timed out after 1s' })],
  ['/app-health/slow/readyz', () => new Promise((r) => (releaseHung = () => r({ result: 'success', reason: 'ok' })))],
]);
const SMALL = 'istio_requests_total{reporter="source"} 1\n';
let body = SMALL;
let server: MetricsServer;
let port: number;

beforeAll(async () => {
  server = new MetricsServer({
    address: '127.0.0.1', ipv6Address: '', port: 0, clock, logger: createLogger({ level: 'error', sink: () => undefined }),
    limits: { requestHeadersTimeoutMs: 10_000, maxConnectionsPerListener: 3 },
    onLimit: (l) => void limits.push(l),
    ready: () => ready,
    metrics: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body }),
    appProbes: { has: (path) => probes.has(path), run: (path) => (probeRuns.push(path), probes.get(path)!()) },
  });
  port = (await server.listen()).port;
});
afterAll(() => server.close());
beforeEach(() => void limits.splice(0));

const url = (path: string) => `http://127.0.0.1:${port}${path}`;

test('GET /stats/prometheus and its alias /metrics serve the registry; HEAD has no body', async () => {
  for (const path of ['/stats/prometheus', '/metrics', '/stats/prometheus?x=1']) {
    const r = await fetch(url(path));
    expect([path, r.status, r.headers.get('content-type'), await r.text()]).toEqual([path, 200, 'text/plain; version=0.0.4; charset=utf-8', 'istio_requests_total{reporter="source"} 1\n']);
  }
  const h = await fetch(url('/stats/prometheus'), { method: 'HEAD' });
  expect([h.status, await h.text()]).toEqual([200, '']);
});

test('GET /healthz/ready mirrors the readiness: 200 ready, 503 with the reason', async () => {
  expect((await fetch(url('/healthz/ready'))).status).toBe(200);
  ready = { ready: false, reason: 'draining' };
  const r = await fetch(url('/healthz/ready'));
  expect([r.status, await r.text()]).toEqual([503, 'draining\n']);
  ready = { ready: true, reason: 'ready' };
});

test('nothing else: admin paths 404, other methods 405', async () => {
  for (const path of ['/', '/config_dump', '/clusters', '/certs', '/ready', '/drain', '/logging', '/stats']) expect([path, (await fetch(url(path))).status]).toEqual([path, 404]);
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const r = await fetch(url('/stats/prometheus'), { method, headers: { 'wren-admin': '1' } });
    expect([method, r.status, r.headers.get('allow')]).toEqual([method, 405, 'GET, HEAD']);
  }
  expect((await fetch(url('/drain'), { method: 'POST', headers: { 'wren-admin': '1' } })).status).toBe(404);
  expect((await fetch(url('/stats/prometheus'))).status).toBe(200);
});

test('GET /app-health/<container>/<kind> runs the app\'s probe: 200 when it passes, 503 with the reason when not; other app-health paths 404', async () => {
  const answer = async (path: string, init?: RequestInit) => {
    const r = await fetch(url(path), init);
    return [r.status, await r.text()];
  };
  expect(await answer('/app-health/web/readyz')).toEqual([200, 'ok\n']);
  expect(await answer('/app-health/web/livez')).toEqual([503, 'HTTP 500\n']);
  expect(await answer('/app-health/web/startupz')).toEqual([503, 'timed out after 1s\n']);
  expect(await answer('/app-health/web/readyz', { method: 'HEAD' })).toEqual([200, '']);
  expect(probeRuns.splice(0)).toEqual(['/app-health/web/readyz', '/app-health/web/livez', '/app-health/web/startupz', '/app-health/web/readyz']);
  for (const path of ['/app-health/other/readyz', '/app-health/web/readyz/', '/app-health/', '/app-health/web']) expect([path, (await fetch(url(path))).status]).toEqual([path, 404]);
  expect(await answer('/app-health/web/readyz', { method: 'POST' })).toEqual([405, 'method POST not allowed on /app-health/web/readyz\n']);
  expect(probeRuns).toEqual([]);
});

test('a client that leaves while its probe runs costs nothing more: the answer is dropped, the slot freed', async () => {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write('GET /app-health/slow/readyz HTTP/1.1\r\nHost: x\r\n\r\n');
  for (let i = 0; i < 100 && probeRuns.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  expect(probeRuns.splice(0)).toEqual(['/app-health/slow/readyz']);
  s.destroy();
  await new Promise((r) => setTimeout(r, 20));
  releaseHung();
  expect((await fetch(url('/app-health/web/readyz'))).status).toBe(200);
  probeRuns.splice(0);
});

const open = async (): Promise<Socket> => {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  return s;
};
const closed = (s: Socket) => (s.destroyed || s.readableEnded ? Promise.resolve() : once(s, 'close').then(() => undefined));

test('a request head that does not arrive within requestHeadersTimeoutMs closes the connection, counted', async () => {
  const s = await open();
  s.write('GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n');
  await new Promise((r) => setTimeout(r, 50));
  clock.advance(9_999);
  expect(s.destroyed).toBe(false);
  clock.advance(1);
  await closed(s);
  expect(limits).toEqual(['request-headers-timeout']);
  // A whole request in time is served, its timer cleared: advancing later counts nothing.
  const ok = await fetch(url('/stats/prometheus'));
  expect(ok.status).toBe(200);
});

test('connections over maxConnectionsPerListener are refused at accept, counted', async () => {
  const held = await Promise.all([open(), open(), open()]);
  await new Promise((r) => setTimeout(r, 50));
  const extra = await open();
  await closed(extra);
  expect(limits).toEqual(['max-connections']);
  held.forEach((s) => s.destroy());
  await Promise.all(held.map(closed));
  await new Promise((r) => setTimeout(r, 50));
  expect((await fetch(url('/stats/prometheus'))).status).toBe(200);
});

test('a scraper that does not read its response is let go once nothing moves for the delayed close (1 s), counted', async () => {
  body = 'x'.repeat(32 << 20); // more than the kernel's buffers take
  try {
    const held = await open();
    held.on('error', () => undefined);
    held.pause();
    held.write('GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n\r\n');
    for (let i = 0; i < 200 && !limits.includes('delayed-close-timeout'); i++) {
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(1000);
    }
    expect(limits).toEqual(['delayed-close-timeout']);
    held.destroy();
  } finally {
    body = SMALL;
  }
  // A scraper that reads is served whole, nothing more counted.
  const ok = await fetch(url('/stats/prometheus'));
  expect([ok.status, await ok.text()]).toEqual([200, SMALL]);
  clock.advance(5000);
  expect(limits).toEqual(['delayed-close-timeout']);
});
