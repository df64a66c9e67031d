import { parseService } from '../../contract/parse.js';
import type { Service } from '../../contract/model.js';
import { compilePortRouting, pickBackend, type PortRouting } from './port-routing.js';

/** One rule per entry, each to its own backend service `b<i>` so the winner is visible. */
function routing(kind: 'HTTPRoute' | 'GRPCRoute', routes: readonly (readonly Record<string, unknown>[])[], ports: readonly number[][] = []): PortRouting {
  const backends = new Set<number>();
  let n = 0;
  const raw = routes.map((rules, i) => ({
    kind, name: `r${i}`, namespace: 'default', ports: ports[i] ?? [],
    rules: rules.map((r) => {
      const id = n++;
      backends.add(id);
      return { name: `k${id}`, matches: r['matches'] ?? [r], backends: [{ name: `b${id}`, namespace: 'default', port: 80 }] };
    }),
  }));
  const svc = parseService({ name: 'web', ports: [{ port: 80 }, { port: 81 }], routes: raw }, 'svc');
  const all: Service[] = [svc, ...[...backends].map((i) => parseService({ name: `b${i}`, ports: [{ port: 80 }] }, 'b'))];
  const pr = compilePortRouting(svc, svc.ports[0], (name) => all.find((s) => s.name === name));
  if (!pr) throw new Error('no routing');
  return pr;
}

const winner = (pr: PortRouting, path: string, o: { method?: string; headers?: Record<string, string>; grpc?: boolean; authority?: string } = {}): string | null =>
  pr.matcher.match({ method: o.method ?? 'GET', path, headers: o.headers ?? {}, authority: o.authority ?? 'web' }, o.grpc ?? false)?.rule.rule.name ?? null;

