import { connect as netConnect, createServer, type Server, type AddressInfo, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Opaque TCP: the destination comes from the connection's original destination
 * (SO_ORIGINAL_DST after an iptables redirect; injected here — the netns test covers the
 * real redirect). Known ClusterIP:port → tunnelled over mTLS to the peer sidecar;
 * unknown → passed through untouched.
 */
const pki = testPki();
let tcpApp: FakeApp, server: Proxy, client: Proxy, external: Server, externalPort: number;
// Dials are sequential, so the next accepted connection's destination is simply `nextDst`.
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  tcpApp = await fakeTcpApp('hello from redis\n');
  external = createServer((s) => s.end('external says hi\n'));
  await new Promise<void>((r) => external.listen(0, '127.0.0.1', () => r()));
  externalPort = (external.address() as AddressInfo).port;
  server = await startProxy({ pki, serviceAccount: 'redis' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('redis', 6379, [{ appPort: tcpApp.port, proxy: server }], { clusterIPs: ['10.96.0.10'] }),
      meshService('db', 5000, [{ appPort: tcpApp.port, proxy: server }], { clusterIPs: ['10.96.0.11'], protocol: 'opaque' }),
      meshService('chatty', 7000, [{ appPort: tcpApp.port, proxy: server }], { clusterIPs: ['10.96.0.12'] }),
    ],
    originalDst: (_s: Socket) => nextDst,
    config: { protocol: { detectTimeoutMs: 300 } },
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await tcpApp.close();
  external.close();
});

/** Connects to the outbound port as if the app had dialled `dst` and iptables redirected it. */
function dial(dst: { address: string; port: number }, send?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    nextDst = dst;
    const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (send && got.includes('\n') && !got.includes(send)) s.write(send);
      if (send && got.includes(send)) s.end();
      if (!send) s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

test('server-speaks-first ports are tunnelled without waiting for the client (mTLS between sidecars)', async () => {
  const got = await dial({ address: '10.96.0.10', port: 6379 }, 'PING\n');
  expect(got).toBe('hello from redis\nPING\n');
});

test('ports declared opaque are tunnelled too, and detection times out to TCP on other ports', async () => {
  expect(await dial({ address: '10.96.0.11', port: 5000 }, 'x\n')).toBe('hello from redis\nx\n');
  expect(await dial({ address: '10.96.0.12', port: 7000 }, 'y\n')).toBe('hello from redis\ny\n');
  const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  expect(metrics).toMatch(/wren_protocol_detect_total\{direction="outbound",result="timeout"\} [1-9]/);
  expect(metrics).toMatch(/istio_tcp_connections_opened_total\{reporter="source",[^}]*destination_service="redis.default.svc.cluster.local",[^}]*\} [1-9]/);
  const inbound = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  expect(inbound).toMatch(/istio_tcp_connections_opened_total\{reporter="destination"/);
});

test('unknown destinations pass through as plain TCP and are counted', async () => {
  expect(await dial({ address: '127.0.0.1', port: externalPort })).toBe('external says hi\n');
  const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  expect(metrics).toMatch(/wren_passthrough_connections_total\{reason="unknown-destination"\} [1-9]/);
});
