import { connect as netConnect } from 'node:net';
import { closedPort } from '../helpers/closed-port.js';
import { obsPair, until, type ObsPair } from './obs-pair.js';

/**
 * An opaque TCP connection that cannot be opened. Istio's stats filter counts it all the
 * same: opened and closed at its end, with Envoy's response flags (UF for a refused
 * connect), at the sidecar that failed to connect. Wren counted a TCP connection only once
 * its upstream was connected: a TCP service whose every endpoint refuses showed nothing in
 * istio_tcp_* (only wren_proxy_errors_total said so).
 */
let pair: ObsPair;

beforeAll(async () => {
  const dead = await closedPort();
  const dead2 = await closedPort();
  pair = await obsPair([
    { name: 'redis', port: 6379, appPort: dead, extra: { clusterIPs: ['10.96.0.10'], protocol: 'opaque' } },
    { name: 'db', port: 5432, appPort: dead2, unmeshed: true, extra: { clusterIPs: ['10.96.0.11'], protocol: 'opaque' } },
  ]);
});

afterAll(async () => {
  await pair.close();
});

function connectTo(address: string, port: number): Promise<void> {
  pair.nextDst = { address, port };
  return new Promise<void>((resolve) => {
    const s = netConnect({ port: pair.client.outboundPort, host: '127.0.0.1' });
    s.on('error', () => undefined);
    s.on('close', () => resolve());
  });
}

const flagsOf = async (p: typeof pair.client, name: string, service: string) =>
  (await until(p, name, (x) => x.some((s) => s.labels.destination_service_name === service)))
    .filter((s) => s.labels.destination_service_name === service)
    .map((x) => [x.labels.response_flags, x.labels.request_protocol, x.value]);

test('the outbound cannot connect to an unmeshed endpoint: opened and closed with UF (reporter source)', async () => {
  await connectTo('10.96.0.11', 5432);
  for (const name of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total']) {
    expect(await flagsOf(pair.client, name, 'db')).toEqual([['UF', 'tcp', 1]]);
  }
});

test('the app\'s port refuses the inbound\'s connect: opened and closed with UF (reporter destination)', async () => {
  await connectTo('10.96.0.10', 6379);
  for (const name of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total']) {
    expect(await flagsOf(pair.server, name, 'redis')).toEqual([['UF', 'tcp', 1]]);
  }
});
