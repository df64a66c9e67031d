import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { recordingTcpApp, type RecordingTcpApp } from '../helpers/recording-tcp-app.js';
import { scrape } from '../helpers/admin-metric.js';
import { until } from '../helpers/until.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * A client that sends a byte that could start a request line and then resets the
 * connection, while the sidecar is still detecting the protocol: detection ends at the
 * reset and calls it opaque, but the client is gone. The outbound used to hand the dead
 * connection to the TCP stack anyway (its 'close' had fired, so the stack's abort never
 * would), which dialled the endpoint, retries included, for nobody; the PERMISSIVE inbound
 * dialled the app. Now neither dials, and each counts the client that left as
 * wren_proxy_errors_total{code="client-cancelled"}, as for a request whose client left.
 */
const pki = testPki();
let app: RecordingTcpApp, client: Proxy, inbound: Proxy;

beforeAll(async () => {
  app = await recordingTcpApp('hi\n');
  // Unmeshed (no sidecar): the outbound's TCP connector dials the app itself.
  client = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => ({ address: '10.96.0.50', port: 7000 }),
    services: [meshService('raw', 7000, [{ appPort: app.port, proxy: null }], { clusterIPs: ['10.96.0.50'] })],
    config: { protocol: { detectTimeoutMs: 5000 } },
  });
  inbound = await startProxy({
    pki, serviceAccount: 'db', inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } }, protocol: { detectTimeoutMs: 5000 } },
  });
});

afterAll(async () => {
  await Promise.all([client.close(), inbound.close()]);
  await app.close();
});

const cancelled = async (p: Proxy, direction: string): Promise<number> =>
  (await scrape(p, 'wren_proxy_errors_total')).find((s) => s.labels['direction'] === direction && s.labels['code'] === 'client-cancelled')?.value ?? 0;

/** Sends `G` (detection waits for more) and resets the connection. */
async function resetDuringDetection(port: number): Promise<void> {
  const s = netConnect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await once(s, 'connect');
  s.write('G');
  await new Promise((r) => setTimeout(r, 50));
  s.resetAndDestroy();
  await once(s, 'close');
}

/** A client that stays: its connection reaches the app (the greeting comes back). */
async function live(port: number): Promise<void> {
  const s = netConnect(port, '127.0.0.1');
  s.on('error', () => undefined);
  s.write('\x00'); // not a request-line byte: opaque at once
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  expect(await until(() => got.startsWith('hi\n'), 5000)).toBe(true);
  s.destroy();
}

test.each([
  ['outbound (opaque TCP to an unmeshed endpoint)', () => client.outboundPort, () => client, 'outbound'],
  ['PERMISSIVE inbound (opaque plaintext)', () => inbound.inboundPort, () => inbound, 'inbound'],
] as const)('%s: a reset during detection dials nothing and is counted as client-cancelled', async (_name, port, proxy, direction) => {
  app.conns.length = 0;
  const before = await cancelled(proxy(), direction);
  await resetDuringDetection(port());
  expect(await until(async () => (await cancelled(proxy(), direction)) === before + 1, 5000)).toBe(true);
  // The next client's connection is the only one the app sees.
  await live(port());
  expect(app.conns).toHaveLength(1);
});
