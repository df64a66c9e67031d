import { connect, type Socket } from 'node:net';
import { systemClock } from '../common/clock.js';
import { AdminAccess } from './admin-access.js';
import { startAdminServer, type AdminDeps, type AdminServerHandle } from './admin-server.js';
import type { DiscoveryServer } from './discovery/discovery-server.js';
import { ControlPlaneMetrics } from './metrics.js';
import type { MeshStore } from './store/mesh-store.js';
import type { StatsStore } from './stats/stats-store.js';

/**
 * The control plane's admin port against a hostile or careless client, with the state it
 * shows stubbed: what a page must not show (a jwksUri's API key), and how a malformed
 * request is answered (a 4xx naming the problem, and the port keeps serving).
 */
const SECRET = 'AKIA-CP-ADMIN-SECRET';
const JWKS_URI = `https://id.example.com/jwks.json?api_key=${SECRET}`;
const HEADER_KEY = 'static-api-key-7f3a9c';
const CLAIM_VALUE = 'tenant-secret-claim-41d2';
/** An accepted AuthorizationPolicy whose conditions carry a static key (a header) and a claim value. */
const authz = {
  name: 'shop/keyed', action: 'ALLOW',
  rules: [{ from: [], to: [], when: [
    { key: 'request.headers[x-api-key]', values: [HEADER_KEY, `${HEADER_KEY}-old`], notValues: [] },
    { key: 'request.auth.claims[tenant][id]', values: [], notValues: [CLAIM_VALUE] },
    { key: 'source.namespace', values: ['shop'], notValues: [] },
  ] }],
};
const policy = { mtls: { mode: 'STRICT' }, portLevelMtls: {}, authorizationPolicies: [authz], jwtRules: [{ issuer: 'https://id.example.com', jwksUri: JWKS_URI, audiences: [] }] };

let server: AdminServerHandle;
let port: number;
let metrics: ControlPlaneMetrics;
let deps: AdminDeps;

beforeAll(async () => {
  metrics = new ControlPlaneMetrics();
  const view = {
    version: 'v1', services: new Map([['web.shop', { name: 'web', namespace: 'shop', clusterIPs: [], ports: [], policy: null }]]), routes: { byService: new Map() },
    policy: {
      peerAuthentications: [], authorizationPolicies: [{ namespace: 'shop', selector: {}, policy: authz }], externalServices: [],
      requestAuthentications: [{ name: 'jwt', namespace: 'shop', selector: {}, jwtRules: policy.jwtRules }],
    },
  };
  const discovery = {
    debugProxies: () => [{ id: 1, identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: 'web-0' }, ackedVersion: 'v1', inboundPolicy: policy, nacks: 0, lastNack: null, ejections: [] }],
    proxyStatus: () => [],
    proxyConfig: (pod: string) => (pod === 'shop/web-0' ? [{ pod, identity: 'spiffe://cluster.local/ns/shop/sa/web', ackedVersion: 'v1', services: [], routes: {}, policy, telemetry: null, cert: null }] : []),
    debugHealth: () => [],
    debugTrust: () => ({ controlPlane: null, proxies: [] }),
  } as unknown as DiscoveryServer;
  const stats = { reporterList: () => [], stat: () => [], edges: () => [], denials: () => [{ policy: 'shop/keyed', reporter: 'shop/web-0', action: 'DENY', rule: 0, at: 0 }], retries: () => [], droppedRetries: () => 0 } as unknown as StatsStore;
  deps = {
    store: { view, ready: true } as unknown as MeshStore, metrics, discovery, stats, clock: systemClock, draining: () => false,
    sourceErrors: () => [], sourceIgnored: () => [], sourceName: 'test', sourceRejected: () => [],
    access: new AdminAccess({ namespace: 'wren-system', authenticator: null, clock: systemClock }),
  };
  server = await startAdminServer('127.0.0.1', 0, deps);
  port = server.port;
});

afterAll(() => server.close());

