import { connect as netConnect } from 'node:net';
import { fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { closedPort } from './helpers/closed-port.js';
import { LogCapture } from './helpers/log-capture.js';
import { startProxy } from './helpers/proxy.js';
import { testPki } from './helpers/pki.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Opaque TCP leaving the mesh, with access logs on (docs/observability.md, Access logs:
 * "one per opaque TCP connection"). Envoy's TCP proxy on Istio's PassthroughCluster (and a
 * ServiceEntry's cluster) writes a line per connection; Wren counted these connections in
 * istio_tcp_* but wrote no line for them: only a refused one (BlackHoleCluster) was logged.
 */
const pki = testPki();
let app: FakeApp, open: Proxy, strict: Proxy;
const openLog = new LogCapture();
const strictLog = new LogCapture();
let nextDst: { address: string; port: number } | undefined;
const on = { telemetry: { accessLog: { enabled: true } }, protocol: { detectTimeoutMs: 300 } };

beforeAll(async () => {
  app = await fakeTcpApp('outside says hi\n'); // greets, then echoes what it gets
  open = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst, accessLog: openLog, config: on });
  const externalServices = [{ name: 'default/db', hosts: ['db.example.com'], addresses: ['127.0.0.0/8'], ports: [{ number: app.port, protocol: 'TCP' }] }];
  strict = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst, accessLog: strictLog, config: { ...on, egress: { mode: 'REGISTRY_ONLY', externalServices } } });
});

afterAll(async () => {
  await open.close();
  await strict.close();
  await app.close();
});

/** Connects through `p` to 127.0.0.1:port, writes `send` once the app has spoken (or gives up after 1 s), resolves at close. */
function dial(p: Proxy, port: number, send: string): Promise<number> {
  nextDst = { address: '127.0.0.1', port };
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: p.outboundPort });
    s.on('error', () => undefined);
    s.once('connect', () => resolve(s.localPort ?? 0));
    s.once('data', () => s.end(send));
    const t = setTimeout(() => s.destroy(), 1000);
    s.on('close', () => clearTimeout(t));
  });
}

test('ALLOW_ANY: a passed-through connection gets its line, PassthroughCluster, with its bytes both ways', async () => {
  const port = await dial(open, app.port, 'abcd');
  const line = await openLog.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`);
  expect(line).toMatchObject({
    response_code: 0, response_flags: '-', method: null, upstream_cluster: 'PassthroughCluster', upstream_host: `127.0.0.1:${app.port}`,
    downstream_local_address: `127.0.0.1:${app.port}`, bytes_received: 4, bytes_sent: 'outside says hi\nabcd'.length, upstream_request_attempt_count: 1,
  });
  expect(line['upstream_local_address']).toMatch(/^127\.0\.0\.1:\d+$/);
});

test('ALLOW_ANY: a destination that refuses the connect is logged with UF', async () => {
  const dead = await closedPort();
  const port = await dial(open, dead, '');
  expect(await openLog.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`)).toMatchObject({
    response_flags: 'UF', upstream_cluster: 'PassthroughCluster', upstream_host: `127.0.0.1:${dead}`, bytes_received: 0, bytes_sent: 0,
  });
});

test('REGISTRY_ONLY: a connection an ExternalService lets out is logged under its cluster, outbound|PORT||HOST', async () => {
  const port = await dial(strict, app.port, 'xy');
  expect(await strictLog.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`)).toMatchObject({
    response_flags: '-', upstream_cluster: `outbound|${app.port}||db.example.com`, bytes_received: 2, bytes_sent: 'outside says hi\nxy'.length,
  });
});
