import { httpText } from './helpers/http-text.js';
import { connect as tlsConnect } from 'node:tls';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * What the main thread of a concurrency-2 sidecar shows of its listener workers: the
 * merged /metrics gauges, GET /clusters, the cluster states the HealthReport is built
 * from, and the ports a mesh peer may not aim at. Real sidecars with two worker threads
 * (the compiled proxy in dist/, `npm run build`), real sockets, real scrapes.
 */
const pki = testPki();
let app: FakeApp;
let p: Proxy;

/** A port nothing listens on: every attempt is refused. */
const DEAD = 1;
/** A peak-EWMA endpoint's estimate before its first answer (proxy/balance/endpoint-load.ts). */
const DEFAULT_RTT_MS = 30;
const BREAKER = { accrual: 'consecutive', consecutiveFailures: 1, backoffInitialMs: 60_000, backoffMaxMs: 60_000 };

beforeAll(async () => {
  app = await fakeApp('app');
  p = await startProxy({
    pki, serviceAccount: 'client', config: { concurrency: 2 },
    services: [
      // Outlier detection off: its ejections are the sidecar's and outlive a worker (shared-outliers.ts); what dies with a worker is its breakers.
      meshService('dead', 80, [{ appPort: DEAD, proxy: null }], { protocol: 'http1', policy: { loadBalancer: { kind: 'peak-ewma' }, circuitBreaker: BREAKER, outlierDetection: { enabled: false } } }),
      meshService('idle', 80, [{ appPort: app.port, proxy: null }], { protocol: 'http1', policy: { loadBalancer: { kind: 'peak-ewma' } } }),
      meshService('live', 80, [{ appPort: app.port, proxy: null }], { protocol: 'http1' }),
    ],
  });
  await untilReady(p);
});

afterAll(async () => {
  await p?.close();
  await app.close();
});

const http = httpText;

async function untilReady(x: Proxy): Promise<void> {
  for (const end = Date.now() + 10_000; (await http(x.adminPort, '/ready')).status !== 200; await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > end) throw new Error('not ready');
  }
}

