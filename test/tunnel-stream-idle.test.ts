import { connect as netConnect, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.streamIdleTimeoutMs is a request's bound ("a request on which no byte moves either
 * way this long is cut", Envoy's stream_idle_timeout); an opaque TCP connection has its own,
 * limits.tcpIdleTimeoutMs (1 h, Envoy's tcp_proxy idle_timeout, test/tcp-idle-timeout.test.ts),
 * not the HTTP one (docs/resilience.md: "Not applied: request timeouts and the stream idle timeout"). Between sidecars
 * the connection is an HTTP/2 CONNECT stream on the mTLS session, and the server sidecar's
 * session guard armed the stream idle timeout on every stream, CONNECT included: an idle
 * database or Redis connection through the mesh was cut after 5 minutes of quiet, counted
 * as limit="stream-idle-timeout". The same for an upgrade (WebSocket) once the app's 101 is
 * through: after the 101 the tunnel has no request timeout, and limits.tcpIdleTimeoutMs, not the
 * stream idle timeout, bounds its quiet (docs/security.md; test/upgrade-idle-timeout.test.ts).
 */
const pki = testPki();
let app: FakeApp;
let server: Proxy;
let client: Proxy;
const IDLE_MS = 150;
let ws: { port: number; close(): Promise<void> };

beforeAll(async () => {
  app = await fakeTcpApp('hello\n');
  const wsHttp = createHttpServer();
  new WebSocketServer({ server: wsHttp }).on('connection', (c) => c.on('message', (m) => c.send(`echo:${String(m)}`)));
  ws = await listenOnLoopback(wsHttp);
  // The app's port is opaque to the server sidecar too, so the CONNECT is spliced at once (not sniffed first).
  server = await startProxy({ pki, serviceAccount: 'redis', config: { limits: { streamIdleTimeoutMs: IDLE_MS }, protocol: { opaquePorts: [app.port] } } });
  client = await startProxy({
    pki, serviceAccount: 'client',
    // 6379 is one of the default opaque (server-speaks-first) ports: the connection is tunnelled at once.
    services: [meshService('redis', 6379, [{ appPort: app.port, proxy: server }], { clusterIPs: ['10.96.0.30'] }), meshService('chat', 80, [{ appPort: ws.port, proxy: server }])],
    // The client's own HTTP limits are the server's too: neither end may cut the tunnels.
    config: { limits: { streamIdleTimeoutMs: IDLE_MS } },
    originalDst: (_s: Socket) => (nextDst === 'redis' ? { address: '10.96.0.30', port: 6379 } : undefined),
  });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close()]);
  await Promise.all([app.close(), ws.close()]);
});

let nextDst: 'redis' | 'chat' = 'redis';

async function streamIdleTimeouts(): Promise<number> {
  let n = 0;
  for (const p of [server, client]) {
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
    for (const m of text.matchAll(/^wren_limit_exceeded_total\{direction="\w+",limit="stream-idle-timeout"\} (\d+)$/gm)) n += Number(m[1]);
  }
  return n;
}

test('an opaque TCP connection quiet for longer than the server sidecar\'s streamIdleTimeoutMs still carries bytes', async () => {
  nextDst = 'redis';
  const s = netConnect(client.outboundPort, '127.0.0.1');
  let got = '';
  let closed = false;
  let waiting: { text: string; resolve: () => void; reject: (e: Error) => void } | null = null;
  const until = (text: string) => new Promise<void>((resolve, reject) => (got.includes(text) ? resolve() : (waiting = { text, resolve, reject })));
  s.on('data', (d) => {
    got += d;
    if (waiting && got.includes(waiting.text)) waiting.resolve();
  });
  s.on('close', () => {
    closed = true;
    waiting?.reject(new Error(`closed; got ${JSON.stringify(got)}`));
  });
  s.on('error', () => undefined);
  try {
    await until('hello\n');
    // Quiet for several times the stream idle timeout: no event marks "not cut", so the wait is the test.
    await new Promise((r) => setTimeout(r, IDLE_MS * 5));
    expect({ closed, timeouts: await streamIdleTimeouts() }).toEqual({ closed: false, timeouts: 0 });
    s.write('ping\n');
    await until('ping\n');
    expect(got).toBe('hello\nping\n');
  } finally {
    s.destroy();
  }
});

test("a WebSocket quiet for longer than the sidecars' streamIdleTimeoutMs after its 101 still carries messages", async () => {
  nextDst = 'chat';
  const before = await streamIdleTimeouts();
  const c = new WebSocket(`ws://127.0.0.1:${client.outboundPort}/`, { headers: { host: 'chat' } });
  const messages: string[] = [];
  let closed = false;
  c.on('message', (m) => messages.push(String(m)));
  c.on('close', () => (closed = true));
  c.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      c.once('open', () => resolve());
      c.once('error', reject);
    });
    await new Promise((r) => setTimeout(r, IDLE_MS * 5));
    expect({ closed, timeouts: (await streamIdleTimeouts()) - before }).toEqual({ closed: false, timeouts: 0 });
    const echo = new Promise<string>((resolve, reject) => {
      c.once('message', (m) => resolve(String(m)));
      c.once('close', () => reject(new Error('closed before the echo')));
    });
    c.send('still there');
    expect(await echo).toBe('echo:still there');
  } finally {
    c.terminate();
  }
});
