import { createServer, request as httpRequest, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * TrafficPolicy maxConnections is Envoy's max_connections, which bounds exactly the
 * HTTP/1.1 pool's connections (one per request in flight; Istio's
 * connectionPool.tcp.maxConnections maps to it). The keep-alive connections to an
 * unmeshed endpoint take the cluster's connection slots; a request that finds them all
 * busy waits as a pending request (maxPendingRequests) for at most the connect timeout,
 * then gets 503 overflow (UO), as does a request over maxPendingRequests at once.
 */
const pki = testPki();
let client: Proxy;

interface App {
  readonly port: number;
  readonly close: () => Promise<void>;
  peak: number;
}

async function slowApp(delayMs: number): Promise<App> {
  const open = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), delayMs);
  });
  const l = await listenOnLoopback(server);
  const app: App = { port: l.port, close: l.close, peak: 0 };
  server.on('connection', (s: Socket) => {
    open.add(s);
    app.peak = Math.max(app.peak, open.size);
    s.on('close', () => open.delete(s));
  });
  return app;
}

let slow: App; // answers after 1.5 s, longer than the 1 s connect timeout
let quick: App; // answers after 150 ms
let strict: App; // maxPendingRequests 1
let pair: [App, App]; // two endpoints, maxConnections 1

beforeAll(async () => {
  [slow, quick, strict] = await Promise.all([slowApp(1500), slowApp(150), slowApp(600)]);
  pair = await Promise.all([slowApp(300), slowApp(300)]);
  const breaker = (maxPendingRequests: number) => ({ policy: { circuitBreaker: { maxConnections: 2, maxPendingRequests, maxRequests: 100 } } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('legacy', 80, [{ appPort: slow.port, proxy: null }], breaker(100)),
      meshService('quick', 80, [{ appPort: quick.port, proxy: null }], breaker(100)),
      // A pending request waits for a free connection for at most the connect timeout: 5 s
      // here, so the one that waits is served after the app's 600 ms even on a loaded machine
      // (with the default 1 s, a CI run once timed it out).
      meshService('strict', 80, [{ appPort: strict.port, proxy: null }], { policy: { ...breaker(1).policy, timeouts: { connectMs: 5000 } } }),
      meshService('pair', 80, [{ appPort: pair[0].port, proxy: null }, { appPort: pair[1].port, proxy: null }], {
        policy: { loadBalancer: { kind: 'round-robin' }, circuitBreaker: { maxConnections: 1, maxPendingRequests: 100, maxRequests: 100 } },
      }),
    ],
  });
}, 20_000);

afterAll(async () => {
  await client.close();
  await Promise.all([slow, quick, strict, ...pair].map((a) => a.close()));
});

function get(host: string): Promise<{ status: number; error: string | undefined }> {
  return new Promise((resolve) => {
    const r = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, error: res.headers['wren-proxy-error'] as string | undefined }));
    });
    r.on('error', () => resolve({ status: -1, error: 'socket' }));
    r.end();
  });
}

async function overflowCount(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  return [...text.matchAll(/wren_proxy_errors_total\{direction="outbound",code="overflow"\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

test('maxConnections bounds the HTTP/1.1 connections to an unmeshed endpoint', async () => {
  const before = await overflowCount();
  const results = await Promise.all(Array.from({ length: 10 }, () => get('legacy')));
  expect(slow.peak).toBeLessThanOrEqual(2);
  // Two are served; the eight waiting find no connection free within the 1 s connect timeout.
  expect(results.filter((r) => r.status === 200).length).toBe(2);
  expect(results.filter((r) => r.status === 503 && r.error === 'overflow').length).toBe(8);
  expect((await overflowCount()) - before).toBe(8);
}, 30_000);

test('requests over the limit wait for a connection and are served on it', async () => {
  const results = await Promise.all(Array.from({ length: 6 }, () => get('quick')));
  expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
  expect(quick.peak).toBeLessThanOrEqual(2);
}, 30_000);

test('beyond maxPendingRequests a request overflows at once', async () => {
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: 4 }, () => get('strict')));
  const statuses = results.map((r) => r.status).sort();
  // Two on the two connections, one pending (served after them), one overflowing.
  expect(statuses).toEqual([200, 200, 200, 503]);
  expect(results.find((r) => r.status === 503)?.error).toBe('overflow');
  expect(strict.peak).toBeLessThanOrEqual(2);
  expect(Date.now() - started).toBeLessThan(5_000);
}, 30_000);

test('as in Envoy, an endpoint with no connection opens one even at the limit (else its requests could only time out)', async () => {
  const results = await Promise.all(Array.from({ length: 4 }, () => get('pair')));
  expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
  expect(pair.map((a) => a.peak)).toEqual([1, 1]);
}, 30_000);

type Limits = Record<'connections' | 'pending', { active: number; max: number }>;
async function limits(): Promise<Record<string, Limits>> {
  const clusters = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { limits: Limits }>;
  return Object.fromEntries(Object.entries(clusters).map(([k, v]) => [k, v.limits]));
}

test('no slot leaks: pending slots all come back, and a connection gives its slot back when it closes', async () => {
  const now = await limits();
  for (const name of ['legacy', 'quick', 'strict']) {
    const l = now[`${name}.default:80`];
    expect([name, l.pending.active]).toEqual([name, 0]);
    expect(l.connections.active).toBeLessThanOrEqual(2);
  }
  // The idle keep-alive connections still hold their slots...
  expect(now['quick.default:80'].connections.active).toBeGreaterThan(0);
  // ...until the pool's idle timeout (4 s) closes them.
  const deadline = Date.now() + 10_000;
  while ((await limits())['quick.default:80'].connections.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  expect((await limits())['quick.default:80'].connections.active).toBe(0);
}, 20_000);
