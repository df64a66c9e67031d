import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import type { Service } from '../contract/model.js';

/**
 * Endpoints that leave every cluster have their pooled connections drained (Envoy drains a
 * removed host's connection pools): idle ones close at once, busy ones after their exchange,
 * and the connection slots they held come back (proxy/outbound/endpoint-drain.ts).
 */
const pki = testPki();
const closers: (() => Promise<void>)[] = [];

afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

interface App {
  readonly port: number;
  /** Connections open to it now. */
  open: number;
}

/** An HTTP/1.1 app that keeps idle connections a minute (node sends `Keep-Alive: timeout=60`), answering after ?ms=. */
async function app(name: string): Promise<App> {
  const server = createServer((req, res) => {
    req.resume();
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.writeHead(200, { 'x-app': name }).end('ok'), ms);
  });
  server.keepAliveTimeout = 60_000;
  const a = { port: 0, open: 0 };
  server.on('connection', (s: Socket) => {
    a.open++;
    s.on('close', () => a.open--);
  });
  const l = await listenOnLoopback(server);
  a.port = l.port;
  closers.push(async () => {
    server.closeAllConnections();
    await l.close();
  });
  return a;
}

/** A TCP relay in front of a sidecar's inbound port, counting the connections through it. */
async function relay(to: Proxy): Promise<{ port: number; open: number; opened: number }> {
  const r = { port: 0, open: 0, opened: 0 };
  const held = new Set<Socket>();
  const server = createNetServer((s) => {
    r.open++;
    r.opened++;
    const u = netConnect(to.inboundPort, '127.0.0.1');
    held.add(s).add(u);
    s.on('close', () => r.open--);
    for (const [a, b] of [[s, u], [u, s]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => held.delete(a));
      a.pipe(b);
    }
  });
  const l = await listenOnLoopback(server);
  r.port = l.port;
  closers.push(async () => {
    for (const s of held) s.destroy();
    await l.close();
  });
  return r;
}

function call(client: Proxy, svc: string, path = '/'): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: `${svc}.default.svc.cluster.local` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Waits (up to 2 s) for `cond`; says whether it came true. Far below the apps' 60 s keep-alive and the mesh's idle hour. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

const apply = (p: Proxy, services: Service[]) => p.applySnapshot({ version: String(Math.random()), source: 'test', services });

async function connectionsActive(p: Proxy, cluster: string): Promise<number> {
  const view = (await (await fetch(`http://127.0.0.1:${p.adminPort}/clusters`)).json()) as Record<string, { limits: { connections: { active: number } } }>;
  return view[cluster].limits.connections.active;
}

test('unmeshed HTTP/1.1 endpoints replaced one by one (maxConnections 2): the idle keep-alive connection to each removed app closes at once and gives its slot back', async () => {
  const apps = [await app('a0'), await app('a1'), await app('a2')];
  const policy = { circuitBreaker: { maxConnections: 2 }, outlierDetection: { enabled: false } };
  const svc = (a: App) => meshService('w', 80, [{ appPort: a.port, proxy: null }], { policy });
  const client = await startProxy({ pki, serviceAccount: 'client', services: [svc(apps[0])] });
  closers.push(() => client.close());
  for (let i = 0; i < apps.length; i++) {
    if (i > 0) apply(client, [svc(apps[i])]);
    expect((await call(client, 'w')).headers['x-app']).toBe(`a${i}`);
    if (i > 0) expect(await until(() => apps[i - 1].open === 0)).toBe(true);
  }
  expect(await connectionsActive(client, 'w.default:80')).toBe(1);
  // The current endpoint gets a second connection: no slot is held by a removed app's.
  const both = await Promise.all([call(client, 'w', '/?ms=200'), call(client, 'w', '/?ms=200')]);
  expect(both.map((r) => r.status)).toEqual([200, 200]);
  expect(apps[2].open).toBe(2);
});

test('a request in flight to a removed unmeshed endpoint finishes, and its connection closes then', async () => {
  const [a, b] = [await app('a'), await app('b')];
  const svc = (x: App) => meshService('v', 80, [{ appPort: x.port, proxy: null }], { policy: { outlierDetection: { enabled: false } } });
  const client = await startProxy({ pki, serviceAccount: 'client', services: [svc(a)] });
  closers.push(() => client.close());
  const slow = call(client, 'v', '/?ms=300');
  expect(await until(() => a.open === 1)).toBe(true);
  apply(client, [svc(b)]);
  await new Promise((r) => setTimeout(r, 100));
  expect(a.open).toBe(1); // busy: not cut
  const r = await slow;
  expect(r.status).toBe(200);
  expect(r.headers['x-app']).toBe('a');
  expect(await until(() => a.open === 0)).toBe(true);
});

// Every transport to a peer sidecar: the multiplexer's session (mux), the mesh HTTP/1.1
// pool's mTLS connections (h1) and the HTTP/2 session (h2, PeerPool).
test.each(['mux', 'h1', 'h2'])('meshHttp1 %s: the connection to a peer sidecar that is no longer any cluster\'s endpoint closes; one another cluster still uses stays', async (mode) => {
  const [x, y] = [await app('x'), await app('y')];
  const [s1, s2] = [await startProxy({ pki, serviceAccount: 'backend' }), await startProxy({ pki, serviceAccount: 'backend' })];
  closers.push(() => s1.close(), () => s2.close());
  const r1 = await relay(s1);
  const peer1 = { inboundPort: r1.port, tls: s1.tls } as unknown as Proxy;
  const policy = { outlierDetection: { enabled: false } };
  const one = meshService('one', 80, [{ appPort: x.port, proxy: peer1 }], { policy });
  const two = meshService('two', 80, [{ appPort: y.port, proxy: peer1 }], { policy });
  const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: mode } }, services: [one, two] });
  closers.push(() => client.close());
  expect((await call(client, 'one')).headers['x-app']).toBe('x');
  expect((await call(client, 'two')).headers['x-app']).toBe('y');
  expect(r1.open).toBe(1);
  // `one` moves to the other sidecar; `two` still has its endpoint behind s1: the connection stays.
  apply(client, [meshService('one', 80, [{ appPort: x.port, proxy: s2 }], { policy }), two]);
  await new Promise((r) => setTimeout(r, 200));
  expect(r1.open).toBe(1);
  expect((await call(client, 'two')).headers['x-app']).toBe('y');
  expect(r1.opened).toBe(1);
  // Now no cluster has an endpoint behind s1.
  apply(client, [meshService('one', 80, [{ appPort: x.port, proxy: s2 }], { policy })]);
  expect(await until(() => r1.open === 0)).toBe(true);
  expect((await call(client, 'one')).headers['x-app']).toBe('x');
});
