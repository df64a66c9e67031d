import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { metric } from './helpers/admin-metric.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.tcpIdleTimeoutMs bounds an upgraded connection after its 101 as it bounds an opaque
 * TCP tunnel (Envoy applies the idle timeout to an upgraded connection as to any): a
 * WebSocket on which no byte moves either way for the window is closed, both sides, and
 * counted in wren_limit_exceeded_total{limit="tcp-idle-timeout"}; one exchanging a message
 * now and then stays open. Before, only the opaque tunnels had the bound: an upgrade's
 * splice (the outbound's HTTP/1.1 server, the inbound's extended CONNECT stream to the app,
 * the plaintext inbound's HTTP/1.1 server) had none, and a quiet WebSocket whose client had
 * gone without a FIN was held for ever on both sidecars.
 */
const pki = testPki();
const IDLE = { limits: { tcpIdleTimeoutMs: 400 } };
let ws: { port: number; close(): Promise<void> };
/** Outbound with the short bound, to an inbound with the default hour. */
let client: Proxy, server: Proxy;
/** Outbound with the default hour, to an inbound with the short bound (its mTLS and plaintext listeners). */
let client2: Proxy, server2: Proxy;

beforeAll(async () => {
  const wsHttp = createHttpServer();
  // An echo server that never pings: a quiet client means a quiet connection.
  new WebSocketServer({ server: wsHttp }).on('connection', (c) => c.on('message', (m) => c.send(String(m))));
  ws = await listenOnLoopback(wsHttp);
  server = await startProxy({ pki, serviceAccount: 'chat' });
  server2 = await startProxy({ pki, serviceAccount: 'chat', config: { ...IDLE, policy: { mtls: { mode: 'PERMISSIVE' } } }, inboundOriginalDst: () => ({ address: '127.0.0.1', port: ws.port }) });
  client = await startProxy({ pki, serviceAccount: 'client', config: IDLE, services: [meshService('chat', 80, [{ appPort: ws.port, proxy: server }])] });
  client2 = await startProxy({ pki, serviceAccount: 'client', services: [meshService('chat', 80, [{ appPort: ws.port, proxy: server2 }])] });
});

afterAll(async () => {
  await Promise.all([client.close(), client2.close()]);
  await Promise.all([server.close(), server2.close()]);
  await ws.close();
});

const limitCount = (p: Proxy, direction: string): Promise<number> =>
  metric(p, new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="tcp-idle-timeout"\\} (\\d+)`));

async function open(port: number): Promise<WebSocket> {
  const c = new WebSocket(`ws://127.0.0.1:${port}/`, { headers: { host: 'chat' } });
  c.on('error', () => undefined);
  await once(c, 'open');
  return c;
}

/** A message every `everyMs` for `forMs`, each echoed back: the WebSocket must carry them all. */
async function keepBusy(c: WebSocket, everyMs: number, forMs: number): Promise<void> {
  for (let t = 0; t < forMs; t += everyMs) {
    await new Promise((r) => setTimeout(r, everyMs));
    const echoed = once(c, 'message');
    c.send(`m${t}`);
    expect(String(((await echoed) as [Buffer])[0])).toBe(`m${t}`);
  }
}

/** How long after now the WebSocket closes (it must, within `withinMs`). */
async function closesWithin(c: WebSocket, withinMs: number): Promise<number> {
  const start = performance.now();
  const closed = once(c, 'close').then(() => performance.now() - start);
  const late = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still open after ${withinMs} ms`)), withinMs).unref());
  return Promise.race([closed, late]);
}

test.each([
  ["the outbound (its HTTP/1.1 server's upgrade, the app's side)", () => client.outboundPort, () => client, 'outbound'],
  ["the inbound (a peer's extended CONNECT stream to the app)", () => client2.outboundPort, () => server2, 'inbound'],
  ["the plaintext inbound (its HTTP/1.1 server's upgrade, PERMISSIVE)", () => server2.inboundPort, () => server2, 'inbound'],
] as const)('%s closes a WebSocket quiet for limits.tcpIdleTimeoutMs after its 101, never one exchanging messages, and counts it', async (_name, port, counting, direction) => {
  const before = await limitCount(counting(), direction);
  const c = await open(port());
  try {
    // Busy for 3 windows (a message every 150 ms, echoed): never cut.
    await keepBusy(c, 150, 1200);
    expect(c.readyState).toBe(WebSocket.OPEN);
    // Then quiet: cut after the window (400 ms), not long after.
    const after = await closesWithin(c, 5000);
    expect(after).toBeGreaterThanOrEqual(350);
    expect(await limitCount(counting(), direction)).toBe(before + 1);
  } finally {
    c.terminate();
  }
});

test('the default is an hour: a quiet WebSocket through sidecars that keep it is not cut', async () => {
  const other = await startProxy({ pki, serviceAccount: 'client', services: [meshService('chat', 80, [{ appPort: ws.port, proxy: server }])] });
  try {
    const c = await open(other.outboundPort);
    // No event marks "not cut": the wait, several of the short window, is the test.
    await new Promise((r) => setTimeout(r, 1000));
    expect(c.readyState).toBe(WebSocket.OPEN);
    const echoed = once(c, 'message');
    c.send('still there');
    expect(String(((await echoed) as [Buffer])[0])).toBe('still there');
    c.terminate();
  } finally {
    await other.close();
  }
});
