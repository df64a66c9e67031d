import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp } from './helpers/fake-app.js';
import { startPairFor } from './helpers/pair-for-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The sidecar's read-only metrics port (listeners.metrics, Istio's 15020) on real
 * sidecars: what Prometheus scrapes in a cluster, where the admin port is loopback-only.
 * It serves the same registry as the admin /metrics and nothing of the admin port's
 * actions; a slow client is cut by the headers timeout and counted.
 */
const pki = testPki();
let pair: Awaited<ReturnType<typeof startPairFor>>;

beforeAll(async () => {
  pair = await startPairFor(pki, await fakeApp('web'), { serverConfig: { limits: { requestHeadersTimeoutMs: 300 } } });
});
afterAll(() => pair.close());

/** A request through the client sidecar to web:80 (node:http: fetch cannot set Host). */
const call = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: pair.client.outboundPort, path: '/echo', headers: { host: 'web.default.svc.cluster.local' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });

const scrape = (p: Proxy, path = '/stats/prometheus', init?: RequestInit) => fetch(`http://127.0.0.1:${p.metricsPort}${path}`, init);

test('/stats/prometheus serves istio_requests_total after traffic, the same registry as the admin /metrics', async () => {
  expect(await call()).toBe(200);
  let text = '';
  for (let i = 0; i < 100 && !/^istio_requests_total\{reporter="destination".*\} 1$/m.test(text); i++) {
    text = await (await scrape(pair.server)).text();
    await new Promise((res) => setTimeout(res, 20));
  }
  expect(text).toMatch(/^istio_requests_total\{reporter="destination".*response_code="200".*\} 1$/m);
  const client = await scrape(pair.client);
  expect(client.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  expect(await client.text()).toMatch(/^istio_requests_total\{reporter="source".*response_code="200".*\} 1$/m);
  // The same metric families as the admin port (values of process gauges may move between the two reads).
  const families = (t: string) => [...t.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]).sort();
  const admin = await (await fetch(`http://127.0.0.1:${pair.server.adminPort}/metrics`)).text();
  expect(families(await (await scrape(pair.server, '/metrics')).text())).toEqual(families(admin));
});

test('/healthz/ready mirrors the admin /ready', async () => {
  const r = await scrape(pair.server, '/healthz/ready');
  expect([r.status, await r.text()]).toEqual([200, 'ready\n']);
});

test('no admin actions or dumps: POST /drain is refused and the proxy keeps serving; /config_dump 404', async () => {
  const drain = await scrape(pair.server, '/drain', { method: 'POST', headers: { 'wren-admin': '1' } });
  expect(drain.status).toBe(404);
  const post = await scrape(pair.server, '/stats/prometheus', { method: 'POST', headers: { 'wren-admin': '1' } });
  expect(post.status).toBe(405);
  for (const path of ['/config_dump', '/clusters', '/certs', '/logging?level=debug', '/']) expect([path, (await scrape(pair.server, path)).status]).toEqual([path, 404]);
  expect(pair.server.isDraining).toBe(false);
  expect(await call()).toBe(200);
});

test('a client that never finishes its request head is cut by requestHeadersTimeoutMs and counted', async () => {
  const s = connect(pair.server.metricsPort, '127.0.0.1');
  await once(s, 'connect');
  s.write('GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n');
  const t0 = performance.now();
  await once(s, 'close');
  expect(performance.now() - t0).toBeGreaterThan(200);
  expect(await (await scrape(pair.server)).text()).toMatch(/^wren_limit_exceeded_total\{direction="metrics",limit="request-headers-timeout"\} 1$/m);
});

test('listeners.metrics.enabled: false binds nothing', async () => {
  const p = await startProxy({ pki, serviceAccount: 'quiet', config: { listeners: { metrics: { enabled: false } } } });
  try {
    expect(p.metricsPort).toBe(0);
  } finally {
    await p.close();
  }
});
