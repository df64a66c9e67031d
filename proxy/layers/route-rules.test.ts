import { PassThrough, Readable } from 'node:stream';
import { parseService } from '../../contract/parse.js';
import { portPolicy } from '../../contract/model.js';
import { FakeClock, seededRandom } from '../../common/clock.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { RouteTable } from '../outbound/route-table.js';
import { ProxyError } from '../errors/proxy-error.js';
import { errorResponse } from '../errors/error-response.js';
import { routeRules } from './route-rules.js';
import type { MirrorResult } from '../routing/mirror.js';

const backend = (name: string, weight = 1, extra: Record<string, unknown> = {}) => ({ name, namespace: 'default', port: 80, weight, ...extra });
const svc = (name: string, routes?: unknown[]) => parseService({ name, ports: [{ port: 80 }], ...(routes ? { routes } : {}) }, name);

function setup(routes: unknown[], o: { draws?: () => number; mirrorMax?: number } = {}) {
  const table = new RouteTable({ version: '1', source: 't', services: [svc('web', routes), svc('v1'), svc('v2'), svc('shadow')] }, 'default');
  const seen: ProxyRequest[] = [];
  const mirrors: MirrorResult[] = [];
  const clock = new FakeClock(0);
  let answer: (req: ProxyRequest) => Promise<ProxyResponse> = async (req) => ({ status: 200, headers: { 'x-from': req.route!.service.name }, body: null, trailers: () => undefined });
  const svcFn = routeRules({ routes: () => table, random: o.draws ?? seededRandom(1), mirror: { clock, random: () => 0, count: (r) => void mirrors.push(r), maxBodyBytes: o.mirrorMax } })((req) => {
    seen.push(req);
    return answer(req);
  });
  const send = (path: string, extra: Partial<ProxyRequest> = {}): Promise<ProxyResponse> => {
    const req: ProxyRequest = {
      method: 'GET', scheme: 'http', authority: 'web', path, headers: {}, body: null, trailers: () => undefined, origProto: 'HTTP/1.1',
      source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0, ...extra,
    };
    req.route = table.byAuthority(req.authority);
    // Like route-by-authority, the layer may throw synchronously (errors-to-response awaits inside try).
    return Promise.resolve().then(() => svcFn(req));
  };
  return { table, seen, mirrors, clock, send, setAnswer: (f: typeof answer) => (answer = f) };
}

