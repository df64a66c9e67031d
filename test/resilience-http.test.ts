import { request as httpRequest, createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * The resilience machinery on the real data path: two sidecars over mTLS, backends that
 * fail on cue, policies with short intervals so ejection is observable in a second.
 */
interface Backend {
  readonly port: number;
  readonly name: string;
  hits: number;
  /** Requests whose client went away before the response was finished. */
  cancelled: number;
  mode: 'ok' | 'fail' | 'slow';
  readonly seen: IncomingHttpHeaders[];
  close(): Promise<void>;
}

async function backend(name: string, mode: Backend['mode'] = 'ok'): Promise<Backend> {
  const b = { name, hits: 0, cancelled: 0, mode, seen: [] as IncomingHttpHeaders[] } as Backend & { port: number; close(): Promise<void> };
  const server: Server = createServer((req, res) => {
    b.hits++;
    b.seen.push(req.headers);
    res.on('close', () => {
      if (!res.writableFinished) b.cancelled++;
    });
    let bytes = 0;
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      if (b.mode === 'fail') {
        res.writeHead(503, { 'x-app': name });
        return void res.end('failing on cue');
      }
      const reply = () => {
        res.writeHead(200, { 'x-app': name, 'content-type': 'application/json' });
        res.end(JSON.stringify({ name, bytes }));
      };
      if (b.mode === 'slow') {
        const t = setTimeout(reply, 600);
        res.on('close', () => clearTimeout(t));
      } else reply();
    });
  });
  const { port, close } = await listenOnLoopback(server);
  b.port = port;
  b.close = close;
  return b;
}

const pki = testPki();
let client: Proxy, server: Proxy;
const backends: Backend[] = [];
const mk = async (name: string, mode: Backend['mode'] = 'ok') => {
  const b = await backend(name, mode);
  backends.push(b);
  return b;
};
let ej: Backend[], cap: Backend[], rt: Backend[], bud: Backend[], ovf: Backend, cr: Backend[], refusedMeshed: number, refusedPlain: number, slow: Backend;

beforeAll(async () => {
  server = await startProxy({ pki, serviceAccount: 'backend' });
  ej = [await mk('ej-a'), await mk('ej-b'), await mk('ej-c', 'fail')];
  cap = [await mk('cap-a'), await mk('cap-b', 'fail'), await mk('cap-c', 'fail'), await mk('cap-d', 'fail')];
  rt = [await mk('rt-ok'), await mk('rt-fail', 'fail')];
  bud = [await mk('bud-a', 'fail'), await mk('bud-b', 'fail')];
  ovf = await mk('ovf', 'slow');
  slow = await mk('slow', 'slow');
  cr = [await mk('cr-a'), await mk('cr-b')];
  refusedMeshed = await closedPort();
  refusedPlain = await closedPort();
  const behind = (bs: Backend[]) => bs.map((b) => ({ appPort: b.port, proxy: server }));
  const noOutlier = { outlierDetection: { enabled: false } };
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      // Round-robin: the test is about ejection and return, which wrap any balancer. Under
      // peak-EWMA, a failing endpoint whose 503s came slowly on a loaded machine keeps that
      // latency in its estimate (10 s decay) and rightly loses every pick to the healthy two
      // for a while after it returns: 40 requests once found it back in rotation and never
      // picked (CI, 2026-12-05). Round-robin makes "back in rotation" exact: every third request.
      meshService('eject', 80, behind(ej), {
        policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { consecutive5xx: 3, intervalMs: '200ms', baseEjectionTimeMs: '1500ms' } },
      }),
      // Round-robin here too: with peak-EWMA the third failing endpoint, once failed, was picked
      // only once more in 80 requests, never reached its second consecutive 5xx and so never
      // tried an ejection for the cap to refuse (CI, 2026-12-07).
      meshService('cap', 80, behind(cap), {
        policy: { loadBalancer: { kind: 'round-robin' }, outlierDetection: { consecutive5xx: 2, intervalMs: '200ms', baseEjectionTimeMs: '30s', maxEjectionPercent: 50 } },
      }),
      // Round-robin: which endpoint a request meets must not hang on a near tie of two
      // peak-EWMA estimates (27.7557 vs 27.7541 ms seen here), which a few µs of timing flip.
      meshService('retry', 80, behind(rt), { policy: { ...noOutlier, loadBalancer: { kind: 'round-robin' }, retry: { retryOn: ['5xx'], backoffBaseMs: '1ms' } } }),
      meshService('retry-post', 80, behind(rt), { policy: { ...noOutlier, loadBalancer: { kind: 'round-robin' }, retry: { retryOn: ['5xx'], retryNonIdempotent: true, backoffBaseMs: '1ms' } } }),
      meshService('budget', 80, behind(bud), {
        policy: { ...noOutlier, retry: { retryOn: ['5xx'], attempts: 3, backoffBaseMs: '1ms', budgetRatio: 0.2, budgetMinPerSecond: 1, budgetTtlMs: '10s' } },
      }),
      meshService('overflow', 80, behind([ovf]), { policy: { circuitBreaker: { maxRequests: 2 } } }),
      meshService('timeout', 80, behind([slow]), { policy: { timeouts: { requestMs: '200ms' } } }),
      // Default policy: only the always-safe retries apply.
      {
        ...meshService('refused', 80, [
          ...behind(cr),
          { appPort: 8080, proxy: { inboundPort: refusedMeshed, tls: server.tls } as unknown as Proxy },
          { appPort: refusedPlain, proxy: null },
        ]),
      },
    ],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await Promise.all(backends.map((b) => b.close()));
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function call(svc: string, opts: { method?: string; body?: Buffer; path?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: `${svc}.default.svc.cluster.local` };
    if (opts.body) headers['content-length'] = String(opts.body.length);
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, method: opts.method ?? 'GET', path: opts.path ?? '/', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function sequential(svc: string, n: number, opts?: Parameters<typeof call>[1]): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let i = 0; i < n; i++) out.push(await call(svc, opts));
  return out;
}

