import { request as httpRequest, Agent } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { metric } from './helpers/admin-metric.js';

/**
 * The pooled mTLS HTTP/1.1 connections to a peer sidecar (protocol.meshHttp1 'h1') stay
 * open while idle for limits.idleConnectionTimeoutMs less 1 s (Envoy's cluster
 * idle_timeout), and each idle close is counted. They used to close after a fixed 4 s,
 * so every burst after a pause paid a TLS handshake per connection.
 */
const pki = testPki();
let app: FakeApp, server: Proxy, shortIdle: Proxy, longIdle: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  const client = (idleConnectionTimeoutMs: number) =>
    startProxy({
      pki,
      serviceAccount: 'client',
      config: { protocol: { meshHttp1: 'h1' }, limits: { idleConnectionTimeoutMs } },
      services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])],
    });
  shortIdle = await client(1500);
  longIdle = await client(8000);
});

afterAll(async () => {
  await shortIdle.close();
  await longIdle.close();
  await server.close();
  await app.close();
});

const peerConnections = (p: Proxy) => metric(p, /^wren_peer_connections_total\{kind="mtls"\} (\d+)/m);
const idleCloses = (p: Proxy) => metric(p, /^wren_limit_exceeded_total\{direction="outbound",limit="mesh-idle-connection-timeout"\} (\d+)/m);

/** One GET through the client sidecar on a fresh client connection (the mesh connection is the pool's). */
function get(p: Proxy): Promise<number> {
  return new Promise((resolve, reject) => {
    const agent = new Agent({ keepAlive: false });
    const req = httpRequest({ host: '127.0.0.1', port: p.outboundPort, path: '/echo', headers: { host: 'web' }, agent }, (r) => {
      r.resume();
      r.on('end', () => resolve(r.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('an idle mesh connection is closed after idleConnectionTimeoutMs less 1 s, counted, and the next request opens a new one', async () => {
  expect(await get(shortIdle)).toBe(200);
  expect(await peerConnections(shortIdle)).toBe(1);
  expect(await get(shortIdle)).toBe(200);
  expect(await peerConnections(shortIdle)).toBe(1); // reused while within the timeout
  await sleep(1200); // 1500 - 1000 = 500 ms idle, with margin
  expect(await idleCloses(shortIdle)).toBe(1);
  expect(await get(shortIdle)).toBe(200);
  expect(await peerConnections(shortIdle)).toBe(2);
});

test('an idle mesh connection outlives a pause longer than the old fixed 4 s', async () => {
  expect(await get(longIdle)).toBe(200);
  expect(await peerConnections(longIdle)).toBe(1);
  await sleep(4600);
  expect(await get(longIdle)).toBe(200);
  expect(await peerConnections(longIdle)).toBe(1);
  expect(await idleCloses(longIdle)).toBe(0);
}, 15_000);
