import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { testServerCert } from './helpers/test-ca.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import { parseEgressSettings } from '../contract/egress.js';
import { MAX_TLS_POOLS } from '../proxy/egress/egress-http.js';
import { FakeClock } from '../common/clock.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The TLS origination pools (docs/traffic-management.md, TLS origination) do not outlive
 * the settings that made them, and there are at most MAX_TLS_POOLS of them: a real HTTPS
 * server with a test CA stands in for the external hosts, and its open connections show
 * what the sidecar keeps. Before the fix, a wildcard host opened one pool per host name
 * for good, and a changed CA left the old pool's connections open.
 */
const pki = testPki();
const cert = testServerCert(['*.example.com']);
/** Nothing listens there: origination connects to tls.port. */
const ORIGINATION_PORT = 18090;
let https: HttpsServer;
let httpsPort: number;
const open = new Set<Socket>();
let proxy: Proxy;

const egress = (ca: string) =>
  parseEgressSettings(
    { mode: 'REGISTRY_ONLY', externalServices: [{ name: 'default/api', hosts: ['*.example.com'], ports: [{ number: ORIGINATION_PORT, protocol: 'HTTP', tls: { mode: 'SIMPLE', caCertificates: ca, port: httpsPort } }] }] },
    'egress',
  );

beforeAll(async () => {
  https = createHttpsServer({ cert: cert.cert, key: cert.key, keepAliveTimeout: 60_000 }, (req, res) => res.end(`host=${req.headers.host}`));
  https.on('secureConnection', (s: Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
  httpsPort = (https.address() as AddressInfo).port;
  // A clock that stands still: the pools' idle timers (4 s) never close a connection while
  // the 131 requests run, however slow a loaded machine makes them (CI saw 27 of them idle out).
  proxy = await startProxy({ pki, serviceAccount: 'client', clock: new FakeClock(), originalDst: () => ({ address: '127.0.0.1', port: ORIGINATION_PORT }) });
  proxy.applySnapshot({ version: '1', source: 'test', services: [], egress: egress(cert.ca) });
});

afterAll(async () => {
  await proxy.close();
  for (const s of open) s.destroy();
  https.close();
});

function get(host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: proxy.outboundPort, path: '/', headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

test(`a wildcard host makes a pool per host name: past ${MAX_TLS_POOLS}, the least recently used is retired and its idle connection closed`, async () => {
  // h0 first, then used again after h1..: the pool retired first is h1's, not h0's.
  expect(await get('h0.example.com')).toEqual({ status: 200, body: 'host=h0.example.com' });
  for (let i = 1; i < MAX_TLS_POOLS; i++) expect((await get(`h${i}.example.com`)).status).toBe(200);
  expect(await get('h0.example.com')).toEqual({ status: 200, body: 'host=h0.example.com' });
  expect(open.size).toBe(MAX_TLS_POOLS);
  for (let i = MAX_TLS_POOLS; i < MAX_TLS_POOLS + 3; i++) expect((await get(`h${i}.example.com`)).status).toBe(200);
  expect(await until(() => open.size === MAX_TLS_POOLS, 3000)).toBe(true);
  expect(await metric(proxy, /wren_egress_tls_pools_retired_total\{reason="limit"\} (\d+)/)).toBe(3);
  // h0's pool was kept (its connection reused: no new one opened), h1's is gone (a new one).
  const before = open.size;
  await get('h0.example.com');
  expect(open.size).toBe(before);
});

test('settings that change retire the pools made for the old ones (their connections close), and requests use the new ones', async () => {
  const pools = open.size;
  expect(pools).toBeGreaterThan(0);
  // The same CA with a trailing newline: other settings as far as the pools know.
  proxy.applySnapshot({ version: '2', source: 'test', services: [], egress: egress(`${cert.ca}\n`) });
  expect(await until(() => open.size === 0, 3000)).toBe(true);
  expect(await metric(proxy, /wren_egress_tls_pools_retired_total\{reason="policy"\} (\d+)/)).toBe(pools);
  expect(await get('h0.example.com')).toEqual({ status: 200, body: 'host=h0.example.com' });
  expect(open.size).toBe(1);
});