describe('route matcher: HTTPRoute precedence (HTTPRouteRule.matches, v1.6.1)', () => {
  test('Exact beats any prefix; the longest prefix beats shorter ones, whatever the order given', () => {
    const pr = routing('HTTPRoute', [[{ path: { type: 'PathPrefix', value: '/' } }, { path: { type: 'PathPrefix', value: '/foo' } }, { path: { type: 'PathPrefix', value: '/foo/bar' } }, { path: { type: 'Exact', value: '/foo/bar/baz' } }]]);
    expect(winner(pr, '/foo/bar/baz')).toBe('k3');
    expect(winner(pr, '/foo/bar/baz/x')).toBe('k2');
    expect(winner(pr, '/foo/x?q=1')).toBe('k1');
    expect(winner(pr, '/other')).toBe('k0');
  });

  test('PathPrefix matches whole segments; a trailing / in the prefix is ignored', () => {
    const pr = routing('HTTPRoute', [[{ path: { type: 'PathPrefix', value: '/foo' } }, { path: { type: 'PathPrefix', value: '/abc/' } }]]);
    expect(winner(pr, '/foo')).toBe('k0');
    expect(winner(pr, '/foo/')).toBe('k0');
    expect(winner(pr, '/foo/bar')).toBe('k0');
    expect(winner(pr, '/foo?x=1')).toBe('k0');
    expect(winner(pr, '/foobar')).toBeNull();
    expect(winner(pr, '/abc')).toBe('k1');
    expect(winner(pr, '/abcd')).toBeNull();
  });

  test('Exact compares the path without its query', () => {
    const pr = routing('HTTPRoute', [[{ path: { type: 'Exact', value: '/a' } }]]);
    expect(winner(pr, '/a?b=c')).toBe('k0');
    expect(winner(pr, '/a/')).toBeNull();
    expect(winner(pr, '/ab')).toBeNull();
  });

  test('RegularExpression (full match) ranks between Exact and PathPrefix, longer pattern first', () => {
    const pr = routing('HTTPRoute', [[{ path: { type: 'PathPrefix', value: '/v1' } }, { path: { type: 'RegularExpression', value: '/v1/.*' } }, { path: { type: 'RegularExpression', value: '/v1/[a-z]+/x' } }, { path: { type: 'Exact', value: '/v1/a/x' } }]]);
    expect(winner(pr, '/v1/a/x')).toBe('k3');
    expect(winner(pr, '/v1/b/x')).toBe('k2');
    expect(winner(pr, '/v1/1')).toBe('k1');
    expect(winner(pr, '/v1')).toBe('k0');
    // Full match: a regex is not a search.
    expect(winner(routing('HTTPRoute', [[{ path: { type: 'RegularExpression', value: '/v\\d' } }]]), '/v1/more')).toBeNull();
  });

  test('same path: method > more headers > more query params', () => {
    const pr = routing('HTTPRoute', [[
      { path: { type: 'PathPrefix', value: '/' }, queryParams: [{ name: 'a', value: '1' }, { name: 'b', value: '2' }] },
      { path: { type: 'PathPrefix', value: '/' }, headers: [{ name: 'x', value: '1' }, { name: 'y', value: '2' }] },
      { path: { type: 'PathPrefix', value: '/' }, headers: [{ name: 'x', value: '1' }] },
      { path: { type: 'PathPrefix', value: '/' }, method: 'POST' },
    ]]);
    const h = { x: '1', y: '2' };
    expect(winner(pr, '/?a=1&b=2', { method: 'POST', headers: h })).toBe('k3');
    expect(winner(pr, '/?a=1&b=2', { headers: h })).toBe('k1');
    expect(winner(pr, '/?a=1&b=2', { headers: { x: '1' } })).toBe('k2');
    expect(winner(pr, '/?a=1&b=2')).toBe('k0');
    expect(winner(pr, '/?a=1&b=3')).toBeNull();
  });

  test('ties: the first route given (oldest, then namespace/name), then the first rule', () => {
    const pr = routing('HTTPRoute', [[{ path: { type: 'PathPrefix', value: '/a' } }, { path: { type: 'PathPrefix', value: '/a' } }], [{ path: { type: 'PathPrefix', value: '/a' } }, { path: { type: 'PathPrefix', value: '/ab' } }]]);
    expect(winner(pr, '/a')).toBe('k0');
    expect(winner(pr, '/ab')).toBe('k3');
  });

  test('header values: exact (names case-insensitive) and regex; query: the first value of a repeated parameter', () => {
    const pr = routing('HTTPRoute', [[{ headers: [{ name: 'X-Version', value: 'v2' }] }, { headers: [{ type: 'RegularExpression', name: 'x-version', value: 'v[0-9]+' }] }, { queryParams: [{ name: 'k', value: 'a' }] }]]);
    expect(winner(pr, '/', { headers: { 'x-version': 'v2' } })).toBe('k0');
    expect(winner(pr, '/', { headers: { 'x-version': 'v10' } })).toBe('k1');
    expect(winner(pr, '/?k=a&k=b')).toBe('k2');
    expect(winner(pr, '/?k=b&k=a')).toBeNull();
  });

  test('a header match on Host (any case) reads the request authority, which is never among the headers (adv10 F3)', () => {
    const pr = routing('HTTPRoute', [[
      { headers: [{ name: 'Host', value: 'web.shop' }] },
      { headers: [{ type: 'RegularExpression', name: 'HOST', value: 'web(:80)?' }] },
      { path: { type: 'PathPrefix', value: '/' } },
    ]]);
    expect(winner(pr, '/', { authority: 'web.shop' })).toBe('k0');
    expect(winner(pr, '/', { authority: 'web:80' })).toBe('k1');
    expect(winner(pr, '/', { authority: 'web' })).toBe('k1');
    expect(winner(pr, '/', { authority: 'other' })).toBe('k2');
    // No authority (HTTP/1.0 without Host): no Host to match; a `host` among the headers does not stand in for it.
    expect(winner(pr, '/', { authority: '', headers: { host: 'web.shop' } })).toBe('k2');
    // The explanation (/debug/route) says the same.
    const ex = pr.matcher.explain({ method: 'GET', path: '/', headers: {}, authority: 'other' }, false);
    expect(ex.results.map((r) => r.mismatch)).toEqual(['header host', 'header host', null]);
  });

  // adv9 D6: req.headers[name] found Object.prototype's `constructor` (TypeError: raw.join) on every request without it.
  test.each(['constructor', '__proto__'])('a header match on %s reads the request\'s own field only', (name) => {
    const pr = routing('HTTPRoute', [[{ headers: [{ name, value: 'x' }] }, { headers: [{ type: 'RegularExpression', name, value: '.*' }] }, { path: { type: 'PathPrefix', value: '/' } }]]);
    const own = (v: string) => Object.defineProperty({}, name, { value: v, enumerable: true }) as Record<string, string>;
    expect(winner(pr, '/')).toBe('k2');
    expect(winner(pr, '/', { headers: own('x') })).toBe('k0');
    expect(winner(pr, '/', { headers: own('y') })).toBe('k1');
  });

  test('a match of a rule is any of its matches (OR)', () => {
    const pr = routing('HTTPRoute', [[{ matches: [{ path: { type: 'Exact', value: '/x' } }, { headers: [{ name: 'h', value: '1' }] }] }]]);
    expect(winner(pr, '/x')).toBe('k0');
    expect(winner(pr, '/y', { headers: { h: '1' } })).toBe('k0');
    expect(winner(pr, '/y')).toBeNull();
  });

  test('a route whose ports do not name this port does not apply on it', () => {
    const pr = routing('HTTPRoute', [[{ path: { type: 'PathPrefix', value: '/' } }], [{ path: { type: 'Exact', value: '/x' } }]], [[81], []]);
    expect(pr.routes.map((r) => r.name)).toEqual(['r1']);
    expect(winner(pr, '/y')).toBeNull();
  });
});

