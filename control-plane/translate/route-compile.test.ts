import { compileRoutes, routesFor, type ServicePortsLookup } from './route-compile.js';
import { parseGrpcRoute, parseHttpRoute, parseReferenceGrant, type KReferenceGrant, type KRoute } from './route-objects.js';

const svc = (ports: [string, number][]) => ({ ports: ports.map(([name, port]) => ({ name, port })) });
const SERVICES: Record<string, ReturnType<typeof svc>> = {
  'shop/reviews': svc([['http', 9080], ['admin', 9090]]),
  'shop/reviews-v1': svc([['http', 9080]]),
  'shop/reviews-v2': svc([['http', 9080]]),
  'batch/local': svc([['http', 8080]]),
  'shop/catalog': svc([['grpc', 50051]]),
};
const lookup: ServicePortsLookup = (ns, name) => SERVICES[`${ns}/${name}`];

const SERVICE_PARENT = { group: '', kind: 'Service', name: 'reviews', namespace: 'shop' };
function http(name: string, ns: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z', generation = 1): KRoute {
  return parseHttpRoute({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: ns, creationTimestamp: created, generation }, spec }, '');
}
const toV1 = (port = 9080) => ({ rules: [{ backendRefs: [{ name: 'reviews-v1', namespace: 'shop', port }] }] });
const grant = (from: string, toName?: string): KReferenceGrant =>
  parseReferenceGrant({
    apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name: `from-${from}`, namespace: 'shop' },
    spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: from }], to: [{ group: '', kind: 'Service', ...(toName ? { name: toName } : {}) }] },
  }, '');
const conditions = (c: ReturnType<typeof compileRoutes>, key: string) =>
  Object.fromEntries(c.statuses.get(key)!.parents[0].conditions.map((x) => [x.type, `${x.status} ${x.reason}`]));

test('producer routes for everyone; a consumer namespace gets only its own routes; routes in a third namespace are ignored (GEP-1294)', () => {
  const producer = http('prod', 'shop', { parentRefs: [SERVICE_PARENT], ...toV1() });
  const consumer = http('cons', 'batch', { parentRefs: [SERVICE_PARENT], rules: [{ backendRefs: [{ name: 'local', port: 8080 }] }] });
  const c = compileRoutes([producer, consumer], [], lookup);
  expect(routesFor(c.view, 'reviews.shop', 'shop').map((r) => r.name)).toEqual(['prod']);
  expect(routesFor(c.view, 'reviews.shop', 'web').map((r) => r.name)).toEqual(['prod']);
  expect(routesFor(c.view, 'reviews.shop', 'batch').map((r) => r.name)).toEqual(['cons']);
  expect([...c.view.consumerNamespaces]).toEqual(['batch']);
  expect(conditions(c, 'HTTPRoute/batch/cons')).toEqual({ Accepted: 'True Accepted', ResolvedRefs: 'True ResolvedRefs' });
  // A consumer route with a backend it may not reference still replaces the producer routes there (and the backend gets 500s).
  const c2 = compileRoutes([producer, http('cons', 'batch', { parentRefs: [SERVICE_PARENT], ...toV1() })], [], lookup);
  expect(routesFor(c2.view, 'reviews.shop', 'batch')[0].rules[0].backends[0].invalid).toBe('RefNotPermitted');
});

test('ties: oldest creationTimestamp first, then namespace/name', () => {
  const a = http('b-route', 'shop', { parentRefs: [SERVICE_PARENT], ...toV1() }, '2026-01-02T00:00:00Z');
  const b = http('a-route', 'shop', { parentRefs: [SERVICE_PARENT], ...toV1() }, '2026-01-02T00:00:00Z');
  const old = http('z-route', 'shop', { parentRefs: [SERVICE_PARENT], ...toV1() }, '2025-12-31T00:00:00Z');
  expect(routesFor(compileRoutes([a, b, old], [], lookup).view, 'reviews.shop', 'x').map((r) => r.name)).toEqual(['z-route', 'a-route', 'b-route']);
});