const get = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${port}${path}`, init).then(async (r) => ({ status: r.status, headers: r.headers, body: await r.text() }));

/** One raw HTTP/1.1 exchange: what the server answered (status line and headers, body), the connection closed by the client after a short read. */
function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(request));
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      got += d;
      if (/\r\n\r\n/.test(got)) {
        const m = /content-length: (\d+)/i.exec(got);
        const head = got.indexOf('\r\n\r\n') + 4;
        if (!m || got.length - head >= Number(m[1])) {
          s.destroy();
          resolve(got);
        }
      }
    });
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
}

test("no debug page or /api/ answer shows a jwksUri's query (an API key): the URI is shown up to it, as the proxy's /config_dump shows it", async () => {
  for (const path of ['/debug/proxy-config?pod=shop/web-0', '/debug/proxies', '/debug/view', '/api/proxies', '/api/proxies/shop%2Fweb-0']) {
    const r = await get(path);
    expect([path, r.status]).toEqual([path, 200]);
    expect([path, r.body.includes(SECRET)]).toEqual([path, false]);
    expect([path, r.body.includes('https://id.example.com/jwks.json?…')]).toEqual([path, true]);
  }
});

test("no debug page or /api/ answer shows the values of an AuthorizationPolicy's request.headers[...] or request.auth.claims[...] condition (a static API key): their key and count stay, other conditions stay verbatim", async () => {
  for (const path of ['/debug/proxy-config?pod=shop/web-0', '/debug/proxies', '/debug/view', '/api/proxies', '/api/services/web.shop', '/api/why']) {
    const r = await get(path);
    expect([path, r.status]).toEqual([path, 200]);
    expect([path, r.body.includes(HEADER_KEY), r.body.includes(CLAIM_VALUE)]).toEqual([path, false, false]);
    expect([path, r.body.includes('request.headers[x-api-key]')]).toEqual([path, true]);
  }
  const view = JSON.parse((await get('/debug/view')).body) as { authorizationPolicies: { policy: typeof authz }[] };
  expect(view.authorizationPolicies[0].policy.rules[0].when).toEqual([
    { key: 'request.headers[x-api-key]', values: ['<hidden>', '<hidden>'], notValues: [] },
    { key: 'request.auth.claims[tenant][id]', values: [], notValues: ['<hidden>'] },
    { key: 'source.namespace', values: ['shop'], notValues: [] },
  ]);
});

test('a request with two Host headers is a 400, whichever comes first: node keeps only the first, so a second could carry a rebinding name past the check', async () => {
  const both = await raw('GET /debug/view HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
  expect(both).toMatch(/^HTTP\/1\.1 400 /);
  expect(both).toContain('more than one Host header');
  expect(both).not.toContain('"services"');
});

test('an absolute-form target names the authority the DNS-rebinding check reads (RFC 9112 section 3.2.2), not the Host header', async () => {
  const r = await raw('GET http://evil.example:15014/debug/view HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  expect(r).toMatch(/^HTTP\/1\.1 403 /);
  expect(r).toContain('DNS rebinding');
  const ok = await raw(`GET http://127.0.0.1:${port}/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  expect(ok).toMatch(/^HTTP\/1\.1 200 /);
});