describe('route matcher: GRPCRoute precedence', () => {
  test('more characters in the service, then the method, then more headers', () => {
    const pr = routing('GRPCRoute', [[
      { grpc: { type: 'Exact', method: 'Echo' } },
      { grpc: { type: 'Exact', service: 'pkg.Echo' } },
      { grpc: { type: 'Exact', service: 'pkg.Echo', method: 'Say' } },
      { grpc: { type: 'Exact', service: 'pkg.Echo', method: 'Say' }, headers: [{ name: 'x', value: '1' }] },
      { grpc: { type: 'RegularExpression', service: 'pkg\\..*' } },
    ]]);
    expect(winner(pr, '/pkg.Echo/Say', { grpc: true, headers: { x: '1' } })).toBe('k3');
    expect(winner(pr, '/pkg.Echo/Say', { grpc: true })).toBe('k2');
    expect(winner(pr, '/pkg.Echo/Other', { grpc: true })).toBe('k1');
    expect(winner(pr, '/pkg.Other/Echo', { grpc: true })).toBe('k4');
    expect(winner(pr, '/x.Y/Echo', { grpc: true })).toBe('k0');
    expect(winner(pr, '/x.Y/Z', { grpc: true })).toBeNull();
  });

  test('a header match on Host reads the :authority (adv10 F3)', () => {
    const pr = routing('GRPCRoute', [[{ grpc: { type: 'Exact', service: 'pkg.Echo' }, headers: [{ name: 'host', value: 'echo:50051' }] }, { grpc: { type: 'Exact', service: 'pkg.Echo' } }]]);
    expect(winner(pr, '/pkg.Echo/Say', { grpc: true, authority: 'echo:50051' })).toBe('k0');
    expect(winner(pr, '/pkg.Echo/Say', { grpc: true, authority: 'echo' })).toBe('k1');
  });
});

describe('weighted backend pick', () => {
  test('the draw splits by cumulative weight; weight 0 is never picked; all zero: none', () => {
    const svc = parseService(
      { name: 'web', ports: [{ port: 80 }], routes: [{ name: 'r', rules: [{ backends: [{ name: 'a', namespace: 'default', port: 80, weight: 90 }, { name: 'z', namespace: 'default', port: 80, weight: 0 }, { name: 'b', namespace: 'default', port: 80, weight: 10 }] }, { backends: [{ name: 'a', namespace: 'default', port: 80, weight: 0 }] }] }] },
      's',
    );
    const pr = compilePortRouting(svc, svc.ports[0], () => svc)!;
    const rule = pr.matcher.http[0].rule;
    expect(pickBackend(rule, 0)?.backend.name).toBe('a');
    expect(pickBackend(rule, 0.8999)?.backend.name).toBe('a');
    expect(pickBackend(rule, 0.9)?.backend.name).toBe('b');
    expect(pickBackend(rule, 0.9999)?.backend.name).toBe('b');
    expect(pickBackend(pr.matcher.http[1].rule, 0.5)).toBeNull();
  });
});
