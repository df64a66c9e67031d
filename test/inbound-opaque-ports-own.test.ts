import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * protocol.inboundOpaquePorts (what the pod annotation wren.io/opaque-ports sets): the
 * inbound splices a peer's connection to such a port at once, where a port outside its
 * list is sniffed for HTTP and a server-first app's greeting waits for the detection
 * timeout. The pod's own list is the inbound's only: its outbound keeps protocol.opaquePorts.
 */
const pki = testPki();
const DETECT_MS = 2000;
let app: FakeApp;
let own: Proxy, plain: Proxy, client: Proxy;
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  app = await fakeTcpApp('hi\n'); // speaks first
  own = await startProxy({ pki, serviceAccount: 'db', config: { protocol: { detectTimeoutMs: DETECT_MS, inboundOpaquePorts: [app.port] } } });
  plain = await startProxy({ pki, serviceAccount: 'db', config: { protocol: { detectTimeoutMs: DETECT_MS } } });
  client = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst,
    services: [
      // Declared opaque on the caller's side: its outbound never waits; only the server's inbound decides.
      meshService('own', 7000, [{ appPort: app.port, proxy: own }], { clusterIPs: ['10.96.0.40'], protocol: 'opaque' }),
      meshService('plain', 7000, [{ appPort: app.port, proxy: plain }], { clusterIPs: ['10.96.0.41'], protocol: 'opaque' }),
    ],
  });
});

afterAll(async () => {
  await client.close();
  await Promise.all([own.close(), plain.close()]);
  await app.close();
});

/** Milliseconds from connecting through the client's outbound to the app's greeting. */
async function greetingAfter(dst: { address: string; port: number }): Promise<number> {
  nextDst = dst;
  const t0 = performance.now();
  const s = netConnect({ host: '127.0.0.1', port: client.outboundPort });
  s.on('error', () => undefined);
  const [d] = (await once(s, 'data')) as [Buffer];
  const ms = performance.now() - t0;
  s.destroy();
  expect(d.toString()).toBe('hi\n');
  return ms;
}

test('a port in the inbound\'s own list is spliced at once; the same port elsewhere is sniffed for the detection timeout', async () => {
  expect(await greetingAfter({ address: '10.96.0.40', port: 7000 })).toBeLessThan(DETECT_MS / 2);
  expect(await greetingAfter({ address: '10.96.0.41', port: 7000 })).toBeGreaterThanOrEqual(DETECT_MS - 50);
});
