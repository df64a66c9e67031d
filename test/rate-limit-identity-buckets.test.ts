import { request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.rateLimitIdentityBuckets reaches a running sidecar's rate limiter (proxy.ts: the
 * RateLimiter's bound and its onEvict count): with a bound of 1, a second caller identity
 * evicts the first's bucket, counted in wren_limit_exceeded_total{limit="rate-limit-identity-buckets"}.
 * Only the rate limiter's unit tests set the bound, so a sidecar that kept the default
 * 10,000 whatever the config said passed every test.
 */
const pki = testPki();
let app: FakeApp;
let server: Proxy;
const clients: Proxy[] = [];

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({
    pki, serviceAccount: 'web',
    config: {
      limits: { rateLimitIdentityBuckets: 1 },
      policy: { rateLimits: [{ name: 'default/web-limits', identity: { requestsPerSecond: 1000 } }] },
    },
  });
  for (const sa of ['alice', 'bob']) {
    clients.push(await startProxy({ pki, serviceAccount: sa, services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])]}));
  }
});

afterAll(async () => {
  await Promise.all([...clients, server].map((p) => p.close()));
  await app.close();
});

function get(p: Proxy): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: p.outboundPort, path: '/name', headers: { host: 'web', connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function evictions(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  const m = /^wren_limit_exceeded_total\{direction="inbound",limit="rate-limit-identity-buckets"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

test('a second caller past limits.rateLimitIdentityBuckets: 1 evicts the first caller\'s bucket, counted', async () => {
  expect(await get(clients[0])).toBe(200);
  expect(await evictions()).toBe(0);
  expect(await get(clients[1])).toBe(200);
  expect(await evictions()).toBe(1);
  expect(await get(clients[0])).toBe(200);
  expect(await evictions()).toBe(2);
});
