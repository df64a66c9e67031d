import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';

/**
 * A TrafficPolicy per-try timeout on the real data path (adv34): it bounds each attempt up
 * to its response headers and the retry goes to another endpoint; the request timeout
 * bounds all attempts together (Envoy: the route timeout includes retries), so a request
 * whose every attempt hangs ends at the request timeout, not at attempts × per-try.
 */
const pki = testPki();
let client: Proxy;
const apps: { name: string; slow: boolean; hits: number; seen: IncomingHttpHeaders[]; close(): Promise<void>; port: number }[] = [];

beforeAll(async () => {
  for (const [name, slow] of [['slow-a', true], ['fast-b', false], ['slow-c', true], ['slow-d', true]] as const) {
    const app = { name, slow, hits: 0, seen: [] as IncomingHttpHeaders[], port: 0, close: (): Promise<void> => Promise.resolve() };
    const server = createServer((req, res) => {
      app.hits++;
      app.seen.push(req.headers);
      req.resume();
      const reply = () => res.writeHead(200, { 'x-app': name }).end();
      if (!app.slow) return void reply();
      const t = setTimeout(reply, 2000);
      res.on('close', () => clearTimeout(t));
    });
    const l = await listenOnLoopback(server);
    app.port = l.port;
    app.close = l.close;
    apps.push(app);
  }
  const retry = { retryOn: ['per-try-timeout'], perTryTimeoutMs: '150ms', attempts: 3, backoffBaseMs: '1ms' };
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('mixed', 80, [apps[0], apps[1]].map((a) => ({ appPort: a.port, proxy: null })), {
        policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { enabled: false }, retry },
      }),
      meshService('hung', 80, [apps[2], apps[3]].map((a) => ({ appPort: a.port, proxy: null })), {
        policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { enabled: false }, retry, timeouts: { requestMs: '400ms' } },
      }),
    ],
  });
});

afterAll(async () => {
  await client.close();
  await Promise.all(apps.map((a) => a.close()));
});

function call(svc: string): Promise<{ status: number; app: string; flag: string; ms: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: `${svc}.default.svc.cluster.local` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, app: String(res.headers['x-app'] ?? ''), flag: String(res.headers['wren-proxy-error'] ?? ''), ms: performance.now() - start }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('an attempt that hits the per-try timeout is cut and retried on the other endpoint', async () => {
  const replies = [];
  for (let i = 0; i < 4; i++) replies.push(await call('mixed'));
  expect(replies.map((r) => `${r.status} ${r.app}`)).toEqual(Array(4).fill('200 fast-b'));
  // The slow endpoint's attempts were cut at the per-try timeout: its retries carry wren-attempt 2.
  expect(apps[0].hits).toBeGreaterThan(0);
  expect(apps[1].seen.some((h) => h['wren-attempt'] === '2')).toBe(true);
  for (const r of replies) expect(r.ms).toBeLessThan(1500);
});

test('the request timeout bounds every attempt together: 504 at about 400 ms, not attempts × per-try', async () => {
  const before = apps[2].hits + apps[3].hits;
  const r = await call('hung');
  expect(r.status).toBe(504);
  expect(r.ms).toBeGreaterThanOrEqual(390);
  expect(r.ms).toBeLessThan(1500);
  // 150 ms per try: two or three tries fit in 400 ms, never the four that attempts: 3 allows.
  const tries = apps[2].hits + apps[3].hits - before;
  expect(tries).toBeGreaterThanOrEqual(2);
  expect(tries).toBeLessThanOrEqual(3);
});
