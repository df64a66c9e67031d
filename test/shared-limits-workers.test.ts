import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';
import { untilReady } from './helpers/until-ready.js';

/**
 * Limits hold for the sidecar, not per listener worker (config `concurrency` 2): the
 * RateLimitPolicy token buckets and the clusters' concurrency limits live in memory the
 * workers share (proxy/workers/shared-limits.ts), as Envoy applies its local rate limit
 * and its circuit-breaker thresholds per process. Real workers (dist/), real sockets,
 * real mTLS; the kernel spreads the connections over both workers' SO_REUSEPORT sockets,
 * and each test checks that it did (wren_worker_connections_total).
 */
const pki = testPki();
let app: FakeApp;
let limited: Proxy, client: Proxy, server: Proxy;
/** Tokens per second so low that a test's few seconds refill a small fraction of one: the counts are exact. */
const SLOW = 0.01;
const BURST = 20;
const MAX_REQUESTS = 10;

beforeAll(async () => {
  app = await fakeApp('web');
  limited = await startProxy({ pki, serviceAccount: 'limited', config: { concurrency: 2, policy: { rateLimits: [{ name: 'default/total', total: { requestsPerSecond: SLOW, burst: BURST } }] } } });
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki, serviceAccount: 'client', config: { concurrency: 2 },
    services: [
      meshService('web', 80, [{ appPort: app.port, proxy: server }], { policy: { circuitBreaker: { maxRequests: MAX_REQUESTS } } }),
      // Retries only from the reserve (ratio 0): budgetMinPerSecond 1 × ttl 10 s = 10 retries for the sidecar.
      meshService('flaky', 80, [{ appPort: app.port, proxy: server }], {
        policy: {
          outlierDetection: { enabled: false }, circuitBreaker: { accrual: 'off', maxRetries: 1000 },
          retry: { retryOn: ['5xx'], attempts: 3, backoffBaseMs: '1ms', budgetRatio: 0, budgetMinPerSecond: 1, budgetTtlMs: '10s' },
        },
      }),
    ],
  });
  await Promise.all([untilReady(limited), untilReady(client)]);
}, 30_000);

afterAll(async () => {
  await Promise.all([limited, client, server].map((p) => p?.close()));
  await app.close();
});

/** Connections each of `p`'s two workers accepted so far. */
const perWorker = (p: Proxy) => Promise.all([0, 1].map((w) => metric(p, new RegExp(`wren_worker_connections_total\\{worker="${w}"\\} (\\d+)`))));

/** One request on its own mTLS HTTP/2 connection to `limited`'s inbound port, as a peer sidecar would send it. */
function peerRequest(): Promise<number> {
  const m = pki.issue('default', 'caller');
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: limited.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const session = h2connect(`https://127.0.0.1:${limited.inboundPort}`, { createConnection: () => socket });
      session.on('error', reject);
      const r = session.request({ ':path': '/name', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' }, { endStream: true });
      r.on('error', reject);
      r.once('response', (h) => {
        r.resume();
        r.once('end', () => {
          session.close();
          resolve(Number(h[':status']));
        });
      });
    });
  });
}

test('a RateLimitPolicy of burst R admits R requests for the sidecar, not R per worker', async () => {
  const before = await perWorker(limited);
  const statuses = await Promise.all(Array.from({ length: 2 * BURST }, () => peerRequest()));
  const spread = (await perWorker(limited)).map((v, i) => v - before[i]!);
  // The kernel sent connections to both workers (each alone would admit BURST with its own bucket).
  expect(spread[0]! + spread[1]!).toBe(2 * BURST);
  expect(Math.min(...spread)).toBeGreaterThan(0);
  expect(statuses.filter((s) => s === 200)).toHaveLength(BURST);
  expect(statuses.filter((s) => s === 429)).toHaveLength(BURST);
  expect(await metric(limited, /wren_rate_limited_total\{scope="total"\} (\d+)/)).toBe(BURST);
}, 30_000);

/** A slow request on a fresh connection (agent: false) to the client's outbound port. */
function slowGet(ms: number, host = 'web', path = `/slow?ms=${ms}`): Promise<{ status: number; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, error: res.headers['wren-proxy-error'] as string | undefined }));
    })
      .on('error', reject)
      .end();
  });
}

test('maxRequests K: K+1 concurrent slow requests spread over both workers get exactly one overflow', async () => {
  // All K+1 connections on one worker happens once in 2^K rounds: then the round proves nothing, and runs again.
  for (let round = 0; round < 3; round++) {
    const before = await perWorker(client);
    const overflowBefore = await metric(client, /wren_overflow_total\{cluster="web.default:80",limit="requests"\} (\d+)/);
    const replies = await Promise.all(Array.from({ length: MAX_REQUESTS + 1 }, () => slowGet(1500)));
    const spread = (await perWorker(client)).map((v, i) => v - before[i]!);
    if (Math.min(...spread) === 0) continue;
    expect(replies.filter((r) => r.status === 200)).toHaveLength(MAX_REQUESTS);
    expect(replies.filter((r) => r.status === 503).map((r) => r.error)).toEqual(['overflow']);
    expect(await metric(client, /wren_overflow_total\{cluster="web.default:80",limit="requests"\} (\d+)/)).toBe(overflowBefore + 1);
    // Every slot was given back: a new request is admitted.
    expect((await slowGet(1)).status).toBe(200);
    return;
  }
  throw new Error('the kernel sent every connection to one worker three rounds in a row');
}, 30_000);

test("a cluster's retry budget is the sidecar's: budgetMinPerSecond × ttl retries in all, not per worker", async () => {
  const before = await perWorker(client);
  const hits = app.hits.count;
  const replies = await Promise.all(Array.from({ length: 40 }, () => slowGet(0, 'flaky', '/status/500')));
  const spread = (await perWorker(client)).map((v, i) => v - before[i]!);
  expect(Math.min(...spread)).toBeGreaterThan(0);
  expect(replies.every((r) => r.status === 500)).toBe(true);
  expect(app.hits.count - hits).toBe(40 + 10);
  expect(await metric(client, /wren_retry_budget_exhausted_total\{cluster="flaky.default:80"\} (\d+)/)).toBeGreaterThan(0);
}, 30_000);

test("a worker that crashes takes its admissions with it: its replacement starts from the other worker's count", async () => {
  // The requests worker 0 holds die with it; worker 1's stay counted (they are still in flight).
  const held = Array.from({ length: MAX_REQUESTS }, () => slowGet(8000).catch(() => null));
  const slots = (client as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } | null; listening: boolean }[] } }).pool.slots;
  await new Promise((r) => setTimeout(r, 500));
  await slots[0]!.worker!.terminate();
  const end = Date.now() + 10_000;
  while (!(slots[0]!.listening && slots[0]!.worker) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  await untilReady(client);
  // MAX_REQUESTS more: exactly as many get through as worker 0 held (its slots are free again).
  const more = await Promise.all(Array.from({ length: MAX_REQUESTS }, () => slowGet(200)));
  const survived = (await Promise.all(held)).filter((r) => r?.status === 200).length;
  expect(survived).toBeLessThan(MAX_REQUESTS); // worker 0 held some (else the round proves nothing)
  expect(more.filter((r) => r.status === 200)).toHaveLength(MAX_REQUESTS - survived);
  expect(more.filter((r) => r.status === 503).map((r) => r.error)).toEqual(Array(survived).fill('overflow'));
}, 30_000);