test('parentRef port and sectionName become `ports`; none = every port; a port the Service lacks is NoMatchingParent', () => {
  const c = compileRoutes(
    [
      http('by-port', 'shop', { parentRefs: [{ ...SERVICE_PARENT, port: 9090 }], ...toV1() }),
      http('by-name', 'shop', { parentRefs: [{ ...SERVICE_PARENT, sectionName: 'http' }], ...toV1() }),
      http('all', 'shop', { parentRefs: [SERVICE_PARENT], ...toV1() }),
      http('nope', 'shop', { parentRefs: [{ ...SERVICE_PARENT, port: 1234 }], ...toV1() }),
      http('ghost', 'shop', { parentRefs: [{ ...SERVICE_PARENT, name: 'ghost' }], ...toV1() }),
    ],
    [], lookup,
  );
  expect(routesFor(c.view, 'reviews.shop', 'x').map((r) => [r.name, r.ports])).toEqual([['all', []], ['by-name', [9080]], ['by-port', [9090]]]);
  expect(conditions(c, 'HTTPRoute/shop/nope').Accepted).toBe('False NoMatchingParent');
  expect(conditions(c, 'HTTPRoute/shop/ghost').Accepted).toBe('False NoMatchingParent');
  expect(c.view.byService.has('ghost.shop')).toBe(false);
});

test('routes whose parents are all Gateways are not the mesh\'s: no routes, no status', () => {
  const gw = http('gw', 'shop', { parentRefs: [{ name: 'ingress' }], ...toV1() });
  const c = compileRoutes([gw], [], lookup);
  expect(c.view.byService.size).toBe(0);
  expect(c.statuses.size).toBe(0);
});

test('backendRefs: InvalidKind, BackendNotFound (no Service, no port), RefNotPermitted until a ReferenceGrant allows it', () => {
  const route = (backend: Record<string, unknown>) => http('r', 'batch', { parentRefs: [SERVICE_PARENT], rules: [{ backendRefs: [backend] }] });
  const first = (c: ReturnType<typeof compileRoutes>) => routesFor(c.view, 'reviews.shop', 'batch')[0].rules[0].backends[0];
  const kind = compileRoutes([route({ group: 'example.com', kind: 'Bucket', name: 'b' })], [], lookup);
  expect(first(kind).invalid).toBe('InvalidKind');
  expect(conditions(kind, 'HTTPRoute/batch/r')).toEqual({ Accepted: 'True Accepted', ResolvedRefs: 'False InvalidKind' });
  expect(first(compileRoutes([route({ name: 'missing', port: 80 })], [], lookup)).invalid).toBe('BackendNotFound');
  const noPort = compileRoutes([route({ name: 'local', port: 81 })], [], lookup);
  expect(first(noPort).invalid).toBe('BackendNotFound');
  expect(conditions(noPort, 'HTTPRoute/batch/r').ResolvedRefs).toMatch(/^False BackendNotFound/);
  const cross = route({ name: 'reviews-v1', namespace: 'shop', port: 9080 });
  expect(first(compileRoutes([cross], [], lookup)).invalid).toBe('RefNotPermitted');
  expect(first(compileRoutes([cross], [grant('web')], lookup)).invalid).toBe('RefNotPermitted');
  expect(first(compileRoutes([cross], [grant('batch', 'reviews-v2')], lookup)).invalid).toBe('RefNotPermitted');
  expect(first(compileRoutes([cross], [grant('batch', 'reviews-v1')], lookup))).toEqual({ name: 'reviews-v1', namespace: 'shop', port: 9080, weight: 1, filters: [], invalid: '' });
  expect(first(compileRoutes([cross], [grant('batch')], lookup)).invalid).toBe('');
});

