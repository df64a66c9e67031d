import { request as httpRequest } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * DNS rebinding: a page on evil.example that re-resolves its name to 127.0.0.1 reads the
 * admin port as same-origin, and the only trace is its Host header. Both admin ports (the
 * sidecar's and the control plane's) refuse every request whose Host is a DNS name other
 * than localhost, with 403 saying why; localhost and IP literals (the kubelet's probes and
 * Prometheus send the pod IP) are answered.
 */
const pki = testPki();
let proxy: Proxy;
let cp: ControlPlane;
let dir: string;
const logs: string[] = [];

beforeAll(async () => {
  proxy = await startProxy({ pki, serviceAccount: 'web', logs });
  dir = await mkdtemp(join(tmpdir(), 'wren-rebind-'));
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(3), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir, rescanMs: 5_000 }),
  });
  await cp.whenReady();
}, 20_000);
afterAll(async () => {
  await proxy.close();
  await cp.close();
  await rm(dir, { recursive: true, force: true });
});

function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const PROXY_PATHS = ['/', '/ready', '/live', '/metrics', '/config_dump', '/clusters', '/certs'];
const CP_PATHS = ['/live', '/ready', '/metrics', '/debug/proxies', '/debug/health', '/debug/trust', '/debug/view', '/debug/rejected', '/dashboard/', '/dashboard/dashboard.js', '/api/stat', '/api/topology', '/api/why'];

test('the sidecar admin port refuses a rebound Host on every route, saying why', async () => {
  for (const path of PROXY_PATHS) {
    const r = await get(proxy.adminPort, path, `evil.example:${proxy.adminPort}`);
    expect([path, r.status]).toEqual([path, 403]);
    expect(r.body).toContain('DNS rebinding');
    expect(r.body).not.toContain('BEGIN CERTIFICATE');
  }
  const post = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxy.adminPort, method: 'POST', path: '/drain', headers: { host: 'evil.example', 'wren-admin': '1' }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  expect(post).toBe(403);
  expect(proxy.isDraining).toBe(false);
  expect(logs.some((l) => l.includes('admin request refused'))).toBe(true);
});

test('the sidecar admin port answers localhost and IP-literal Hosts', async () => {
  for (const host of ['localhost', `localhost:${proxy.adminPort}`, `127.0.0.1:${proxy.adminPort}`, `[::1]:${proxy.adminPort}`, '10.244.1.7:15000'])
    for (const path of ['/ready', '/certs']) expect([host, path, (await get(proxy.adminPort, path, host)).status]).toEqual([host, path, 200]);
  // What fetch, curl and `wren proxy await` send.
  expect((await fetch(`http://127.0.0.1:${proxy.adminPort}/config_dump`)).status).toBe(200);
  expect((await fetch(`http://localhost:${proxy.adminPort}/ready`)).status).toBe(200);
});

test('the control plane admin port refuses a rebound Host on every route and answers IP literals', async () => {
  for (const path of CP_PATHS) {
    const r = await get(cp.adminPort, path, 'evil.example:15014');
    expect([path, r.status]).toEqual([path, 403]);
    expect(JSON.parse(r.body)).toEqual({ error: expect.stringContaining('DNS rebinding') });
  }
  // kubelet's httpGet probes send Host: <pod IP>:15014.
  for (const host of ['10.244.1.7:15014', `127.0.0.1:${cp.adminPort}`, 'localhost'])
    for (const path of ['/ready', '/live', '/debug/trust']) expect([host, path, (await get(cp.adminPort, path, host)).status]).toEqual([host, path, 200]);
});