describe('route-rules layer', () => {
  test('a port without routes passes the request through untouched', async () => {
    const t = setup([]);
    const res = await t.send('/x');
    expect(res.headers['x-from']).toBe('web');
    expect(t.seen[0].routeName).toBeUndefined();
  });

  test('no rule matches: ROUTE_NOT_MATCHED, 404 for HTTP, UNIMPLEMENTED for gRPC', async () => {
    const t = setup([{ name: 'r', rules: [{ matches: [{ path: { type: 'Exact', value: '/only' } }], backends: [backend('v1')] }] }]);
    const e = await t.send('/other').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ProxyError);
    expect((e as ProxyError).code).toBe('ROUTE_NOT_MATCHED');
    expect(errorResponse(e, { headers: {} }).status).toBe(404);
    expect(errorResponse(e, { headers: { 'content-type': 'application/grpc' } }).headers['grpc-status']).toBe('12');
    expect(t.seen).toHaveLength(0);
  });

  test.each(['/./admin/users', '/%61dmin/users', '/x/../admin/users', '/admin\\users'])(
    'rules match the path the peer will hand the app (normalized, as the inbound does): %s takes the /admin rule (ADV5-11)',
    async (path) => {
      const t = setup([{ name: 'r', rules: [
        { name: 'admin', matches: [{ path: { type: 'PathPrefix', value: '/admin' } }], backends: [backend('v2')] },
        { name: 'rest', backends: [backend('v1')] },
      ] }]);
      const res = await t.send(`${path}?q=1`);
      expect({ from: res.headers['x-from'], sent: t.seen[0].path, logged: t.seen[0].originalPath }).toEqual({ from: 'v2', sent: '/admin/users?q=1', logged: `${path}?q=1` });
    },
  );

  test('a path already normal is not copied; a request-target in no RFC 9112 form is a 400', async () => {
    const t = setup([{ name: 'r', rules: [{ backends: [backend('v1')] }] }]);
    await t.send('/a/b?x=%2e');
    expect({ sent: t.seen[0].path, logged: t.seen[0].originalPath }).toEqual({ sent: '/a/b?x=%2e', logged: undefined });
    const e = await t.send('/a#frag').catch((x: unknown) => x);
    expect(errorResponse(e, { headers: {} }).status).toBe(400);
  });

  test('re-targets at the drawn backend service port and names the rule', async () => {
    const t = setup([{ name: 'r', rules: [{ name: 'main', backends: [backend('v1')] }] }]);
    const res = await t.send('/x');
    expect(res.headers['x-from']).toBe('v1');
    expect(t.seen[0].route!.service.name).toBe('v1');
    expect(t.seen[0].routeName).toBe('default.r.main');
  });

  test('weights: a 90/10 split over 2000 seeded draws lands within tolerance; weight 0 never', async () => {
    const t = setup([{ name: 'r', rules: [{ backends: [backend('v1', 90), backend('shadow', 0), backend('v2', 10)] }] }]);
    const n = { v1: 0, v2: 0, shadow: 0 } as Record<string, number>;
    for (let i = 0; i < 2000; i++) n[(await t.send('/')).headers['x-from'] as string]++;
    expect(n['shadow']).toBe(0);
    expect(n['v2']).toBeGreaterThan(140); // expected 200, sd ~13.4
    expect(n['v2']).toBeLessThan(260);
  });

  test.each([
    ['an invalid backend', [backend('v1', 1, { invalid: 'service not found' })], 'service not found'],
    ['an unknown service port', [backend('nosuch')], 'no service port nosuch.default:80'],
    ['all weights 0', [backend('v1', 0)], 'every backend has weight 0'],
    ['no backends', [], 'no backends'],
  ])('%s: ROUTE_BACKEND_INVALID (500, gRPC UNAVAILABLE)', async (_what, backends, detail) => {
    const t = setup([{ name: 'r', rules: [{ backends }] }]);
    const e = (await t.send('/').catch((x: unknown) => x)) as ProxyError;
    expect(e.code).toBe('ROUTE_BACKEND_INVALID');
    expect(e.message).toContain(detail);
    expect(errorResponse(e, { headers: {} }).status).toBe(500);
    expect(errorResponse(e, { headers: { 'content-type': 'application/grpc' } }).headers['grpc-status']).toBe('14');
  });

  test('request and response header modifiers, rule then backend', async () => {
    const t = setup([{
      name: 'r',
      rules: [{
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-set', value: 'rule' }], add: [{ name: 'x-add', value: 'rule' }], remove: ['x-gone'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-res', value: 'rule' }], add: [], remove: ['x-from'] } },
        ],
        backends: [backend('v1', 1, { filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-backend', value: 'v1' }], add: [], remove: [] } }] })],
      }],
    }]);
    const res = await t.send('/', { headers: { 'x-add': 'client', 'x-gone': '1', 'x-set': 'client' } });
    expect(t.seen[0].headers).toEqual({ 'x-set': 'rule', 'x-add': 'client,rule', 'x-backend': 'v1' });
    expect(res.headers).toEqual({ 'x-res': 'rule' });
  });

  test('URLRewrite: hostname and prefix; the access log keeps the original path', async () => {
    const t = setup([{ name: 'r', rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/api' } }], filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'internal', path: { type: 'ReplacePrefixMatch', value: '/v2' } } }], backends: [backend('v1')] }] }]);
    await t.send('/api/users?id=1');
    expect(t.seen[0].path).toBe('/v2/users?id=1');
    expect(t.seen[0].authority).toBe('internal');
    expect(t.seen[0].originalPath).toBe('/api/users?id=1');
  });

  test('RequestRedirect answers itself: status and Location, nothing forwarded', async () => {
    const t = setup([{ name: 'r', rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', hostname: 'example.org', statusCode: 301 } }] }] }]);
    const res = await t.send('/p?q=1');
    expect(res.status).toBe(301);
    expect(res.headers['location']).toBe('https://example.org/p?q=1');
    expect(t.seen).toHaveLength(0);
  });

  test('the rule timeouts and retry override the backend port policy, on a derived port of the same cluster', async () => {
    const t = setup([{ name: 'r', rules: [{ backends: [backend('v1')], timeouts: { requestMs: 1500, backendRequestMs: 500 }, retry: { attempts: 3, codes: [503], backoffMs: 20 } }] }]);
    await t.send('/');
    const route = t.seen[0].route!;
    const p = portPolicy(route.service, route.port);
    expect(p.timeouts.requestMs).toBe(1500);
    // backendRequest also bounds the try's full response (GEP-1742): the backendRequestTimeout layer reads it here.
    expect(p.timeouts.backendRequestMs).toBe(500);
    // GEP-1731: a rule retry also retries what never reached the app or was refused before
    // processing (connect failure, REFUSED_STREAM, gRPC UNAVAILABLE / CANCELLED, as Istio
    // compiles it) and a try that hit the backendRequest timeout.
    expect(p.retry).toMatchObject({
      perTryTimeoutMs: 500, attempts: 3, retriableStatusCodes: [503], minBackoffMs: 20,
      retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'per-try-timeout', 'retriable-status-codes'],
    });
    // Without codes: the same failures, no status.
    const noCodes = setup([{ name: 'r', rules: [{ backends: [backend('v1')], retry: { attempts: 1, codes: [], backoffMs: 0 } }] }]);
    await noCodes.send('/');
    expect(portPolicy(noCodes.seen[0].route!.service, noCodes.seen[0].route!.port).retry.retryOn).toEqual(['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'per-try-timeout']);
    expect(route.port.port).toBe(80);
    expect(route.port.endpoints).toBe(t.table.service('v1', 'default')!.ports[0].endpoints);
    // Without overrides the backend's own port object (its own policy) is used.
    const plain = setup([{ name: 'r', rules: [{ backends: [backend('v1')] }] }]);
    await plain.send('/');
    expect(plain.seen[0].route!.port).toBe(plain.table.service('v1', 'default')!.ports[0]);
  });

  test('RequestMirror: a copy goes to the mirror target with the body; its failure never reaches the request', async () => {
    const t = setup([{ name: 'r', rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backend: { name: 'shadow', namespace: 'default', port: 80 } } }], backends: [backend('v1')] }] }]);
    let mirrored = '';
    t.setAnswer(async (req) => {
      const chunks: Buffer[] = [];
      for await (const c of req.body ?? []) chunks.push(c as Buffer);
      if (req.route!.service.name === 'shadow') {
        mirrored = Buffer.concat(chunks).toString();
        throw new ProxyError('CONNECT_REFUSED');
      }
      return { status: 200, headers: { body: Buffer.concat(chunks).toString() }, body: null, trailers: () => undefined };
    });
    const res = await t.send('/', { method: 'POST', body: Readable.from([Buffer.from('hello '), Buffer.from('world')]) });
    expect(res.status).toBe(200);
    expect(res.headers['body']).toBe('hello world');
    await new Promise((r) => setImmediate(r));
    const copy = t.seen.find((r) => r.route!.service.name === 'shadow');
    expect(copy).toBeDefined();
    expect(mirrored).toBe('hello world');
    expect(t.mirrors).toEqual(['failed']);
  });

  test('RequestMirror: a body over the bound is not mirrored (counted); a hung mirror times out', async () => {
    const t = setup([{ name: 'r', rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backend: { name: 'shadow', namespace: 'default', port: 80 } } }], backends: [backend('v1')] }] }], { mirrorMax: 4 });
    t.setAnswer(async (req) => {
      for await (const _ of req.body ?? []) void _;
      if (req.route!.service.name === 'shadow') return new Promise(() => undefined);
      return { status: 200, headers: {}, body: null, trailers: () => undefined };
    });
    await t.send('/', { method: 'POST', body: Readable.from([Buffer.from('too long')]) });
    await new Promise((r) => setImmediate(r));
    expect(t.mirrors).toEqual(['body-too-large']);
    await t.send('/');
    expect(t.mirrors).toEqual(['body-too-large']);
    t.clock.advance(10_000);
    await new Promise((r) => setImmediate(r));
    expect(t.mirrors).toEqual(['body-too-large', 'timeout']);
  });

  test('RequestMirror: an upgrade is not mirrored (counted upgrade); a mirror response still streaming at the timeout is cut (ADV5-13)', async () => {
    const t = setup([{ name: 'r', rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backend: { name: 'shadow', namespace: 'default', port: 80 } } }], backends: [backend('v1')] }] }]);
    const tunnel = new PassThrough();
    t.setAnswer(async (req) => ({ status: req.route!.service.name === 'shadow' ? 200 : 101, headers: {}, body: req.route!.service.name === 'shadow' ? tunnel : null, trailers: () => undefined }));
    await t.send('/ws', { upgrade: 'websocket' });
    await new Promise((r) => setImmediate(r));
    expect({ mirrors: t.mirrors, toShadow: t.seen.filter((r) => r.route!.service.name === 'shadow').length }).toEqual({ mirrors: ['upgrade'], toShadow: 0 });
    // A plain request whose mirror answers with a body that never ends: cut at the mirror's timeout.
    await t.send('/');
    await new Promise((r) => setImmediate(r));
    t.clock.advance(10_000);
    await new Promise((r) => setImmediate(r));
    expect({ mirrors: t.mirrors, cut: tunnel.destroyed }).toEqual({ mirrors: ['upgrade', 'timeout'], cut: true });
  });

  test('a request pinned to one endpoint (a pod IP) is not routed by rules', async () => {
    const t = setup([{ name: 'r', rules: [{ matches: [{ path: { type: 'Exact', value: '/only' } }], backends: [backend('v1')] }] }]);
    const route = t.table.byAuthority('web')!;
    const res = await routeRules({ routes: () => t.table, random: Math.random, mirror: { clock: t.clock, random: Math.random, count: () => undefined } })(async (req) => ({ status: 200, headers: { to: req.route!.service.name }, body: null, trailers: () => undefined }))({
      method: 'GET', scheme: 'http', authority: 'x', path: '/other', headers: {}, body: null, trailers: () => undefined, origProto: 'HTTP/1.1',
      source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
      route: { ...route, endpoint: { address: '10.0.0.1', port: 80, proxyPort: null, identity: '', weight: 1, zone: '', ready: true } },
    });
    expect(res.headers['to']).toBe('web');
  });
});
