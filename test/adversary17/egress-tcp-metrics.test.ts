import { connect as netConnect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { fakeApp } from '../helpers/fake-app.js';
import { fakeTcpApp, type FakeApp } from '../helpers/fake-app.js';
import { closedPort } from '../helpers/closed-port.js';
import { startProxy } from '../helpers/proxy.js';
import { testPki } from '../helpers/pki.js';
import type { Proxy } from '../../proxy/proxy.js';
import { scrape } from '../helpers/admin-metric.js';
import { until } from './obs-pair.js';

/**
 * Opaque TCP leaving the mesh. Istio's stats filter counts it in istio_tcp_* under the
 * clusters it goes through: destination_service_name="PassthroughCluster" when let
 * through, "BlackHoleCluster" when refused in REGISTRY_ONLY (Kiali draws both). Wren
 * counted passthrough connections in wren_passthrough_connections_total only: their
 * bytes, and refused connections, were in no istio_tcp_* series.
 */
const pki = testPki();
let app: FakeApp, web: FakeApp, open: Proxy, strict: Proxy;
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  app = await fakeTcpApp('outside says hi\n');
  web = await fakeApp('outside');
  open = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst, config: { protocol: { detectTimeoutMs: 300 } } });
  const externalServices = [{ name: 'default/plain', hosts: ['plain.example.com'], ports: [{ number: web.port, protocol: 'HTTP' }] }];
  strict = await startProxy({ pki, serviceAccount: 'client', originalDst: () => nextDst, config: { egress: { mode: 'REGISTRY_ONLY', externalServices }, protocol: { detectTimeoutMs: 300 } } });
});

afterAll(async () => {
  await open.close();
  await strict.close();
  await app.close();
  await web.close();
});

function dial(p: Proxy, port: number, send = ''): Promise<void> {
  nextDst = { address: '127.0.0.1', port };
  return new Promise<void>((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: p.outboundPort });
    s.on('error', () => undefined);
    s.once('data', () => s.end(send));
    s.on('close', () => resolve());
    if (send === '') setTimeout(() => s.destroy(), 1000);
  });
}

const of = async (p: Proxy, name: string, cluster: string) =>
  (await until(p, name, (x) => x.some((s) => s.labels.destination_service_name === cluster))).filter((s) => s.labels.destination_service_name === cluster).map((s) => [s.labels.response_flags, s.value]);

test('ALLOW_ANY: a passed-through connection and its bytes are in istio_tcp_* under PassthroughCluster; a refused connect is UF', async () => {
  await dial(open, app.port, 'abcd');
  expect(await of(open, 'istio_tcp_connections_opened_total', 'PassthroughCluster')).toEqual([['-', 1]]);
  expect(await of(open, 'istio_tcp_connections_closed_total', 'PassthroughCluster')).toEqual([['-', 1]]);
  expect(await of(open, 'istio_tcp_received_bytes_total', 'PassthroughCluster')).toEqual([['-', 4]]);
  expect(await of(open, 'istio_tcp_sent_bytes_total', 'PassthroughCluster')).toEqual([['-', 'outside says hi\nabcd'.length]]);
  await dial(open, await closedPort());
  expect((await of(open, 'istio_tcp_connections_closed_total', 'PassthroughCluster')).sort()).toEqual([['-', 1], ['UF', 1]]);
  const labels = (await scrape(open, 'istio_tcp_connections_opened_total'))[0].labels;
  expect([labels.destination_service, labels.destination_workload, labels.reporter]).toEqual(['unknown', 'unknown', 'source']);
});

test('REGISTRY_ONLY: a refused connection is in istio_tcp_* under BlackHoleCluster, flag NR', async () => {
  await dial(strict, app.port);
  expect(await of(strict, 'istio_tcp_connections_opened_total', 'BlackHoleCluster')).toEqual([['NR', 1]]);
  expect(await of(strict, 'istio_tcp_connections_closed_total', 'BlackHoleCluster')).toEqual([['NR', 1]]);
});

/**
 * The same for HTTP leaving the mesh (REGISTRY_ONLY looks into it): a declared host's
 * requests under its ExternalService host (Istio's ServiceEntry labels; test/egress.test.ts),
 * a refused one (502 egress-refused) under BlackHoleCluster, where both were all `unknown`
 * like a request that matched no route.
 */
test('REGISTRY_ONLY HTTP: a declared host is labelled with its ExternalService host (as Istio a ServiceEntry\'s), a refused one BlackHoleCluster', async () => {
  const get = (host: string) => {
    nextDst = { address: '127.0.0.1', port: web.port };
    return new Promise<number>((resolve, reject) => {
      const q = httpRequest({ host: '127.0.0.1', port: strict.outboundPort, path: '/name', headers: { host }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      q.on('error', reject);
      q.end();
    });
  };
  expect(await get('plain.example.com')).toBe(200);
  expect(await get('evil.example.org')).toBe(502);
  const s = await until(strict, 'istio_requests_total', (x) => x.length >= 2);
  expect(s.map((x) => [x.labels.destination_service_name, x.labels.destination_service, x.labels.response_code, x.labels.response_flags]).sort()).toEqual([
    ['BlackHoleCluster', 'unknown', '502', 'NR'],
    ['plain.example.com', 'plain.example.com', '200', '-'],
  ]);
});
