import { request as httpRequest, Agent, createServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';
import type { Proxy } from '../proxy/proxy.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * The drain and the app's outbound traffic (docs/operations.md, Shutdown): a real `wren
 * proxy` process, a real SIGTERM. The outbound keeps serving the app until nothing is in
 * flight or the grace period ends (Istio keeps Envoy's outbound up for
 * terminationDrainDuration; Linkerd lets in-flight requests complete), with listener
 * workers too; a tunnel still open at the deadline does not keep the process alive.
 * ProxyProcess.close() sends SIGTERM and SIGKILLs after 5 s: a close() under ~4.5 s is an
 * exit of the process's own. No minimum drain where the exit time is asserted (it is
 * test/drain-min-duration.test.ts's subject): the exit follows what is in flight.
 */
const pki = testPki();
let dir: string, other: FakeApp;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-drain-outbound-'));
  other = await fakeApp('other');
});
afterAll(async () => {
  await other.close();
  await rm(dir, { recursive: true, force: true });
});

const otherService = () => ({ services: [{ name: 'other', namespace: 'default', ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: other.port }] }] }] });

function get(port: number, host: string, path: string, agent: Agent | false = false, onConnection?: (h: string | undefined) => void): Promise<{ status: number; error?: string }> {
  return new Promise((resolve) => {
    httpRequest({ host: '127.0.0.1', port, path, headers: { host }, agent }, (res) => {
      onConnection?.(res.headers.connection);
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    })
      .on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, error: e.code ?? e.message }))
      .end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM now; resolves with the ms until the process exited. */
async function sigterm(p: ProxyProcess): Promise<number> {
  const t0 = Date.now();
  await p.close();
  return Date.now() - t0;
}

test.each([1, 2])('concurrency %i, no inbound request in flight: the outbound requests in flight at SIGTERM complete, new ones are served, and the process exits when they are done (not at the 10 s deadline, not held by an idle keep-alive connection)', async (concurrency) => {
  const p = await startProxyProcess(pki, dir, `web${concurrency}`, { concurrency, shutdown: { gracePeriodMs: 10_000, minDrainMs: 0 }, mesh: otherService() });
  const keepAlive = new Agent({ keepAlive: true });
  try {
    // An idle keep-alive connection of the app's: it must not hold the drain.
    expect(await get(p.outboundPort, 'other', '/name', keepAlive)).toEqual({ status: 200 });
    const inflight = Array.from({ length: 8 }, () => get(p.outboundPort, 'other', '/slow?ms=1000'));
    // One more on a second keep-alive connection: answered, with `connection: close` (the drain asks the app to reconnect).
    let connection: string | undefined;
    const onKeepAlive = get(p.outboundPort, 'other', '/slow?ms=1000', keepAlive, (h) => (connection = h));
    await sleep(200);
    const exited = sigterm(p);
    await sleep(300);
    // The outbound keeps accepting during the drain (the app may call out while it shuts down).
    const during = await Promise.all(Array.from({ length: 4 }, () => get(p.outboundPort, 'other', '/name')));
    expect(await Promise.all(inflight)).toEqual(Array(8).fill({ status: 200 }));
    expect(during).toEqual(Array(4).fill({ status: 200 }));
    expect(await onKeepAlive).toEqual({ status: 200 });
    expect(connection).toBe('close');
    const ms = await exited;
    expect(ms).toBeGreaterThanOrEqual(700);
    expect(ms).toBeLessThan(4000);
  } finally {
    keepAlive.destroy();
    await p.close();
  }
}, 20_000);

test('concurrency 2, one inbound request keeping the drain open: every outbound request in flight at SIGTERM completes, on both workers', async () => {
  const web = await fakeApp('web');
  const p = await startProxyProcess(pki, dir, 'webw', { concurrency: 2, shutdown: { gracePeriodMs: 6000, minDrainMs: 0 }, mesh: otherService() });
  const asProxy = { inboundPort: p.inboundPort, tls: { spiffeId: p.spiffeId } } as unknown as Proxy;
  const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: web.port, proxy: asProxy }])] });
  try {
    const inbound = get(client.outboundPort, 'web', '/slow?ms=3000');
    await sleep(200);
    // Fresh connections: the kernel spreads them over both workers (SO_REUSEPORT).
    const outs = Array.from({ length: 16 }, () => get(p.outboundPort, 'other', '/slow?ms=1500'));
    await sleep(300);
    const exited = sigterm(p);
    expect(await Promise.all(outs)).toEqual(Array(16).fill({ status: 200 }));
    expect(await inbound).toEqual({ status: 200 });
    expect(await exited).toBeLessThan(4500);
  } finally {
    await p.close();
    await client.close();
    await web.close();
  }
}, 20_000);

