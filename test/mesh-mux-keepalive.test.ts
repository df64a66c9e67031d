import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import { parseService } from '../contract/parse.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.peerKeepalive on the mesh multiplexer (wren-mux/2's PING; an adversarial run, adv11,
 * found it applied to HTTP/2 peer sessions only): the caller's sidecar reaches its peer
 * through a TCP relay that can freeze the connections open through it (a frozen relay, a dead
 * NAT path: nothing passes, nothing is closed; new connections still pass). Before, every
 * later request joined the dead session and hung.
 */
const pki = testPki();
const KEEPALIVE = { intervalMs: 500, timeoutMs: 500 };
const TIMEOUTS = /wren_limit_exceeded_total\{direction="outbound",limit="peer-keepalive-timeout"\} (\d+)/;

/** A TCP relay to `target`; freeze() stops forwarding on the connections open now, new ones pass. */
async function relay(target: number): Promise<{ port: number; accepted: () => number; freeze: () => number; close: () => void }> {
  const conns = new Set<{ c: Socket; u: Socket; frozen: boolean }>();
  let accepted = 0;
  const server: NetServer = createNetServer((c) => {
    accepted++;
    const u = netConnect(target, '127.0.0.1');
    const e = { c, u, frozen: false };
    conns.add(e);
    c.on('data', (d) => void (e.frozen || u.write(d)));
    u.on('data', (d) => void (e.frozen || c.write(d)));
    const end = (): void => {
      conns.delete(e);
      c.destroy();
      u.destroy();
    };
    for (const s of [c, u]) {
      s.on('close', end);
      s.on('error', () => undefined);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    accepted: () => accepted,
    freeze: () => {
      for (const e of conns) e.frozen = true;
      return conns.size;
    },
    close: () => {
      for (const e of conns) end(e);
      server.close();
    },
  };
  function end(e: { c: Socket; u: Socket }): void {
    e.c.destroy();
    e.u.destroy();
  }
}

let app: Server;
let received = 0;
let server: Proxy;

beforeAll(async () => {
  // `/slow?ms=`: answers after that long.
  app = createHttpServer((req, res) => {
    received++;
    req.resume();
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.end(`ok ${req.url}`), ms);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  server = await startProxy({ pki, serviceAccount: 'web' });
});

afterAll(async () => {
  await server.close();
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
});

/** A caller's sidecar reaching `server` through a fresh relay (both mesh transports on the multiplexer). */
async function callerThroughRelay(): Promise<{ client: Proxy; relay: Awaited<ReturnType<typeof relay>> }> {
  const r = await relay(server.inboundPort);
  const svc = parseService(
    { name: 'web', namespace: 'default', ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: (app.address() as AddressInfo).port, proxyPort: r.port, identity: server.tls.spiffeId }] }] },
    'test',
  );
  const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'mux', meshHttp2: 'mux' }, limits: { peerKeepalive: KEEPALIVE } }, services: [svc] });
  return { client, relay: r };
}

function call(client: Proxy, method: string, path: string, timeoutMs = 10_000): Promise<{ status: number; body: string; error?: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method, path, headers: { host: 'web' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: Date.now() - t0 }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ status: 0, body: '', error: e.message, ms: Date.now() - t0 }));
    req.end();
  });
}

test('a frozen connection to the peer is closed by the keepalive, counted, and the next request goes on a new one', async () => {
  const { client, relay: r } = await callerThroughRelay();
  try {
    expect((await call(client, 'GET', '/1')).status).toBe(200);
    expect(r.accepted()).toBe(1);
    // Answered PINGs keep the connection: nothing closes it while the path works.
    await new Promise((res) => setTimeout(res, 3 * KEEPALIVE.intervalMs));
    expect(await metric(client, TIMEOUTS)).toBe(0);
    expect((await call(client, 'GET', '/2')).status).toBe(200);
    expect(r.accepted()).toBe(1);
    expect(r.freeze()).toBe(1);
    // Within an interval and a timeout (and the machine's slack).
    expect(await until(async () => (await metric(client, TIMEOUTS)) === 1, 10_000)).toBe(true);
    const next = await call(client, 'GET', '/3');
    expect(next.status).toBe(200);
    expect(next.body).toBe('ok /3');
    expect(r.accepted()).toBe(2);
  } finally {
    r.close();
    await client.close();
  }
}, 60_000);

test('a request in flight when the connection freezes fails as a lost connection within the keepalive, not at the stream idle timeout', async () => {
  const { client, relay: r } = await callerThroughRelay();
  try {
    expect((await call(client, 'GET', '/warm')).status).toBe(200);
    const before = received;
    // Not idempotent: never replayed, so its failure shows (a GET on a reused connection
    // that got no byte of its answer goes again on a new one, as after any lost connection).
    const inFlight = call(client, 'POST', '/slow?ms=4000');
    expect(await until(() => received > before, 10_000)).toBe(true);
    r.freeze();
    const res = await inFlight;
    expect(res.status).toBe(502);
    expect(res.ms).toBeLessThan(3500);
    expect(await metric(client, TIMEOUTS)).toBe(1);
    expect((await call(client, 'GET', '/after')).status).toBe(200);
  } finally {
    r.close();
    await client.close();
  }
}, 60_000);
