import type { Proxy } from '../proxy/proxy.js';
import { parseService } from '../contract/parse.js';
import type { Service } from '../contract/model.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { LogCapture } from './helpers/log-capture.js';
import { Metadata } from '@grpc/grpc-js';
import { connect } from 'node:http2';
import { echoClient, type EchoClient } from './helpers/fake-grpc.js';
import { compileRouteManifests, type RouteManifest } from './helpers/routes.js';
import { grpcEchoBackend, httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';

/**
 * The Gateway API mesh conformance cases that are proxy behaviour (the list in
 * ../shared/reference/gateway-api/README.md), end to end: a client sidecar with the
 * routes, a server sidecar in front of echo backends that say which backend answered and
 * what they received. The routes come from the upstream-style manifests through
 * compileRouteManifests (test/helpers/routes.ts).
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let http: Record<string, EchoBackend>;
let grpcs: Record<string, EchoBackend>;
const log = new LogCapture();
let version = 0;

const parent = (port?: number) => ({ group: '', kind: 'Service', name: 'echo', ...(port ? { port } : {}) });
const ref = (name: string, weight?: number, extra: Record<string, unknown> = {}) => ({ name, port: 80, ...(weight === undefined ? {} : { weight }), ...extra });
const httpRoute = (name: string, rules: Record<string, unknown>[], parentRefs = [parent(80)]): RouteManifest => ({ kind: 'HTTPRoute', metadata: { name }, spec: { parentRefs, rules } });

function services(manifests: readonly RouteManifest[]): Service[] {
  const known: Record<string, number[]> = { echo: [80, 8080], 'echo-v1': [80], 'echo-v2': [80], 'echo-v3': [80], 'grpc-echo': [50051], 'grpc-v1': [80], 'grpc-v2': [80] };
  const routes = compileRouteManifests(manifests, (ns, name) => (ns === 'default' && known[name] ? { ports: known[name].map((port) => ({ name: '', port })) } : undefined));
  const ep = (b: EchoBackend) => ({ address: '127.0.0.1', port: b.port, proxyPort: server.inboundPort, identity: server.tls.spiffeId });
  const svc = (name: string, ports: { port: number; protocol?: string; backend: EchoBackend }[]) =>
    parseService({ name, ports: ports.map((p) => ({ port: p.port, protocol: p.protocol ?? 'detect', endpoints: [ep(p.backend)] })), routes: routes.get(`${name}.default`) }, name);
  return [
    svc('echo', [{ port: 80, backend: http['echo'] }, { port: 8080, backend: http['echo'] }]),
    svc('echo-v1', [{ port: 80, backend: http['echo-v1'] }]),
    svc('echo-v2', [{ port: 80, backend: http['echo-v2'] }]),
    svc('echo-v3', [{ port: 80, backend: http['echo-v3'] }]),
    svc('grpc-echo', [{ port: 50051, protocol: 'grpc', backend: grpcs['grpc-echo'] }]),
    svc('grpc-v1', [{ port: 80, protocol: 'grpc', backend: grpcs['grpc-v1'] }]),
    svc('grpc-v2', [{ port: 80, protocol: 'grpc', backend: grpcs['grpc-v2'] }]),
  ];
}

function useRoutes(...manifests: RouteManifest[]): void {
  client.applySnapshot({ version: String(++version), source: 'test', services: services(manifests) });
}

const get = (path: string, o: { host?: string; method?: string; headers?: Record<string, string> } = {}) => send(client.outboundPort, o.host ?? 'echo', path, o);

beforeAll(async () => {
  const [e, v1, v2, v3, ge, g1, g2] = await Promise.all([
    httpEchoBackend('echo'), httpEchoBackend('echo-v1'), httpEchoBackend('echo-v2'), httpEchoBackend('echo-v3'),
    grpcEchoBackend('grpc-echo'), grpcEchoBackend('grpc-v1'), grpcEchoBackend('grpc-v2'),
  ]);
  http = { echo: e, 'echo-v1': v1, 'echo-v2': v2, 'echo-v3': v3 };
  grpcs = { 'grpc-echo': ge, 'grpc-v1': g1, 'grpc-v2': g2 };
  server = await startProxy({ pki, serviceAccount: 'echo' });
  client = await startProxy({ pki, serviceAccount: 'client', config: { telemetry: { accessLog: { enabled: true } } }, accessLog: log, services: [] });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await Promise.all([...Object.values(http), ...Object.values(grpcs)].map((b) => b.close()));
});

test('mesh-basic: without routes the Service itself answers', async () => {
  useRoutes();
  const r = await get('/anything');
  expect(r.echoed).toMatchObject({ backend: 'echo', path: '/anything' });
});

test('httproute-matching: path prefixes by whole segment, and header matches', async () => {
  useRoutes(httpRoute('matching', [
    { matches: [{ path: { type: 'PathPrefix', value: '/' } }, { headers: [{ name: 'version', value: 'one' }] }], backendRefs: [ref('echo-v1')] },
    { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }, { headers: [{ name: 'version', value: 'two' }] }], backendRefs: [ref('echo-v2')] },
  ]));
  const cases: [string, Record<string, string>, string][] = [
    ['/', {}, 'echo-v1'], ['/example', {}, 'echo-v1'], ['/', { version: 'one' }, 'echo-v1'],
    ['/v2', {}, 'echo-v2'], ['/v2/example', {}, 'echo-v2'], ['/', { version: 'two' }, 'echo-v2'],
    ['/v2example', {}, 'echo-v1'], ['/foo/v2/example', {}, 'echo-v1'],
  ];
  for (const [path, headers, backend] of cases) expect([path, headers, (await get(path, { headers })).echoed?.backend]).toEqual([path, headers, backend]);
});

test('httproute-query-param-matching: by parameter value and count; no match: 404', async () => {
  useRoutes(httpRoute('query', [
    { matches: [{ queryParams: [{ name: 'animal', value: 'whale' }] }], backendRefs: [ref('echo-v1')] },
    { matches: [{ queryParams: [{ name: 'animal', value: 'dolphin' }] }], backendRefs: [ref('echo-v2')] },
    { matches: [{ queryParams: [{ name: 'animal', value: 'dolphin' }, { name: 'color', value: 'blue' }] }, { queryParams: [{ name: 'ANIMAL', value: 'Whale' }] }], backendRefs: [ref('echo-v3')] },
  ]));
  expect((await get('/?animal=whale')).echoed?.backend).toBe('echo-v1');
  expect((await get('/?animal=dolphin')).echoed?.backend).toBe('echo-v2');
  expect((await get('/?animal=dolphin&color=blue')).echoed?.backend).toBe('echo-v3');
  expect((await get('/?ANIMAL=Whale')).echoed?.backend).toBe('echo-v3');
  const none = await get('/?animal=cat');
  expect(none.status).toBe(404);
  expect(none.headers['wren-proxy-error']).toBe('route-not-matched');
});

test('httproute-method matching and mesh-ports: a route on port 80 does not apply on 8080', async () => {
  useRoutes(httpRoute('ports', [{ matches: [{ method: 'POST' }], backendRefs: [ref('echo-v2')] }, { backendRefs: [ref('echo-v1')] }]));
  expect((await get('/', { method: 'POST' })).echoed?.backend).toBe('echo-v2');
  expect((await get('/')).echoed?.backend).toBe('echo-v1');
  expect((await get('/', { host: 'echo:8080' })).echoed?.backend).toBe('echo');
});

test('httproute-weight / mesh-split: 70/30/0 over 600 requests within statistical tolerance', async () => {
  useRoutes(httpRoute('weights', [{ backendRefs: [ref('echo-v1', 70), ref('echo-v2', 30), ref('echo-v3', 0)] }]));
  const n: Record<string, number> = { 'echo-v1': 0, 'echo-v2': 0, 'echo-v3': 0 };
  for (let i = 0; i < 600; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => get('/weight')));
    for (const r of batch) n[r.echoed!.backend]++;
  }
  // Binomial(600, 0.7): mean 420, sd 11.2; the bounds are ~4.5 sd, so a correct split fails about once in 100,000 runs.
  expect(n['echo-v3']).toBe(0);
  expect(n['echo-v1']).toBeGreaterThan(370);
  expect(n['echo-v1']).toBeLessThan(470);
  expect(n['echo-v1'] + n['echo-v2']).toBe(600);
}, 60_000);

test('httproute-request-header-modifier (+ backend) and a ResponseHeaderModifier', async () => {
  useRoutes(httpRoute('headers', [
    {
      matches: [{ path: { type: 'PathPrefix', value: '/set' } }],
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }], add: [{ name: 'X-Header-Add', value: 'add-appends-values' }], remove: ['X-Header-Remove'] } },
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'X-Response-Set', value: 'yes' }], remove: ['x-backend'] } },
      ],
      backendRefs: [ref('echo-v1')],
    },
    {
      matches: [{ path: { type: 'PathPrefix', value: '/backend' } }],
      backendRefs: [ref('echo-v2', 1, { filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Backend', value: 'v2' }] } }] })],
    },
  ]));
  const r = await get('/set', { headers: { 'X-Header-Set': 'some-other-value', 'X-Header-Add': 'something', 'X-Header-Remove': 'val' } });
  expect(r.echoed?.backend).toBe('echo-v1');
  expect(r.echoed?.headers).toMatchObject({ 'x-header-set': 'set-overwrites-values', 'x-header-add': 'something,add-appends-values' });
  expect(r.echoed?.headers).not.toHaveProperty('x-header-remove');
  expect(r.headers['x-response-set']).toBe('yes');
  expect(r.headers).not.toHaveProperty('x-backend');
  expect((await get('/backend')).echoed?.headers['x-backend']).toBe('v2');
});

test('httproute-rewrite-path (prefix, full) and a hostname rewrite: what the backend receives', async () => {
  useRoutes(httpRoute('rewrite', [
    { matches: [{ path: { type: 'PathPrefix', value: '/prefix/one' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' } } }], backendRefs: [ref('echo-v1')] },
    { matches: [{ path: { type: 'PathPrefix', value: '/strip-prefix' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }], backendRefs: [ref('echo-v1')] },
    { matches: [{ path: { type: 'PathPrefix', value: '/full/one' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/one' } } }], backendRefs: [ref('echo-v1')] },
    { matches: [{ path: { type: 'PathPrefix', value: '/host' } }], filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.example.org' } }], backendRefs: [ref('echo-v2')] },
  ]));
  expect((await get('/prefix/one/two')).echoed?.path).toBe('/one/two');
  expect((await get('/strip-prefix/three?x=1')).echoed?.path).toBe('/three?x=1');
  expect((await get('/strip-prefix')).echoed?.path).toBe('/');
  expect((await get('/full/one/two')).echoed?.path).toBe('/one');
  const host = await get('/host/a');
  expect(host.echoed).toMatchObject({ backend: 'echo-v2', host: 'rewritten.example.org', path: '/host/a' });
  // The same over HTTP/2 from the app (h2c prior knowledge to the outbound port).
  const session = connect(`http://127.0.0.1:${client.outboundPort}`);
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const st = session.request({ ':path': '/prefix/one/h2', ':authority': 'echo' });
      let text = '';
      st.setEncoding('utf8');
      st.on('data', (c: string) => (text += c));
      st.on('end', () => resolve(text));
      st.on('error', reject);
      st.end();
    });
    expect(JSON.parse(body)).toMatchObject({ backend: 'echo-v1', path: '/one/h2' });
  } finally {
    session.close();
  }
});

test('httproute-redirect-{path,port,scheme,host-and-status} and httproute-{303,307,308}-redirect: exact Location and status', async () => {
  const redirect = (path: string, requestRedirect: Record<string, unknown>) => ({ matches: [{ path: { type: 'PathPrefix', value: path } }], filters: [{ type: 'RequestRedirect', requestRedirect }] });
  useRoutes(httpRoute('redirect', [
    redirect('/original-prefix', { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/replacement-prefix' } }),
    redirect('/full', { path: { type: 'ReplaceFullPath', replaceFullPath: '/full-path-replacement' } }),
    redirect('/port', { port: 8083 }),
    redirect('/scheme', { scheme: 'https' }),
    redirect('/scheme-and-port', { scheme: 'https', port: 8443 }),
    redirect('/hostname-redirect', { hostname: 'example.org' }),
    redirect('/host-and-status', { hostname: 'example.org', statusCode: 301 }),
    redirect('/303', { statusCode: 303 }),
    redirect('/307', { statusCode: 307 }),
    redirect('/308', { statusCode: 308 }),
  ]));
  const cases: [string, number, string][] = [
    ['/original-prefix/lemon', 302, 'http://echo/replacement-prefix/lemon'],
    ['/full/path/original', 302, 'http://echo/full-path-replacement'],
    ['/port', 302, 'http://echo:8083/port'],
    ['/scheme', 302, 'https://echo/scheme'],
    ['/scheme-and-port', 302, 'https://echo:8443/scheme-and-port'],
    ['/hostname-redirect', 302, 'http://example.org/hostname-redirect'],
    ['/host-and-status', 301, 'http://example.org/host-and-status'],
    ['/303', 303, 'http://echo/303'],
    ['/307', 307, 'http://echo/307'],
    ['/308?keep=1', 308, 'http://echo/308?keep=1'],
  ];
  for (const [path, status, location] of cases) {
    const r = await get(path, { method: 'POST' });
    expect([path, r.status, r.headers.location]).toEqual([path, status, location]);
  }
  expect(Object.values(http).every((b) => !b.seen.some((e) => ['/303', '/port'].includes(e.path)))).toBe(true);
});

test('httproute-named-rule: the rule name is in the access log (route_name); a rule timeout answers 504', async () => {
  useRoutes(httpRoute('named', [
    { name: 'named-rule', matches: [{ path: { type: 'PathPrefix', value: '/named' } }], backendRefs: [ref('echo-v1')] },
    { matches: [{ path: { type: 'PathPrefix', value: '/slow' } }], timeouts: { request: '200ms' }, backendRefs: [ref('echo-v2')] },
  ]));
  expect((await get('/named')).echoed?.backend).toBe('echo-v1');
  const slow = await get('/slow?delayMs=2000');
  expect(slow.status).toBe(504);
  expect(slow.headers['wren-proxy-error']).toBe('request-timeout');
  expect(await log.find((l) => l['path'] === '/named')).toMatchObject({ route_name: 'default.named.named-rule', upstream_cluster: 'outbound|80||echo-v1.default.svc.cluster.local' });
  expect(await log.find((l) => String(l['path']).startsWith('/slow'))).toMatchObject({ route_name: 'default.named.1', response_code: 504 });
});

test('a rule retry (HTTPRouteRetry) overrides the policy: attempts on its codes, its backoff as a floor', async () => {
  useRoutes(httpRoute('retry', [
    { matches: [{ path: { type: 'PathPrefix', value: '/retried' } }], retry: { attempts: 2, codes: [503], backoff: '400ms' }, backendRefs: [ref('echo-v1')] },
    { backendRefs: [ref('echo-v1')] },
  ]));
  const seen = () => http['echo-v1'].seen.filter((e) => e.path.includes('status=503')).length;
  let before = seen();
  const started = Date.now();
  const r = await get('/retried?status=503');
  expect(r.status).toBe(503);
  expect(seen() - before).toBe(3);
  // Two waits of at least 400 ms; without the floor the policy's jittered backoff is at most 2 x 250 ms.
  expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  before = seen();
  expect((await get('/plain?status=503')).status).toBe(503);
  expect(seen() - before).toBe(1);
});

test('a rule retry on a 4xx code (409) retries it: retry.codes go the retriable-status-codes path, which a status below 500 used to skip', async () => {
  useRoutes(httpRoute('retry-4xx', [{ retry: { attempts: 2, codes: [409] }, backendRefs: [ref('echo-v1')] }]));
  const seen = () => http['echo-v1'].seen.filter((e) => e.path.includes('status=409')).length;
  const before = seen();
  expect((await get('/conflict?status=409')).status).toBe(409);
  expect(seen() - before).toBe(3);
});

test('invalid and weight-0 backends: 500 ROUTE_BACKEND_INVALID', async () => {
  useRoutes(httpRoute('invalid', [
    { matches: [{ path: { type: 'PathPrefix', value: '/missing' } }], backendRefs: [ref('no-such-service')] },
    { matches: [{ path: { type: 'PathPrefix', value: '/zero' } }], backendRefs: [ref('echo-v1', 0)] },
    // Another kind (InvalidKind): the CRD needs no port for it; the route is still served, the ref's share gets 500 (ADV5-1a).
    { matches: [{ path: { type: 'PathPrefix', value: '/import' } }], backendRefs: [{ group: 'multicluster.x-k8s.io', kind: 'ServiceImport', name: 'echo-global' }] },
  ]));
  for (const p of ['/missing', '/zero', '/import']) {
    const r = await get(p);
    expect([p, r.status, r.headers['wren-proxy-error']]).toEqual([p, 500, 'route-backend-invalid']);
  }
});

test('RequestMirror: the mirror target receives a copy, the response comes from the backend, counted', async () => {
  useRoutes(httpRoute('mirror', [{
    filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'echo-v3', port: 80 } } }],
    backendRefs: [ref('echo-v1')],
  }]));
  const before = http['echo-v3'].seen.length;
  const r = await get('/mirrored?x=1', { headers: { 'x-trace': 'm1' } });
  expect(r.echoed?.backend).toBe('echo-v1');
  const deadline = Date.now() + 3000;
  while (http['echo-v3'].seen.length === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  expect(http['echo-v3'].seen.at(-1)).toMatchObject({ path: '/mirrored?x=1', headers: { 'x-trace': 'm1' } });
  const metrics = await (await fetch(`http://127.0.0.1:${client.adminPort}/metrics`)).text();
  expect(metrics).toMatch(/wren_route_mirror_requests_total\{result="sent"\} [1-9]/);
});

describe('admin: /config_dump and /debug/route', () => {
  const admin = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${client.adminPort}${path}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  beforeAll(() =>
    useRoutes(httpRoute('debug', [
      { name: 'exact', matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: [ref('echo-v1')] },
      { name: 'canary', matches: [{ path: { type: 'PathPrefix', value: '/a' }, headers: [{ name: 'x-canary', value: 'yes' }] }], filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-c', value: '1' }] } }], backendRefs: [ref('echo-v1', 90), ref('echo-v2', 10)] },
      { name: 'moved', matches: [{ path: { type: 'PathPrefix', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }] },
    ])),
  );

  test('/config_dump shows each service\'s routes', async () => {
    const { body } = await admin('/config_dump');
    const echo = (body['services'] as { name: string; routes?: { name: string; rules: { name: string }[] }[] }[]).find((s) => s.name === 'echo');
    expect(echo?.routes?.[0]).toMatchObject({ kind: 'HTTPRoute', name: 'debug', ports: [80] });
    expect(echo?.routes?.[0].rules.map((r) => r.name)).toEqual(['exact', 'canary', 'moved']);
  });

  test('/debug/route: the winning rule, why earlier candidates lost, backends with weights, filters', async () => {
    const { status, body } = await admin('/debug/route?authority=echo&path=/a/b&method=GET&header=X-Canary:yes');
    expect(status).toBe(200);
    expect(body).toMatchObject({
      service: 'echo.default', port: 80, kind: 'HTTPRoute', result: 'forward',
      matched: { route: 'default/debug', rule: 'canary', routeName: 'default.debug.canary', matchIndex: 0 },
      backends: [{ backend: 'echo-v1.default:80', weight: 90, share: 0.9 }, { backend: 'echo-v2.default:80', weight: 10, share: 0.1 }],
      filters: ['RequestHeaderModifier'],
    });
    expect((body['candidates'] as { rule: string; outcome: string }[]).map((c) => [c.rule, c.outcome])).toEqual([
      ['exact', 'lost: path does not match'],
      ['moved', 'lost: path does not match'],
      ['canary', 'matched'],
    ]);
    const miss = await admin('/debug/route?authority=echo&path=/a/b');
    expect(miss.body).toMatchObject({ result: 'not-matched' });
    expect((miss.body['candidates'] as { rule: string; outcome: string }[]).find((c) => c.rule === 'canary')?.outcome).toBe('lost: header x-canary does not match');
    const moved = await admin('/debug/route?authority=echo:80&path=/old/x');
    expect(moved.body).toMatchObject({ result: 'redirect', status: 301, location: 'http://echo/new/x' });
    expect((await admin('/debug/route?authority=echo:8080&path=/a')).body).toMatchObject({ result: 'forward', port: 8080 });
    expect((await admin('/debug/route?authority=nowhere&path=/')).status).toBe(404);
    expect((await admin('/debug/route?path=/')).status).toBe(400);
    expect((await admin('/debug/route?authority=echo&header=novalue')).status).toBe(400);
  });
});

describe('GRPCRoute', () => {
  let echo: EchoClient;
  const grpcRoute = (rules: Record<string, unknown>[]): RouteManifest => ({ kind: 'GRPCRoute', metadata: { name: 'grpc' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'grpc-echo', port: 50051 }], rules } });
  const call = async (headers: Record<string, string> = {}): Promise<{ backend: string; headers: Record<string, string> }> => {
    const md = new Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    return new Promise((resolve, reject) =>
      echo.Unary({ message: 'hi' }, md, (err: Error | null, res: { message: string }) => (err ? reject(err) : resolve(JSON.parse(res.message)))),
    );
  };
  beforeAll(() => {
    echo = echoClient(client.outboundPort, 'grpc-echo:50051');
  });
  afterAll(() => echo.close());

  test('grpcroute-weight: 70/30 over 500 calls within tolerance', async () => {
    useRoutes(grpcRoute([{ backendRefs: [ref('grpc-v1', 70), ref('grpc-v2', 30)] }]));
    const n: Record<string, number> = { 'grpc-v1': 0, 'grpc-v2': 0 };
    for (let i = 0; i < 500; i += 25) for (const r of await Promise.all(Array.from({ length: 25 }, () => call()))) n[r.backend]++;
    // Binomial(500, 0.7): mean 350, sd 10.2; ~4.5 sd bounds.
    expect(n['grpc-v1']).toBeGreaterThan(304);
    expect(n['grpc-v1']).toBeLessThan(396);
  }, 60_000);

  test('grpcroute-request-header-modifier and method matching', async () => {
    useRoutes(grpcRoute([
      { matches: [{ method: { service: 'wren.test.Echo', method: 'Unary' }, headers: [{ name: 'x-pick', value: 'v2' }] }], backendRefs: [ref('grpc-v2')] },
      {
        matches: [{ method: { service: 'wren.test.Echo' } }],
        filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }], add: [{ name: 'X-Header-Add', value: 'add-appends-values' }], remove: ['X-Header-Remove'] } }],
        backendRefs: [ref('grpc-v1')],
      },
    ]));
    const r = await call({ 'x-header-set': 'other', 'x-header-add': 'something', 'x-header-remove': 'val' });
    expect(r.backend).toBe('grpc-v1');
    expect(r.headers).toMatchObject({ 'x-header-set': 'set-overwrites-values', 'x-header-add': 'something,add-appends-values' });
    expect(r.headers).not.toHaveProperty('x-header-remove');
    expect((await call({ 'x-pick': 'v2' })).backend).toBe('grpc-v2');
  });

  test('no GRPCRoute rule matches: grpc-status UNIMPLEMENTED from the error table', async () => {
    useRoutes(grpcRoute([{ matches: [{ method: { service: 'other.Service' } }], backendRefs: [ref('grpc-v1')] }]));
    await expect(call()).rejects.toMatchObject({ code: 12 });
  });
});
