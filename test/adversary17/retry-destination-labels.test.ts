import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { fakeApp, fakeTcpApp, type FakeApp } from '../helpers/fake-app.js';
import { closedPort } from '../helpers/closed-port.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { testPki } from '../helpers/pki.js';
import type { Proxy } from '../../proxy/proxy.js';
import { scrape } from '../helpers/admin-metric.js';

/**
 * After a retry onto another endpoint, the request's destination_* labels (reporter
 * "source") must name the endpoint that answered, as Istio's do (the upstream host of the
 * final attempt). Wren labelled it with the first attempt's endpoint (the request keeps it;
 * a retry runs on a copy): a dead pod whose connects fail was credited with every request
 * its healthy neighbour served, and the healthy pod showed none. Same for opaque TCP after a
 * retried connect.
 */
let web: FakeApp, tcp: FakeApp, client: Proxy;
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  web = await fakeApp('web');
  tcp = await fakeTcpApp('hi\n');
  const pki = testPki();
  const dead = await closedPort();
  const dead2 = await closedPort();
  client = await startProxy({
    pki, serviceAccount: 'client',
    config: { identity: { namespace: 'default', serviceAccount: 'client', trustDomain: pki.trustDomain, workload: { name: 'client-v1', app: 'client', version: 'v1' } } },
    services: [
      meshService('two', 80, [{ appPort: dead, proxy: null, workload: { name: 'dead' } }, { appPort: web.port, proxy: null, workload: { name: 'alive' } }]),
      meshService('db', 5432, [{ appPort: dead2, proxy: null, workload: { name: 'dead' } }, { appPort: tcp.port, proxy: null, workload: { name: 'alive' } }], { clusterIPs: ['10.96.0.20'], protocol: 'opaque' }),
    ],
    originalDst: () => nextDst,
  });
});

afterAll(async () => {
  await client.close();
  await web.close();
  await tcp.close();
});

test('HTTP: the requests a retry moved to the live endpoint are labelled with its workload, never the dead one', async () => {
  for (let i = 0; i < 6; i++) {
    await new Promise<void>((resolve, reject) => {
      const r = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/echo', headers: { host: 'two.default.svc.cluster.local' } }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      });
      r.on('error', reject);
      r.end();
    });
  }
  // Every response came from the live endpoint (the dead one refuses connections): no series may name the dead one.
  const s = (await scrape(client, 'istio_requests_total')).filter((x) => x.labels.destination_service_name === 'two' && x.labels.response_code === '200');
  expect(s.reduce((n, x) => n + x.value, 0)).toBeGreaterThan(0);
  expect(s.filter((x) => x.labels.destination_workload !== 'alive')).toEqual([]);
});

test('opaque TCP: a connection whose connect was retried onto the live endpoint is labelled with its workload', async () => {
  nextDst = { address: '10.96.0.20', port: 5432 };
  for (let i = 0; i < 4; i++) {
    await new Promise<void>((resolve, reject) => {
      const s = netConnect({ port: client.outboundPort, host: '127.0.0.1' });
      s.once('data', () => s.end());
      s.on('close', () => resolve());
      s.on('error', reject);
    });
  }
  let s: Awaited<ReturnType<typeof scrape>> = [];
  for (let i = 0; i < 100 && s.reduce((n, x) => n + x.value, 0) < 4; i++) {
    s = (await scrape(client, 'istio_tcp_connections_closed_total')).filter((x) => x.labels.destination_service_name === 'db');
    await new Promise((r) => setTimeout(r, 20));
  }
  // Only a connected connection is counted, and only the live endpoint accepts one.
  expect(s.filter((x) => x.labels.destination_workload !== 'alive')).toEqual([]);
});
