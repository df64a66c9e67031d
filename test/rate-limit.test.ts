import * as grpc from '@grpc/grpc-js';
import { Agent, request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { fakeGrpc, echoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Inbound local rate limits (InboundPolicy.rateLimits in the server sidecar's static
 * config) between real sidecars over mTLS. The rates are 0.01 token/s: a burst that takes
 * seconds refills a few hundredths of a token, so the counts are exact.
 */
const pki = testPki();
let app: FakeApp, other: FakeApp, grpcApp: FakeGrpc;
let server: Proxy, noisy: Proxy, quiet: Proxy;
const agent = new Agent({ keepAlive: true, maxSockets: 8 });
const SLOW = 0.01;

beforeAll(async () => {
  [app, other, grpcApp] = await Promise.all([fakeApp('checkout'), fakeApp('admin'), fakeGrpc()]);
  const policy = {
    rateLimits: [
      // Per caller, on the app's port only.
      { name: 'demo/per-caller', ports: [app.port], identity: { requestsPerSecond: SLOW, burst: 10 } },
      // The whole workload, on the second port: a burst of 40 gets exactly 25 through.
      { name: 'demo/total', ports: [other.port], total: { requestsPerSecond: SLOW, burst: 25 } },
      { name: 'demo/grpc', ports: [grpcApp.port], total: { requestsPerSecond: SLOW, burst: 2 } },
    ],
  };
  server = await startProxy({ pki, namespace: 'demo', serviceAccount: 'checkout', config: { policy } });
  const services = [
    meshService('checkout', 80, [{ appPort: app.port, proxy: server }]),
    meshService('admin', 80, [{ appPort: other.port, proxy: server }]),
    meshService('echo', 50051, [{ appPort: grpcApp.port, proxy: server }], { protocol: 'grpc' }),
  ];
  [noisy, quiet] = await Promise.all([
    startProxy({ pki, namespace: 'demo', serviceAccount: 'noisy', services }),
    startProxy({ pki, namespace: 'demo', serviceAccount: 'quiet', services }),
  ]);
});

afterAll(async () => {
  agent.destroy();
  await Promise.all([noisy, quiet, server].map((p) => p.close()));
  await Promise.all([app.close(), other.close(), grpcApp.close()]);
});

function get(via: Proxy, host: string): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: via.outboundPort, path: '/name', agent, headers: { host } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}
const burst = (via: Proxy, host: string, n: number) => Promise.all(Array.from({ length: n }, () => get(via, host)));
const metrics = async () => (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
const value = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);

test('a burst over the workload limit gets exactly the excess as 429 with Retry-After, flagged RL and counted', async () => {
  const hits = other.hits.count;
  const replies = await burst(noisy, 'admin', 40);
  const refused = replies.filter((r) => r.status === 429);
  expect(replies.filter((r) => r.status === 200)).toHaveLength(25);
  expect(refused).toHaveLength(15);
  expect(other.hits.count - hits).toBe(25);
  // 0.01 token/s: a whole token is about 100 s away.
  for (const r of refused) {
    expect(r.headers['wren-proxy-error']).toBe('rate-limited');
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(99);
    expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(100);
  }
  const m = await metrics();
  expect(value(m, /wren_rate_limited_total\{scope="total"\} (\d+)/)).toBe(15);
  expect(m).toMatch(/istio_requests_total\{[^}]*reporter="destination"[^}]*response_code="429"[^}]*response_flags="RL"[^}]*\} 15\n/);
});

test('per-identity fairness: the noisy caller is limited to its bucket, the quiet one is not affected', async () => {
  const loud = await burst(noisy, 'checkout', 30);
  expect(loud.filter((r) => r.status === 200)).toHaveLength(10);
  expect(loud.filter((r) => r.status === 429)).toHaveLength(20);
  const calm = await burst(quiet, 'checkout', 5);
  expect(calm.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  expect(value(await metrics(), /wren_rate_limited_total\{scope="identity"\} (\d+)/)).toBe(20);
});

test('gRPC callers over the limit get RESOURCE_EXHAUSTED', async () => {
  const c = echoClient(quiet.outboundPort, 'echo:50051');
  const unary = () => new Promise<grpc.ServiceError | null>((resolve) => c.Unary({ message: 'hi' }, (err: grpc.ServiceError | null) => resolve(err)));
  const codes = [];
  for (let i = 0; i < 4; i++) codes.push((await unary())?.code ?? grpc.status.OK);
  c.close();
  expect(codes).toEqual([grpc.status.OK, grpc.status.OK, grpc.status.RESOURCE_EXHAUSTED, grpc.status.RESOURCE_EXHAUSTED]);
});

test('a pushed inbound policy applies to the next request; a RateLimitPolicy it leaves unchanged keeps its buckets', async () => {
  const base = server.config.policy;
  const limits = base.rateLimits!;
  // The per-caller bucket of `noisy` is empty (above); a push that adds a policy keeps it so.
  const extra = { name: 'demo/extra', ports: [65000], total: { requestsPerSecond: 1, burst: 1 }, overrides: [], routes: [] };
  server.applySnapshot({ version: 'v2', source: 'test', services: [], inboundPolicy: { ...base, rateLimits: [...limits, extra] } });
  expect((await get(noisy, 'checkout')).status).toBe(429);
  // Changing that policy starts it afresh (a full bucket of 3).
  const changed = limits.map((p) => (p.name === 'demo/per-caller' ? { ...p, identity: { requestsPerSecond: SLOW, burst: 3 } } : p));
  server.applySnapshot({ version: 'v3', source: 'test', services: [], inboundPolicy: { ...base, rateLimits: changed } });
  expect((await burst(noisy, 'checkout', 5)).map((r) => r.status).sort()).toEqual([200, 200, 200, 429, 429]);
  // No rate limits at all: nothing is refused.
  server.applySnapshot({ version: 'v4', source: 'test', services: [], inboundPolicy: { ...base, rateLimits: [] } });
  expect((await burst(noisy, 'checkout', 5)).every((r) => r.status === 200)).toBe(true);
});