test('a rule: default match, weights, filters, mirrors (an unresolved mirror is dropped), timeouts in ms ("0s" = the longest), retry', () => {
  const c = compileRoutes(
    [
      http('r', 'shop', {
        parentRefs: [SERVICE_PARENT],
        rules: [
          {
            name: 'split',
            filters: [
              { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }] } },
              { type: 'RequestMirror', requestMirror: { backendRef: { name: 'reviews-v2', port: 9080 }, percent: 25 } },
              { type: 'RequestMirror', requestMirror: { backendRef: { name: 'gone', port: 9080 } } },
            ],
            backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 90 }, { name: 'reviews-v2', port: 9080, weight: 0 }],
            timeouts: { request: '1m30s', backendRequest: '0s' },
            retry: { attempts: 3, codes: [503], backoff: '100ms' },
          },
        ],
      }),
    ],
    [], lookup,
  );
  const rule = routesFor(c.view, 'reviews.shop', 'x')[0].rules[0];
  expect(rule).toEqual({
    name: 'split',
    matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
    filters: [
      { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }], add: [], remove: [] } },
      { type: 'RequestMirror', requestMirror: { backend: { name: 'reviews-v2', namespace: 'shop', port: 9080 }, percent: 25 } },
    ],
    backends: [
      { name: 'reviews-v1', namespace: 'shop', port: 9080, weight: 90, filters: [], invalid: '' },
      { name: 'reviews-v2', namespace: 'shop', port: 9080, weight: 0, filters: [], invalid: '' },
    ],
    // backendRequest "0s" (disabled) under a 1m30s request: a try lasts at most the request.
    timeouts: { requestMs: 90_000, backendRequestMs: 90_000 },
    retry: { attempts: 3, codes: [503], backoffMs: 100 },
  });
  expect(conditions(c, 'HTTPRoute/shop/r').ResolvedRefs).toBe('False BackendNotFound');
});

test('GRPCRoute: kind GRPCRoute, grpc matches, no match = any method', () => {
  const g = parseGrpcRoute({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'cat', namespace: 'shop' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'catalog' }],
      rules: [{ matches: [{ method: { service: 'catalog.v1.Catalog', method: 'Search' }, headers: [{ name: 'X-Env', value: 'canary' }] }], backendRefs: [{ name: 'catalog', port: 50051 }] }, { backendRefs: [{ name: 'catalog', port: 50051 }] }],
    },
  }, '');
  const [r] = routesFor(compileRoutes([g], [], lookup).view, 'catalog.shop', 'x');
  expect(r.kind).toBe('GRPCRoute');
  expect(r.rules[0].matches).toEqual([{ grpc: { type: 'Exact', service: 'catalog.v1.Catalog', method: 'Search' }, headers: [{ type: 'Exact', name: 'x-env', value: 'canary' }], queryParams: [] }]);
  expect(r.rules[1].matches).toEqual([{ headers: [], queryParams: [] }]);
});

test('an ExtensionRef (or CORS) filter: Accepted=False UnsupportedValue and the route is not in force', () => {
  const ext = http('ext', 'shop', {
    parentRefs: [SERVICE_PARENT],
    rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'wren.io', kind: 'Fault', name: 'f' } }], ...toV1().rules[0] }],
  }, '2026-01-01T00:00:00Z', 7);
  const c = compileRoutes([ext], [], lookup);
  expect(c.view.byService.size).toBe(0);
  const st = c.statuses.get('HTTPRoute/shop/ext')!.parents[0];
  expect(st.controllerName).toBe('wren.io/mesh');
  expect(st.parentRef).toEqual(SERVICE_PARENT);
  expect(st.conditions[0]).toMatchObject({ type: 'Accepted', status: 'False', reason: 'UnsupportedValue', observedGeneration: 7 });
  expect(st.conditions[0].message).toContain('ExtensionRef');
  const cors = http('cors', 'shop', { parentRefs: [SERVICE_PARENT], rules: [{ filters: [{ type: 'CORS', cors: { allowOrigins: ['*'] } }], ...toV1().rules[0] }] });
  expect(conditions(compileRoutes([cors], [], lookup), 'HTTPRoute/shop/cors').Accepted).toBe('False UnsupportedValue');
});

test('two parentRefs to one Service (by sectionName, as the CRD requires) add up their ports', () => {
  const c = compileRoutes([http('two', 'shop', { parentRefs: [{ ...SERVICE_PARENT, sectionName: 'http' }, { ...SERVICE_PARENT, sectionName: 'admin' }], ...toV1() })], [], lookup);
  expect(routesFor(c.view, 'reviews.shop', 'x').map((r) => r.ports)).toEqual([[9080, 9090]]);
  expect(c.statuses.get('HTTPRoute/shop/two')!.parents).toHaveLength(2);
});

