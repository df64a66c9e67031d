import { connect as netConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { fakeTcpApp, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.tcpIdleTimeoutMs (Envoy's TCP proxy idle_timeout, 1 h by default): an opaque TCP
 * tunnel on which no byte moves either way for that long is closed, on every splice (the
 * outbound's mesh tunnel, its egress passthrough, the inbound's tunnel to the app), and
 * counted in wren_limit_exceeded_total{limit="tcp-idle-timeout"}. A tunnel that carries a
 * byte now and then, in either direction, stays open past it. Before, opaque TCP had no
 * idle bound at all: a half-open connection whose peer never closed was held for ever.
 */
const pki = testPki();
// A server-first app (it greets): the sidecars wait protocol.detectTimeoutMs for a client's
// first bytes before they open the tunnel, and that wait is not idleness of a tunnel.
const DETECT = { protocol: { detectTimeoutMs: 100 } };
const IDLE = { ...DETECT, limits: { tcpIdleTimeoutMs: 400 } };
let app: FakeApp;
/** Outbound with the short bound, to an inbound with the default hour. */
let client: Proxy, server: Proxy;
/** Outbound with the default hour, to an inbound with the short bound. */
let client2: Proxy, server2: Proxy;
let nextDst: { address: string; port: number } | undefined;

beforeAll(async () => {
  app = await fakeTcpApp('hi\n'); // greets, then echoes
  server = await startProxy({ pki, serviceAccount: 'db', config: DETECT });
  server2 = await startProxy({ pki, serviceAccount: 'db', config: IDLE });
  client = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst, config: IDLE,
    services: [meshService('db', 6000, [{ appPort: app.port, proxy: server }], { clusterIPs: ['10.96.0.30'], protocol: 'opaque' })],
  });
  client2 = await startProxy({
    pki, serviceAccount: 'client', originalDst: () => nextDst, config: DETECT,
    services: [meshService('db', 6000, [{ appPort: app.port, proxy: server2 }], { clusterIPs: ['10.96.0.30'], protocol: 'opaque' }),
      meshService('db-default', 6000, [{ appPort: app.port, proxy: server }], { clusterIPs: ['10.96.0.31'], protocol: 'opaque' }),
    ],
  });
});

afterAll(async () => {
  await Promise.all([client.close(), client2.close()]);
  await Promise.all([server.close(), server2.close()]);
  await app.close();
});

const limitCount = (p: Proxy, direction: string): Promise<number> =>
  metric(p, new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="tcp-idle-timeout"\\} (\\d+)`)).catch(() => 0);

/** A connection through `p`'s outbound to `dst`, once the app's greeting came back through it. */
async function dial(p: Proxy, dst: { address: string; port: number }): Promise<Socket> {
  nextDst = dst;
  const s = netConnect({ host: '127.0.0.1', port: p.outboundPort });
  s.on('error', () => undefined);
  const [greeting] = (await once(s, 'data')) as [Buffer];
  expect(greeting.toString()).toBe('hi\n');
  return s;
}

/** Sends a byte every `everyMs` for `forMs`, each echoed back: the tunnel must carry them all. */
async function keepBusy(s: Socket, everyMs: number, forMs: number): Promise<void> {
  for (let t = 0; t < forMs; t += everyMs) {
    await new Promise((r) => setTimeout(r, everyMs));
    const echoed = once(s, 'data');
    s.write('x');
    expect(((await echoed) as [Buffer])[0].toString()).toBe('x');
  }
}

/** How long after now the socket closes (it must, within `withinMs`). */
async function closesWithin(s: Socket, withinMs: number): Promise<number> {
  const start = performance.now();
  const closed = once(s, 'close').then(() => performance.now() - start);
  const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still open after ${withinMs} ms`)), withinMs).unref());
  return Promise.race([closed, late]);
}

test.each([
  ['the outbound (mesh tunnel)', () => client, 'outbound', () => ({ address: '10.96.0.30', port: 6000 })],
  ['the outbound (passthrough out of the mesh)', () => client, 'outbound', () => ({ address: '127.0.0.1', port: app.port })],
  ['the inbound (its tunnel to the app)', () => client2, 'inbound', () => ({ address: '10.96.0.30', port: 6000 })],
] as const)('%s closes a tunnel quiet for limits.tcpIdleTimeoutMs, never one that carries bytes, and counts it', async (_name, proxy, direction, dst) => {
  const counting = direction === 'outbound' ? proxy() : server2;
  const before = await limitCount(counting, direction);
  const s = await dial(proxy(), dst());
  // Busy for 3 windows (a byte every 150 ms one way, echoed the other): never cut.
  await keepBusy(s, 150, 1200);
  expect(s.destroyed).toBe(false);
  // Then quiet: cut after the window (400 ms), not long after.
  const after = await closesWithin(s, 5000);
  expect(after).toBeGreaterThanOrEqual(350);
  expect(await limitCount(counting, direction)).toBe(before + 1);
});

test('the default is an hour: a quiet tunnel through sidecars that keep it is not cut', async () => {
  const s = await dial(client2, { address: '10.96.0.31', port: 6000 });
  await new Promise((r) => setTimeout(r, 600));
  expect(s.destroyed).toBe(false);
  const echoed = once(s, 'data');
  s.write('y');
  expect(((await echoed) as [Buffer])[0].toString()).toBe('y');
  s.destroy();
});