test('concurrency 1: a mesh WebSocket still open at the deadline is closed on both sides and the process exits then (not 30 s later)', async () => {
  // The app keeps its side open (a WebSocket server that only echoes): only the sidecar can end the tunnel.
  const app = createServer((_q, r) => r.end('plain'));
  const upgraded: Socket[] = [];
  app.on('upgrade', (_req, sock: Socket) => {
    upgraded.push(sock);
    sock.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const p = await startProxyProcess(pki, dir, 'wsweb', { shutdown: { gracePeriodMs: 1000 } });
  const asProxy = { inboundPort: p.inboundPort, tls: { spiffeId: p.spiffeId } } as unknown as Proxy;
  const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('ws', 80, [{ appPort, proxy: asProxy }], { protocol: 'http1' })] });
  const s = netConnect(client.outboundPort, '127.0.0.1');
  try {
    let buf = '';
    s.on('data', (d) => (buf += d));
    s.on('error', () => undefined);
    s.write('GET /ws HTTP/1.1\r\nhost: ws\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: x\r\nsec-websocket-version: 13\r\n\r\n');
    for (let i = 0; i < 100 && !buf.includes('\r\n\r\n'); i++) await sleep(20);
    expect(buf).toMatch(/^HTTP\/1\.1 101/);
    const exited = sigterm(p);
    await sleep(500);
    buf = '';
    s.write('during-grace');
    for (let i = 0; i < 50 && buf !== 'during-grace'; i++) await sleep(10);
    expect(buf).toBe('during-grace');
    // Still running 4 s after SIGTERM (1 s grace): -1.
    const ms = await Promise.race([exited, sleep(4000).then(() => -1)]);
    expect(ms).toBeGreaterThanOrEqual(900);
  } finally {
    s.destroy();
    await p.close();
    await client.close();
    app.closeAllConnections();
    for (const u of upgraded) u.destroy();
    await new Promise((r) => app.close(r));
  }
}, 20_000);

test('concurrency 1: an outbound opaque tunnel still open at the deadline is closed on both sides and the process exits then (not 30 s later)', async () => {
  // The app's TCP peer keeps its side open (an echo server): only the sidecar can end the tunnel.
  const held: Socket[] = [];
  const echo = createNetServer((c) => {
    held.push(c);
    c.on('data', (d) => c.write(d));
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as AddressInfo).port;
  // An explicit upstream (no redirect in a test): its port, found free first.
  const localPort = await closedPort();
  const p = await startProxyProcess(pki, dir, 'tcpweb', {
    shutdown: { gracePeriodMs: 1000 },
    upstreams: [{ service: 'echo', port: 7000, localPort, localAddress: '127.0.0.1', protocol: 'opaque' }],
    mesh: { services: [{ name: 'echo', namespace: 'default', ports: [{ port: 7000, protocol: 'opaque', endpoints: [{ address: '127.0.0.1', port: echoPort }] }] }] },
  });
  const s = netConnect(localPort, '127.0.0.1');
  try {
    let buf = '';
    s.on('data', (d) => (buf += d));
    s.on('error', () => undefined);
    s.write('hello');
    for (let i = 0; i < 100 && buf !== 'hello'; i++) await sleep(20);
    expect(buf).toBe('hello');
    const exited = sigterm(p);
    // Still running 4 s after SIGTERM (1 s grace): -1.
    const ms = await Promise.race([exited, sleep(4000).then(() => -1)]);
    // The tunnel in flight held the drain to the deadline.
    expect(ms).toBeGreaterThanOrEqual(900);
  } finally {
    s.destroy();
    await p.close();
    for (const c of held) c.destroy();
    await new Promise((r) => echo.close(r));
  }
}, 20_000);