interface EndpointView {
  key: string;
  port: number;
  health: string;
  ewmaMs: number;
  inflight: number;
  timesEjected: number;
  ejectedUntil: string | null;
  failures: number;
  successes: number;
}

async function clusterView(svc: string): Promise<{ endpoints: EndpointView[]; panic: boolean }> {
  const all = (await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).json()) as Record<string, { endpoints: EndpointView[]; panic: boolean }>;
  return all[`${svc}.default:80`];
}

const metrics = async () => (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
const until = async (what: () => Promise<boolean>, ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
};

test('a failing endpoint is ejected after the consecutive-5xx count and returns after its ejection time', async () => {
  const [, , bad] = ej;
  // Drive traffic until the failing endpoint has failed 3 times in a row.
  const before = Date.now();
  for (let i = 0; i < 60 && bad.hits < 3; i++) await call('eject');
  expect(bad.hits).toBe(3);
  let view = await clusterView('eject');
  const ejected = view.endpoints.find((e) => e.port === bad.port)!;
  expect(ejected.health).toBe('ejected');
  expect(ejected.timesEjected).toBe(1);
  expect(ejected.failures).toBe(3);
  const until1 = Date.parse(ejected.ejectedUntil!);
  expect(until1 - before).toBeGreaterThanOrEqual(1400);
  expect(until1 - Date.now()).toBeLessThanOrEqual(1600);
  for (const e of view.endpoints) {
    expect(typeof e.ewmaMs).toBe('number');
    expect(e.inflight).toBe(0);
  }
  // While ejected it gets no traffic. Only requests sent before its ejection ends count: on a
  // loaded machine 30 of them once outlasted the 500 ms and the endpoint was back (CI, 2026-12-04),
  // and once only one fitted in what was left of 500 ms (CI, 2026-12-06): 1.5 s of ejection.
  const replies: Reply[] = [];
  while (replies.length < 30 && Date.now() < until1 - 100) replies.push(await call('eject'));
  expect(replies.length).toBeGreaterThanOrEqual(5);
  expect(replies.every((r) => r.status === 200)).toBe(true);
  expect(bad.hits).toBe(3);
  // It recovers; after base ejection time + one interval sweep it is back in rotation.
  bad.mode = 'ok';
  expect(await until(async () => (await clusterView('eject')).endpoints.find((e) => e.port === bad.port)!.health === 'healthy', 3000)).toBe(true);
  view = await clusterView('eject');
  expect(view.endpoints.find((e) => e.port === bad.port)!.ejectedUntil).toBeNull();
  // Back in the rotation of three: 13 or 14 of 40 (10 leaves room for a picker rebuilt mid-way).
  await sequential('eject', 40);
  expect(bad.hits - 3).toBeGreaterThanOrEqual(10);
});

test('max ejection percent caps how many endpoints are ejected', async () => {
  const replies = await sequential('cap', 80);
  const view = await clusterView('cap');
  const ejected = view.endpoints.filter((e) => e.health === 'ejected');
  expect(ejected.length).toBe(2); // 50 % of 4
  expect(ejected.every((e) => cap.slice(1).some((b) => b.port === e.port))).toBe(true);
  // The third failing endpoint keeps serving (and failing): the cap is what kept it in.
  expect(replies.some((r) => r.status === 503)).toBe(true);
  expect(await metrics()).toMatch(/wren_outlier_ejections_overflow_total\{cluster="cap.default:80"\} [1-9]/);
});

test("with retryOn: ['5xx'] a request to a failing endpoint is retried on another one and succeeds", async () => {
  const [ok, bad] = rt;
  const replies = await sequential('retry', 20);
  expect(replies.map((r) => r.status)).toEqual(Array(20).fill(200));
  expect(bad.hits).toBeGreaterThan(0);
  // Every failed attempt was retried on the healthy endpoint, marked as attempt 2.
  expect(ok.seen.filter((h) => h['wren-attempt'] === '2').length).toBe(bad.hits);
  expect(await metrics()).toMatch(/wren_retries_total\{cluster="retry.default:80"\} [1-9]/);
});

test('a POST is retried only with retryNonIdempotent, and its buffered body is replayed intact', async () => {
  const [, bad] = rt;
  const body = Buffer.alloc(20_000, 7);
  const failedBefore = bad.hits;
  const plain = await sequential('retry', 16, { method: 'POST', body });
  expect(bad.hits).toBeGreaterThan(failedBefore);
  // Non-idempotent and it reached the upstream: the 503 goes back to the caller.
  expect(plain.filter((r) => r.status === 503).length).toBe(bad.hits - failedBefore);
  const hitsBefore = bad.hits;
  const retried = await sequential('retry-post', 16, { method: 'POST', body });
  expect(bad.hits).toBeGreaterThan(hitsBefore);
  expect(retried.map((r) => r.status)).toEqual(Array(16).fill(200));
  expect(retried.every((r) => JSON.parse(r.body).bytes === body.length)).toBe(true);
});

test('the retry budget stops a retry storm when every endpoint fails', async () => {
  const n = 50;
  const replies = await sequential('budget', n);
  expect(replies.every((r) => r.status === 503)).toBe(true);
  const hits = bud[0].hits + bud[1].hits;
  const retries = hits - n;
  // Without a budget: 3 retries each (200 hits). Budget: 20 % of requests + a reserve of
  // 1/s × 10 s, so at most 10 + 10 retries.
  expect(retries).toBeGreaterThan(0);
  expect(retries).toBeLessThanOrEqual(20);
  expect(await metrics()).toMatch(/wren_retry_budget_exhausted_total\{cluster="budget.default:80"\} [1-9]/);
});

test('overflow: with maxRequests 2, concurrent requests beyond it get 503 overflow at once', async () => {
  const t0 = Date.now();
  const replies = await Promise.all(Array.from({ length: 5 }, () => call('overflow')));
  const over = replies.filter((r) => r.status === 503);
  expect(replies.filter((r) => r.status === 200).length).toBe(2);
  expect(over.length).toBe(3);
  for (const r of over) expect(r.headers['wren-proxy-error']).toBe('overflow');
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(await metrics()).toMatch(/wren_overflow_total\{cluster="overflow.default:80",limit="requests"\} 3/);
});

test('a request timeout answers 504 and cancels the upstream attempt', async () => {
  const t0 = Date.now();
  const r = await call('timeout');
  const took = Date.now() - t0;
  expect(r.status).toBe(504);
  expect(r.headers['wren-proxy-error']).toBe('request-timeout');
  expect(took).toBeGreaterThanOrEqual(150);
  expect(took).toBeLessThan(550);
  expect(await until(async () => slow.cancelled === 1, 1000)).toBe(true);
});

test('connect-refused endpoints among healthy ones: the client sees no failure (always-safe retry)', async () => {
  const replies = await sequential('refused', 30);
  expect(replies.map((r) => r.status)).toEqual(Array(30).fill(200));
  const view = await clusterView('refused');
  const failures = view.endpoints.filter((e) => e.port === 8080 || e.port === refusedPlain).reduce((s, e) => s + e.failures, 0);
  expect(failures).toBeGreaterThan(0);
  expect(cr[0].hits + cr[1].hits).toBe(30);
});

test('connect-refused endpoints among healthy ones: a POST with a body is retried too (its body is not read before a connection is up)', async () => {
  const before = cr[0].hits + cr[1].hits;
  const replies = await sequential('refused', 30, { method: 'POST', body: Buffer.from('{"order":42}') });
  expect(replies.map((r) => `${r.status} ${r.headers['wren-proxy-error'] ?? ''}`)).toEqual(Array(30).fill('200 '));
  expect(cr[0].hits + cr[1].hits - before).toBe(30);
});