describe('one validator: a route the proxies would refuse is not pushed (ADV5-1)', () => {
  const good = http('r', 'shop', { parentRefs: [SERVICE_PARENT], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/api/.*' } }], ...toV1().rules[0] }] });
  // Valid for the CRD and the control plane's object parser (maxLength only), but a header value outside Latin-1: every proxy's route parser refuses it.
  const latin1 = http('r', 'shop', { parentRefs: [SERVICE_PARENT], rules: [{ matches: [{ headers: [{ name: 'x-user', value: 'Zoë 张' }] }], ...toV1().rules[0] }] }, undefined, 2);
  const setHost = http('h', 'shop', { parentRefs: [SERVICE_PARENT], rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'Host', value: 'x' }] } }], ...toV1().rules[0] }] });

  test('Accepted=False UnsupportedValue naming the field, not in the view, reported as refused', () => {
    const c = compileRoutes([latin1, setHost], [], lookup);
    expect(routesFor(c.view, 'reviews.shop', 'web')).toEqual([]);
    expect(conditions(c, 'HTTPRoute/shop/r')).toEqual({ Accepted: 'False UnsupportedValue', ResolvedRefs: 'True ResolvedRefs' });
    const accepted = c.statuses.get('HTTPRoute/shop/r')!.parents[0].conditions[0];
    expect(accepted.message).toContain('rules[0].matches[0].headers[0].value: a header value takes visible characters, spaces and tabs (RFC 9110 section 5.5), got U+5F20 at character 5 of 5');
    expect(accepted.observedGeneration).toBe(2);
    expect(c.statuses.get('HTTPRoute/shop/h')!.parents[0].conditions[0].message).toContain('requestHeaderModifier.set[0].name: host cannot be modified');
    expect([...c.refused.keys()]).toEqual(['HTTPRoute/shop/h', 'HTTPRoute/shop/r']);
    expect([...c.accepted.keys()]).toEqual([]);
  });

  test.each([
    ['URLRewrite ReplaceFullPath with a control character', { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/a\x01b' } } }, 'urlRewrite.path.value: character 2 (U+0001)'],
    ['URLRewrite ReplacePrefixMatch with DEL', { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2\x7f' } } }, 'urlRewrite.path.value: character 3 (U+007F)'],
    ['URLRewrite with non-ASCII text', { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/café' } } }, 'urlRewrite.path.value: character 4 (U+00E9)'],
    ['RequestRedirect ReplaceFullPath with a space', { type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/a b' } } }, 'requestRedirect.path.value: character 2 (U+0020)'],
  ])('a path the CRD takes (maxLength only) and no request-target can carry: %s (adv10 F2)', (_, filter, message) => {
    // Valid for the CRD and the control plane's object parser; before, Accepted=True, and every request the rule took failed.
    const backendRefs = filter.type === 'RequestRedirect' ? [] : toV1().rules[0].backendRefs;
    const bad = http('r', 'shop', { parentRefs: [SERVICE_PARENT], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/api' } }], filters: [filter], backendRefs }] }, undefined, 3);
    const first = compileRoutes([good], [], lookup);
    const c = compileRoutes([bad], [], lookup, first.accepted);
    expect(conditions(c, 'HTTPRoute/shop/r')).toEqual({ Accepted: 'False UnsupportedValue', ResolvedRefs: 'True ResolvedRefs' });
    const accepted = c.statuses.get('HTTPRoute/shop/r')!.parents[0].conditions[0];
    expect(accepted.message).toContain(`rules[0].filters[0].${message}`);
    expect(accepted.message).toContain('its last accepted version stays in force');
    expect(routesFor(c.view, 'reviews.shop', 'web')[0].rules[0].filters).toEqual([]);
  });

  test('the last accepted version stays in force while the new one is refused; a fixed one replaces it', () => {
    const first = compileRoutes([good], [], lookup);
    expect(first.refused.size).toBe(0);
    expect(first.accepted.get('HTTPRoute/shop/r')).toBe(good);
    const bad = compileRoutes([latin1], [], lookup, first.accepted);
    expect(routesFor(bad.view, 'reviews.shop', 'web')[0].rules[0].matches[0]).toMatchObject({ path: { type: 'RegularExpression', value: '/api/.*' }, headers: [] });
    expect(bad.statuses.get('HTTPRoute/shop/r')!.parents[0].conditions[0].message).toContain('its last accepted version stays in force');
    expect(bad.accepted.get('HTTPRoute/shop/r')).toBe(good);
    // Deleted: nothing kept.
    expect(compileRoutes([], [], lookup, bad.accepted).view.byService.size).toBe(0);
  });
});
