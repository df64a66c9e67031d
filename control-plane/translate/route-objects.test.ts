import { ConfigError } from '../../common/schema.js';
import { parseGrpcRoute, parseHttpRoute, parseReferenceGrant } from './route-objects.js';

const parent = { group: '', kind: 'Service', name: 'reviews' };
const route = (rules: unknown[], extra: Record<string, unknown> = {}) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'shop' }, spec: { parentRefs: [parent], rules, ...extra },
});
const backend = { name: 'reviews', port: 9080 };
const errorOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return `${e.path}: ${e.problem}`;
    throw e;
  }
  return 'no error';
};
const httpError = (rules: unknown[], extra?: Record<string, unknown>) => errorOf(() => parseHttpRoute(route(rules, extra), ''));

test('a valid HTTPRoute: defaults filled (parentRef namespace, weight 1, path match type), header names lower-cased, hostnames accepted', () => {
  const r = parseHttpRoute(route([{ matches: [{ path: { value: '/api' }, headers: [{ name: 'X-User', value: 'a' }, { name: 'x-user', value: 'b' }] }], backendRefs: [backend] }], { hostnames: ['reviews.example.com'] }), '');
  expect(r.parentRefs[0]).toMatchObject({ group: '', kind: 'Service', name: 'reviews', namespace: 'shop' });
  expect(r.rules[0].matches[0]).toEqual({ path: { type: 'PathPrefix', value: '/api' }, headers: [{ type: 'Exact', name: 'x-user', value: 'a' }], queryParams: [] });
  expect(r.rules[0].backendRefs[0]).toMatchObject({ name: 'reviews', namespace: 'shop', port: 9080, weight: 1, group: '', kind: 'Service' });
  // The CRD's default: one rule matching PathPrefix "/".
  expect(parseHttpRoute({ ...route([]), spec: { parentRefs: [parent] } }, '').rules).toHaveLength(1);
});

test.each([
  ['path without leading /', [{ matches: [{ path: { type: 'Exact', value: 'api' } }], backendRefs: [backend] }], 'spec.rules[0].matches[0].path.value: value must be an absolute path'],
  ['path with //', [{ matches: [{ path: { value: '/a//b' } }], backendRefs: [backend] }], "spec.rules[0].matches[0].path.value: must not contain '//'"],
  ['path ending /..', [{ matches: [{ path: { value: '/a/..' } }], backendRefs: [backend] }], "spec.rules[0].matches[0].path.value: must not end with '/..'"],
  ['regex that does not compile', [{ matches: [{ path: { type: 'RegularExpression', value: '(' } }], backendRefs: [backend] }], 'spec.rules[0].matches[0].path.value: regular expression does not compile'],
  ['header regex that does not compile', [{ matches: [{ headers: [{ type: 'RegularExpression', name: 'x', value: '[' }] }], backendRefs: [backend] }], 'spec.rules[0].matches[0].headers[0].value: regular expression'],
  ['bad header name', [{ matches: [{ headers: [{ name: 'x y', value: 'a' }] }], backendRefs: [backend] }], 'spec.rules[0].matches[0].headers[0].name: expected to match'],
  ['bad method', [{ matches: [{ method: 'FETCH' }], backendRefs: [backend] }], 'spec.rules[0].matches[0].method: expected one of'],
  ['weight over 1000000', [{ backendRefs: [{ ...backend, weight: 1_000_001 }] }], 'spec.rules[0].backendRefs[0].weight: expected a number in 0..1000000'],
  ['Service backend without port', [{ backendRefs: [{ name: 'reviews' }] }], 'spec.rules[0].backendRefs[0].port: must be specified for a Service reference'],
  ['redirect with backendRefs', [{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 301 } }], backendRefs: [backend] }], 'spec.rules[0].filters: RequestRedirect filter must not be used together with backendRefs'],
  ['redirect status 304', [{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 304 } }] }], 'spec.rules[0].filters[0].requestRedirect.statusCode: expected one of 301, 302, 303, 307, 308'],
  ['ReplacePrefixMatch with an Exact match', [{ matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }], backendRefs: [backend] }], 'spec.rules[0].filters: when using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match'],
  ['ReplacePrefixMatch in a backend filter with two matches', [{ matches: [{ path: { value: '/a' } }, { path: { value: '/c' } }], backendRefs: [{ ...backend, filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }] }] }], 'spec.rules[0].backendRefs[0].filters: when using URLRewrite'],
  ['path modifier field not matching its type', [{ filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replacePrefixMatch: '/b' } } }], backendRefs: [backend] }], 'spec.rules[0].filters[0].urlRewrite.path.replaceFullPath: must be specified'],
  ['filter field for another type', [{ filters: [{ type: 'RequestHeaderModifier', urlRewrite: {} }], backendRefs: [backend] }], 'spec.rules[0].filters[0].urlRewrite: must be nil if the filter type is not URLRewrite'],
  ['filter without its field', [{ filters: [{ type: 'RequestHeaderModifier' }], backendRefs: [backend] }], 'spec.rules[0].filters[0].requestHeaderModifier: must be specified'],
  ['repeated RequestHeaderModifier', [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: {} }, { type: 'RequestHeaderModifier', requestHeaderModifier: {} }], backendRefs: [backend] }], 'spec.rules[0].filters: RequestHeaderModifier filter cannot be repeated'],
  ['redirect and rewrite together', [{ filters: [{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }] }], 'spec.rules[0].filters: may specify either RequestRedirect or URLRewrite'],
  ['mirror percent and fraction', [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, percent: 5, fraction: { numerator: 1 } } }], backendRefs: [backend] }], 'spec.rules[0].filters[0].requestMirror: only one of percent or fraction'],
  ['unknown filter type', [{ filters: [{ type: 'Teleport' }], backendRefs: [backend] }], 'spec.rules[0].filters[0].type: expected one of'],
  ['bad timeout', [{ timeouts: { request: '10 s' }, backendRefs: [backend] }], 'spec.rules[0].timeouts.request: expected a Gateway API duration'],
  ['backendRequest above request', [{ timeouts: { request: '1s', backendRequest: '2s' }, backendRefs: [backend] }], 'spec.rules[0].timeouts.backendRequest: backendRequest timeout cannot be longer than request timeout'],
  ['a typo', [{ backendRef: [backend] }], 'spec.rules[0].backendRef: unknown field'],
])('rejected with its field path: %s', (_name, rules, want) => {
  expect(httpError(rules)).toContain(want);
});