/** Every sample of `name` in a Prometheus text, by its label set. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of text.split('\n')) if (l.startsWith(`${name}{`)) out.set(l.slice(name.length, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1)));
  return out;
}

interface EndpointView { port: number; health: string; inflight: number; successes: number }
interface ClusterView { endpoints: EndpointView[]; limits: { requests: { active: number } } }
const clusters = async (): Promise<Record<string, ClusterView>> => JSON.parse((await http(p.adminPort, '/clusters')).body) as Record<string, ClusterView>;

test('per-endpoint gauges are one worker\'s view in /metrics, not the sum over the workers (open breaker 1, not 2 "half-open")', async () => {
  const idleEwma = async () => samples((await http(p.adminPort, '/metrics')).body, 'wren_endpoint_ewma_ms').get(`{cluster="idle.default:80",endpoint="127.0.0.1:${app.port}"}`);
  // No request goes to `idle`: each worker's estimate is the default RTT (30 ms) decaying, never more; two summed would be ~60.
  expect(await idleEwma()).toBeGreaterThan(0);
  expect(await idleEwma()).toBeLessThanOrEqual(DEFAULT_RTT_MS);
  const before = samples((await http(p.adminPort, '/metrics')).body, 'wren_worker_connections_total');
  // Fresh connections, spread by the kernel over both workers: each one's first attempt at `dead` opens its breaker.
  await Promise.all(Array.from({ length: 40 }, () => http(p.outboundPort, '/', 'dead')));
  const m = (await http(p.adminPort, '/metrics')).body;
  const after = samples(m, 'wren_worker_connections_total');
  for (const w of ['0', '1']) expect((after.get(`{worker="${w}"}`) ?? 0) - (before.get(`{worker="${w}"}`) ?? 0)).toBeGreaterThan(0);
  expect(samples(m, 'wren_endpoint_breaker_state').get(`{cluster="dead.default:80",endpoint="127.0.0.1:${DEAD}"}`)).toBe(1);
  // Its only endpoint out: both workers balance `dead` in panic mode, shown as 1.
  expect(samples(m, 'wren_cluster_panic').get('{cluster="dead.default:80"}')).toBe(1);
  expect(samples(m, 'wren_outlier_ejected_endpoints').get('{cluster="dead.default:80"}')).toBeLessThanOrEqual(1);
  expect(await idleEwma()).toBeLessThanOrEqual(DEFAULT_RTT_MS);
});

test('GET /clusters asks the workers: the sidecar\'s requests in flight and each endpoint\'s counts summed over both, as they are now', async () => {
  const done = 10;
  for (let i = 0; i < done; i++) expect((await http(p.outboundPort, '/name', 'live')).status).toBe(200);
  // Held for 3 s by the app, on fresh connections (so, most likely, in both workers).
  const held = Array.from({ length: 4 }, () => http(p.outboundPort, '/slow?ms=3000', 'live'));
  let live: ClusterView | undefined;
  for (const end = Date.now() + 2000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    live = (await clusters())['live.default:80'];
    // A request is counted active when admitted, and in flight on its endpoint a moment later, once it has picked one.
    if (live?.limits.requests.active === 4 && live.endpoints[0]?.inflight === 4) break;
  }
  expect(live?.limits.requests.active).toBe(4);
  expect(live?.endpoints.map((e) => [e.port, e.health, e.inflight, e.successes])).toEqual([[app.port, 'healthy', 4, done]]);
  expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
});

test('a worker\'s cluster state dies with it: the HealthReport\'s view drops its open breaker, the restarted worker reports its own', async () => {
  await Promise.all(Array.from({ length: 40 }, () => http(p.outboundPort, '/', 'dead')));
  const dead = () => (p.clusterStates()['dead.default:80'] as ClusterView | undefined)?.endpoints[0]?.health;
  expect(dead()).toBe('breaker-open');
  // The pool is private: end both worker threads the way a crash would.
  const slots = (p as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } | null; listening: boolean }[] } }).pool.slots;
  const old = slots.map((s) => s.worker);
  await Promise.all(old.map((w) => w!.terminate()));
  await new Promise((r) => setImmediate(r));
  // Before the restart (100 ms later), no worker holds the breaker open.
  expect(dead()).toBeUndefined();
  for (const end = Date.now() + 5000; !slots.every((s, i) => s.listening && s.worker !== old[i]); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > end) throw new Error('workers not restarted');
  }
  // The fresh workers applied the config they started with and said so, unprompted.
  for (const end = Date.now() + 2000; dead() !== 'healthy' && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
  expect(dead()).toBe('healthy');
  expect((await clusters())['dead.default:80'].endpoints[0].health).toBe('healthy');
});

test('a mesh peer cannot aim wren-target-port at the admin or metrics port bound at port 0 (workers learn them)', async () => {
  const m = pki.issue('default', 'mallory');
  const ask = (port: number, path = '/ready') =>
    new Promise<string>((resolve) => {
      let data = '';
      const s = tlsConnect({ host: '127.0.0.1', port: p.inboundPort, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
      s.once('secureConnect', () => s.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nwren-target-port: ${port}\r\nwren-orig-proto: HTTP/1.1\r\nconnection: close\r\n\r\n`));
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('error', () => resolve(data));
      s.on('close', () => resolve(data.split('\r\n')[0]));
    });
  expect(p.metricsPort).toBeGreaterThan(0);
  // Fresh connections reach both workers (the kernel spreads them); every one is refused.
  const got = await Promise.all(Array.from({ length: 12 }, (_, i) => ask(i % 2 ? p.adminPort : p.metricsPort)));
  expect(got).toEqual(Array(12).fill('HTTP/1.1 400 Bad Request'));
  // The app's own port, for contrast, is served.
  expect(await ask(app.port, '/name')).toBe('HTTP/1.1 200 OK');
});
