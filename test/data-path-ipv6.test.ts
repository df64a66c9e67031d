import { request } from 'node:http';
import type { Socket } from 'node:net';
import { parseService } from '../contract/parse.js';
import type { Proxy } from '../proxy/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';

/**
 * Both address families through two real sidecars on loopback: each listener also binds
 * ::1 (listeners.*.ipv6Address), the app dials the client sidecar over IPv6 as iptables
 * would redirect it to [::1]:15001, the destination is an IPv6 ClusterIP (injected
 * original destination; test/iptables-netns.test.ts and test/pod-netns-e2e.test.ts do
 * the real redirect), and the peer sidecar's endpoint is an IPv6 address, so the mTLS
 * hop between the sidecars runs over IPv6 too.
 */
const pki = testPki();
const V6 = { address: '127.0.0.1', ipv6Address: '::1', port: 0 };
const listeners = { outbound: V6, inbound: V6, admin: V6 };
let app: FakeApp, server: Proxy, client: Proxy;
const dsts: { address: string; port: number }[] = [];

beforeAll(async () => {
  app = await fakeApp('web6');
  server = await startProxy({ pki, serviceAccount: 'web', config: { listeners } });
  const web = parseService(
    {
      name: 'web',
      namespace: 'default',
      // Spelled as a manifest might: compared canonicalised with what SO_ORIGINAL_DST reports.
      clusterIPs: ['FD00:96:0:0::000A'],
      ports: [{ port: 80, endpoints: [{ address: '0:0:0:0:0:0:0:1', port: app.port, proxyPort: server.inboundPort, identity: server.tls.spiffeId }] }],
    },
    'test',
  );
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [web],
    config: { listeners },
    originalDst: (s: Socket) => {
      // Only connections that arrived over IPv6 get an (IPv6) original destination.
      if (s.localAddress !== '::1') return undefined;
      dsts.push({ address: 'fd00:96::a', port: 80 });
      return dsts.at(-1);
    },
  });
});

afterAll(async () => {
  await client?.close();
  await server?.close();
  await app?.close();
});

const get = (host: string, port: number, path: string, headers: Record<string, string> = {}) =>
  new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = request({ host, port, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });

test('an app on IPv6 reaches an IPv6 ClusterIP: both sidecars, mTLS between them over IPv6, the caller identity delivered', async () => {
  // What the app dialled was [fd00:96::a]:80; Host says so, and routing uses the original destination.
  const r = await get('::1', client.outboundPort, '/echo', { host: '[fd00:96::a]' });
  expect([r.status, r.headers['wren-proxy-error']]).toEqual([200, undefined]);
  const seen = JSON.parse(r.body) as { name: string; headers: Record<string, string> };
  expect(seen.name).toBe('web6');
  expect(seen.headers['x-forwarded-client-cert']).toBe(`By=${server.tls.spiffeId};URI=${client.tls.spiffeId}`);
  expect(dsts).toHaveLength(1);
});

test('the inbound and admin listeners answer on ::1 too, on the same ports as on 127.0.0.1', async () => {
  for (const p of [client, server]) {
    expect((await get('::1', p.adminPort, '/ready')).status).toBe(200);
    expect((await get('127.0.0.1', p.adminPort, '/ready')).status).toBe(200);
  }
  // A plaintext request on the STRICT inbound port over IPv6 is refused by the inbound listener, not by the kernel.
  await expect(get('::1', server.inboundPort, '/echo')).rejects.toMatchObject({ code: expect.stringMatching(/ECONNRESET|EPIPE/) });
});