test('parentRefs to one parent: all with a sectionName or none, and no two alike; at most 128 matches in all', () => {
  const refs = (parentRefs: unknown[]) => errorOf(() => parseHttpRoute({ ...route([{ backendRefs: [backend] }]), spec: { parentRefs, rules: [{ backendRefs: [backend] }] } }, ''));
  expect(refs([parent, { ...parent, sectionName: 'http' }])).toBe('spec.parentRefs: sectionName must be specified when parentRefs includes 2 or more references to the same parent');
  expect(refs([{ ...parent, port: 80 }, { ...parent, port: 81 }])).toBe('spec.parentRefs[1]: sectionName must be unique when parentRefs includes 2 or more references to the same parent');
  expect(refs([{ ...parent, sectionName: 'a' }, { ...parent, sectionName: 'b' }, { ...parent, name: 'other' }])).toBe('no error');
  // Same name, but one names its namespace: different parents for the CRD's rule.
  expect(refs([parent, { ...parent, namespace: 'shop' }])).toBe('no error');
  const many = Array.from({ length: 3 }, () => ({ matches: Array.from({ length: 43 }, () => ({ path: { value: '/' } })), backendRefs: [backend] }));
  expect(httpError(many)).toBe('spec.rules: at most 128 matches across all rules, got 129');
  expect(httpError([{ filters: [{ type: 'CORS', cors: { allowOrigins: ['*', 'https://a.example'] } }], backendRefs: [backend] }])).toBe("spec.rules[0].filters[0].cors.allowOrigins: allowOrigins cannot contain '*' alongside other values");
});

test('backendRequest may exceed a request timeout of 0s (disabled); fractions become percents', () => {
  const r = parseHttpRoute(route([{ timeouts: { request: '0s', backendRequest: '2s' }, filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, fraction: { numerator: 1, denominator: 8 } } }], backendRefs: [backend] }]), '');
  expect(r.rules[0].timeouts).toEqual({ requestMs: 2_147_483_647, backendRequestMs: 2000 });
  expect(r.rules[0].filters[0]).toMatchObject({ type: 'RequestMirror', requestMirror: { percent: 12.5 } });
});

test('GRPCRoute: method matches validated (at least one of service/method; names; regex compiles); no HTTP-only filters', () => {
  const g = (rules: unknown[]) => errorOf(() => parseGrpcRoute({ kind: 'GRPCRoute', metadata: { name: 'g' }, spec: { parentRefs: [parent], rules } }, ''));
  expect(g([{ matches: [{ method: {} }], backendRefs: [backend] }])).toContain('spec.rules[0].matches[0].method: one or both of service or method must be specified');
  expect(g([{ matches: [{ method: { service: 'bad service' } }], backendRefs: [backend] }])).toContain('spec.rules[0].matches[0].method.service');
  expect(g([{ matches: [{ method: { type: 'RegularExpression', method: '(' } }], backendRefs: [backend] }])).toContain('spec.rules[0].matches[0].method.method: regular expression');
  expect(g([{ filters: [{ type: 'URLRewrite', urlRewrite: {} }], backendRefs: [backend] }])).toContain('spec.rules[0].filters[0].type: expected one of');
  expect(g([{ matches: [{ method: { service: 'a.B', method: 'Get' } }], backendRefs: [backend] }])).toBe('no error');
});

test('ReferenceGrant: from and to required', () => {
  expect(errorOf(() => parseReferenceGrant({ kind: 'ReferenceGrant', metadata: { name: 'g' }, spec: { from: [] , to: [{ group: '', kind: 'Service' }] } }, ''))).toContain('spec.from: expected at least 1');
  expect(parseReferenceGrant({ kind: 'ReferenceGrant', metadata: { name: 'g', namespace: 'shop' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'a' }], to: [{ group: '', kind: 'Service' }] } }, '').to).toEqual([{ group: '', kind: 'Service', name: '' }]);
});