test("an origin-form target starting '//' is a path (404), not a URL naming a host; '*' and authority-form are 400", async () => {
  const dbl = await raw('GET //debug/view HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  expect(dbl).toMatch(/^HTTP\/1\.1 404 /);
  for (const target of ['*', '127.0.0.1:15014']) {
    const r = await raw(`OPTIONS ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect([target, r.split('\r\n')[0]]).toEqual([target, 'HTTP/1.1 400 Bad Request']);
  }
});

test('a method other than GET and HEAD is a 405 naming them in Allow (RFC 9110 section 15.5.6); HEAD answers the headers of GET; the port keeps serving', async () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
    const r = await get('/debug/view', { method });
    expect([method, r.status, r.headers.get('allow')]).toEqual([method, 405, 'GET, HEAD']);
  }
  const head = await get('/debug/view', { method: 'HEAD' });
  expect([head.status, head.headers.get('content-type'), head.body]).toEqual([200, 'application/json', '']);
  expect((await get('/live')).status).toBe(200);
});

describe('limits (common/bounded-accept.ts): each has a default, fires a metric, and the port keeps serving', () => {
  let small: AdminServerHandle;
  let m: ControlPlaneMetrics;
  beforeAll(async () => {
    m = new ControlPlaneMetrics();
    small = await startAdminServer('127.0.0.1', 0, { ...deps, metrics: m, limits: { maxConnectionsPerListener: 2, requestHeadersTimeoutMs: 300, delayedCloseMs: 300 } });
  });
  afterAll(() => small.close());
  const count = async (limit: string) => (await m.adminLimitExceeded.get()).values.find((v) => v.labels.limit === limit)?.value ?? 0;
  const open = () => new Promise<Socket>((resolve, reject) => {
    const s = connect(small.port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
  /** What the socket receives until it closes (resolves when it closes). */
  const untilClosed = (s: Socket) => new Promise<string>((resolve) => {
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => void (got += d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(got));
  });

  test('a connection over the cap is closed at accept, unanswered, and counted; one under it is served', async () => {
    const idle = [await open(), await open()];
    const over = await open();
    const answer = untilClosed(over);
    over.write('GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect(await answer).toBe('');
    expect(await count('max-connections')).toBe(1);
    // Once one closes, a new connection is served again (the server sees the close a moment after this client does).
    idle[0].destroy();
    let served = '';
    for (let i = 0; i < 100 && !served; i++) {
      const ok = await open();
      const got = untilClosed(ok);
      ok.write('GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
      served = await got;
      if (!served) await new Promise((r) => setTimeout(r, 10));
    }
    expect(served).toMatch(/^HTTP\/1\.1 200 /);
    idle[1].destroy();
  });

  test('a response the client does not read is dropped once it stops moving for delayedCloseMs, and counted; node alone would hold it (and the page) for ever', async () => {
    // A /debug/view of a large mesh: far more than the kernel's socket buffers take.
    const big = { version: 'v1', services: new Map([['big.shop', { name: 'x'.repeat(32 << 20), namespace: 'shop' }]]), routes: { byService: new Map() }, policy: { peerAuthentications: [], authorizationPolicies: [] } };
    const mb = new ControlPlaneMetrics();
    const h = await startAdminServer('127.0.0.1', 0, { ...deps, metrics: mb, store: { view: big, ready: true } as unknown as MeshStore, limits: { maxConnectionsPerListener: 8, requestHeadersTimeoutMs: 0, delayedCloseMs: 300 } });
    try {
      const s = connect(h.port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.pause(); // reads nothing: the server's writes stall
      let received = 0;
      const closed = new Promise<void>((resolve) => {
        s.on('data', (b: Buffer) => void (received += b.length));
        s.on('error', () => undefined);
        s.on('close', () => resolve());
      });
      s.write('GET /debug/view HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      const count = async () => (await mb.adminLimitExceeded.get()).values.find((v) => v.labels.limit === 'delayed-close-timeout')?.value ?? 0;
      // The server's side: the limit fires (it is the event awaited, up to 8 s).
      for (let i = 0; i < 160 && (await count()) === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await count()).toBe(1);
      // The client's: reading again, it gets what had been sent and then the end, never the whole page.
      s.resume();
      await closed;
      expect(received).toBeGreaterThan(0);
      expect(received).toBeLessThan(32 << 20);
      s.destroy();
    } finally {
      await h.close();
    }
  }, 20_000);

  test('a request head not complete within the timeout has its connection closed and counted (node alone would wait 60 s)', async () => {
    const slow = await open();
    const closed = untilClosed(slow);
    slow.write('GET /live HTTP/1.1\r\nHost: 127.');
    const t0 = Date.now();
    const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open after 5 s'), 5_000))]);
    expect(outcome).toBe('closed');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(await count('request-headers-timeout')).toBe(1);
    slow.destroy();
  });
});

test('/debug/view is rendered once per mesh view and source state (a large mesh takes a second of the event loop to render): a repeat is served the same rendering; a new view, readiness or source error renders anew', async () => {
  let renders = 0;
  /** Counts how often the page walks the view's services, which every rendering does. */
  class CountingMap<K, V> extends Map<K, V> {
    override values(): MapIterator<V> {
      renders++;
      return super.values();
    }
  }
  const viewOf = (version: string) => ({ version, services: new CountingMap(), routes: { byService: new Map() }, policy: { peerAuthentications: [], authorizationPolicies: [] } });
  const store = { view: viewOf('v1'), ready: true };
  let errors: string[] = [];
  const own = await startAdminServer('127.0.0.1', 0, { ...deps, store: store as unknown as MeshStore, sourceErrors: () => [...errors] });
  const view = async () => JSON.parse(await (await fetch(`http://127.0.0.1:${own.port}/debug/view`)).text()) as { version: string; ready: boolean; errors: string[] };
  try {
    for (let i = 0; i < 5; i++) expect(await view()).toMatchObject({ version: 'v1', ready: true, errors: [] });
    expect(renders).toBe(1);
    store.view = viewOf('v2');
    expect(await view()).toMatchObject({ version: 'v2' });
    expect(await view()).toMatchObject({ version: 'v2' });
    expect(renders).toBe(2);
    errors = ['web.yaml: bad'];
    expect(await view()).toMatchObject({ version: 'v2', errors: ['web.yaml: bad'] });
    store.ready = false;
    expect(await view()).toMatchObject({ version: 'v2', ready: false });
    expect(await view()).toMatchObject({ version: 'v2', ready: false, errors: ['web.yaml: bad'] });
    expect(renders).toBe(4);
  } finally {
    await own.close();
  }
});
