import { request as httpRequest, createServer } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';

/**
 * Ring hash keeps every other key where it was when one endpoint is ejected (adv34): eight
 * plaintext apps behind a ring-hash service hashed on `x-user`; the app that owns one user
 * starts failing and is ejected; the users it did not own still reach the same app, and
 * its users reach another one. The ring was rebuilt over the seven healthy endpoints, and
 * at 8 -> 7 (the points per endpoint double, 128 -> 256) about half of all users moved.
 */
const pki = testPki();
let client: Proxy;
const apps: { name: string; failing: boolean; close(): Promise<void>; port: number }[] = [];

beforeAll(async () => {
  for (let i = 0; i < 8; i++) {
    const app = { name: `app-${i}`, failing: false, port: 0, close: (): Promise<void> => Promise.resolve() };
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(app.failing ? 503 : 200, { 'x-app': app.name });
        res.end();
      });
    });
    const l = await listenOnLoopback(server);
    app.port = l.port;
    app.close = l.close;
    apps.push(app);
  }
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('sticky', 80, apps.map((a) => ({ appPort: a.port, proxy: null })), {
        policy: { loadBalancer: { kind: 'ring-hash', hashHeader: 'x-user' }, outlierDetection: { consecutive5xx: 2, intervalMs: '100ms', baseEjectionTimeMs: '4s' } },
      }),
    ],
  });
});

afterAll(async () => {
  await client.close();
  await Promise.all(apps.map((a) => a.close()));
});

function call(user: string): Promise<{ status: number; app: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'sticky.default.svc.cluster.local', 'x-user': user } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, app: String(res.headers['x-app'] ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

const users = Array.from({ length: 120 }, (_, i) => `user-${i}`);
const owners = async () => {
  const out: string[] = [];
  for (const u of users) {
    const r = await call(u);
    expect(r.status).toBe(200);
    out.push(r.app);
  }
  return out;
};

test('ejecting one of eight ring-hash endpoints moves only its users, and they come back with it', async () => {
  const before = await owners();
  const victim = apps.find((a) => a.name === before[0])!;
  victim.failing = true;
  // Two 503s in a row eject it (consecutive5xx 2) for 4 s, longer than the 120 calls below take.
  expect((await call(users[0])).status).toBe(503);
  expect((await call(users[0])).status).toBe(503);
  victim.failing = false;
  const during = await owners();
  const moved = users.filter((_, i) => during[i] !== before[i]);
  const victims = users.filter((_, i) => before[i] === victim.name);
  expect(victims.length).toBeGreaterThan(0);
  expect(moved).toEqual(victims);
  expect(during).not.toContain(victim.name);
  // Unejected on the first sweep after its ejection time: every user is back where it was.
  const deadline = Date.now() + 15_000;
  while ((await call(users[0])).app !== victim.name && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(await owners()).toEqual(before);
});
