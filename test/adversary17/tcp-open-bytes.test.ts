import { connect as netConnect } from 'node:net';
import { fakeTcpApp, type FakeApp } from '../helpers/fake-app.js';
import { scrape } from '../helpers/admin-metric.js';
import { obsPair, until, type ObsPair } from './obs-pair.js';

/**
 * istio_tcp_sent_bytes_total / istio_tcp_received_bytes_total of a connection still open.
 * Istio's stats filter reports a TCP connection's bytes periodically while it is open
 * (tcp_reporting_duration), so a long-lived connection (a database pool, a broker) shows its
 * traffic as it flows. Wren added a connection's bytes only when it closed: an open
 * connection carrying traffic showed no byte series at all, then its whole life in one step.
 */
let app: FakeApp, pair: ObsPair;

beforeAll(async () => {
  app = await fakeTcpApp('hello\n');
  pair = await obsPair([{ name: 'redis', port: 6379, appPort: app.port, extra: { clusterIPs: ['10.96.0.10'], protocol: 'opaque' } }]);
});

afterAll(async () => {
  await pair.close();
  await app.close();
});

const total = async (p: typeof pair.client, name: string) => (await scrape(p, name)).reduce((n, s) => n + s.value, 0);

test('the bytes of an open opaque TCP connection are in the byte counters before it closes, and counted once when it does', async () => {
  pair.nextDst = { address: '10.96.0.10', port: 6379 };
  const s = netConnect({ port: pair.client.outboundPort, host: '127.0.0.1' });
  let got = 0;
  s.on('data', (d) => (got += d.length));
  await new Promise((r) => s.once('data', r));
  s.write('x'.repeat(1000));
  // The app echoes: once the client has it all back, both sidecars have carried 1000 bytes each way.
  while (got < 1006) await new Promise((r) => setTimeout(r, 10));
  for (const p of [pair.client, pair.server]) {
    expect((await until(p, 'istio_tcp_received_bytes_total', (x) => x.length > 0)).map((x) => x.value)).toEqual([1000]);
    expect((await until(p, 'istio_tcp_sent_bytes_total', (x) => x.length > 0)).map((x) => x.value)).toEqual([1006]);
    expect(await total(p, 'istio_tcp_connections_closed_total')).toBe(0);
  }
  s.write('y'.repeat(10));
  while (got < 1016) await new Promise((r) => setTimeout(r, 10));
  s.end();
  await new Promise((r) => s.once('close', r));
  for (const p of [pair.client, pair.server]) {
    await until(p, 'istio_tcp_connections_closed_total', (x) => x.length > 0);
    expect(await total(p, 'istio_tcp_received_bytes_total')).toBe(1010);
    expect(await total(p, 'istio_tcp_sent_bytes_total')).toBe(1016);
    expect(await total(p, 'istio_tcp_connections_opened_total')).toBe(1);
    expect(await total(p, 'istio_tcp_connections_closed_total')).toBe(1);
  }
});
