import { anchored, parseServiceRoutes, routesFromJson } from './parse-routes.js';
import { parseService } from './parse.js';
import { serviceFromWire } from './discovery.js';

const rule = (extra: Record<string, unknown> = {}) => ({ backends: [{ name: 'web', namespace: 'default', port: 80 }], ...extra });
const route = (extra: Record<string, unknown> = {}) => ({ kind: 'HTTPRoute', name: 'r', namespace: 'default', rules: [rule()], ...extra });
const parse = (routes: unknown) => parseServiceRoutes(routes, 'routes');
const err = (routes: unknown) => {
  try {
    parse(routes);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('route model validation (contract/parse-routes.ts)', () => {
  test('hand-written routes get the defaults the control plane writes', () => {
    const [r] = parse([{ name: 'r', rules: [{ backends: [{ name: 'web', namespace: 'default', port: 80 }] }] }]);
    expect(r).toEqual({
      kind: 'HTTPRoute', name: 'r', namespace: 'default', ports: [],
      rules: [{
        name: '', matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], filters: [],
        backends: [{ name: 'web', namespace: 'default', port: 80, weight: 1, filters: [], invalid: '' }],
        timeouts: { requestMs: 0, backendRequestMs: 0 },
      }],
    });
    expect(parse([route({ kind: 'GRPCRoute' })])[0].rules[0].matches).toEqual([{ headers: [], queryParams: [] }]);
  });

  test('header names are stored lower-case; a full model round-trips', () => {
    const full = route({
      ports: [80],
      rules: [rule({
        name: 'canary',
        matches: [{ path: { type: 'Exact', value: '/a' }, method: 'GET', headers: [{ type: 'Exact', name: 'X-Env', value: 'dev' }], queryParams: [{ type: 'RegularExpression', name: 'q', value: 'a.*' }] }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }], add: [], remove: ['X-B'] } },
          { type: 'RequestMirror', requestMirror: { backend: { name: 'shadow', namespace: 'default', port: 80 }, percent: 50 } },
        ],
        timeouts: { requestMs: 1000, backendRequestMs: 500 },
        retry: { attempts: 2, codes: [503], backoffMs: 10 },
      })],
    });
    const [r] = parse([full]);
    expect(r.rules[0].matches[0].headers[0].name).toBe('x-env');
    expect(r.rules[0].filters[0]).toEqual({ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }], add: [], remove: ['x-b'] } });
    expect(parse(JSON.parse(JSON.stringify([r])))).toEqual([r]);
  });

  test.each([
    [[route({ rules: [rule({ matches: [{ path: { type: 'RegularExpression', value: '/a(' } }] })] })], 'routes[0].rules[0].matches[0].path.value: invalid regular expression'],
    [[route({ rules: [rule({ matches: [{ headers: [{ type: 'RegularExpression', name: 'x', value: '(?=a)a' }] }] })] })], 'routes[0].rules[0].matches[0].headers[0].value: lookaround and backreferences'],
    [[route({ rules: [rule({ matches: [{ path: { type: 'RegularExpression', value: '(a)\\1' } }] })] })], 'lookaround and backreferences'],
    [[route({ rules: [rule({ matches: [{ path: { type: 'Exact', value: 'no-slash' } }] })] })], 'routes[0].rules[0].matches[0].path.value'],
    [[route({ rules: [rule({ matches: [{ method: 'FETCH' }] })] })], 'routes[0].rules[0].matches[0].method'],
    [[route({ rules: [rule({ matches: [{ headers: [{ name: 'x', value: 'a\r\nb: c' }] }] })] })], 'routes[0].rules[0].matches[0].headers[0].value'],
    [[route({ rules: Array.from({ length: 17 }, () => rule()) })], 'routes[0].rules: at most 16 items'],
    [[route({ rules: [rule({ backends: [{ name: 'web', namespace: 'default', port: 80, weight: -1 }] })] })], 'routes[0].rules[0].backends[0].weight'],
    [[route({ rules: [rule({ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 305 } }] })] })], 'routes[0].rules[0].filters[0].requestRedirect.statusCode'],
    [[route({ rules: [rule({ filters: [{ type: 'RequestRedirect', requestRedirect: {} }] })] })], 'routes[0].rules[0].filters[0]: RequestRedirect cannot be used together with backends'],
    [[route({ rules: [rule({ matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', value: '/b' } } }] })] })], 'ReplacePrefixMatch needs every match of the rule to be a PathPrefix match'],
    [[route({ rules: [rule({ filters: [{ type: 'URLRewrite', urlRewrite: {} }, { type: 'URLRewrite', urlRewrite: {} }] })] })], 'routes[0].rules[0].filters[1].type: URLRewrite may appear only once'],
    [[route({ rules: [rule({ filters: [{ type: 'URLRewrite', requestRedirect: {} }] })] })], 'routes[0].rules[0].filters[0].requestRedirect: unknown field'],
    [[route({ kind: 'GRPCRoute', rules: [rule({ filters: [{ type: 'URLRewrite', urlRewrite: {} }] })] })], 'routes[0].rules[0].filters[0].type: URLRewrite is not a GRPCRoute filter'],
    [[route({ kind: 'GRPCRoute', rules: [rule({ matches: [{ path: { type: 'Exact', value: '/a' } }] })] })], 'routes[0].rules[0].matches[0].path: not a GRPCRoute match field'],
    [[route({ kind: 'GRPCRoute', rules: [rule({ matches: [{ grpc: { type: 'Exact' } }] })] })], 'routes[0].rules[0].matches[0].grpc: one of service or method must be set'],
    [[route({ rules: [rule({ timeouts: { requestMs: 100, backendRequestMs: 200 } })] })], 'routes[0].rules[0].timeouts.backendRequestMs: must not exceed'],
    [[route({ rules: [rule({ colour: 'red' })] })], 'routes[0].rules[0].colour: unknown field'],
    [[route({ rules: [] })], 'routes[0].rules: expected at least 1'],
    [[route({ rules: [rule({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'Content-Length', value: '0' }] } }] })] })], 'routes[0].rules[0].filters[0].requestHeaderModifier.set[0].name: content-length cannot be modified'],
    [[route({ rules: [rule({ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['transfer-encoding'] } }] })] })], 'responseHeaderModifier.remove[0]: transfer-encoding cannot be modified'],
    [[route({ rules: [rule({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'wren-target-port', value: '22' }] } }] })] })], 'wren-target-port cannot be modified'],
    [[route({ rules: [rule({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'host', value: 'x' }] } }] })] })], 'host cannot be modified'],
  ])('refused with the field path: %#', (routes, message) => {
    expect(err(routes)).toContain(message);
  });

  test('what the spec allows is taken: a rule name that is a DNS subdomain, ReplacePrefixMatch "", an unresolved backend of another kind (port 0)', () => {
    // The control plane sends these for routes the Gateway API CRD accepts (ADV5-1a, d, f): refusing them NACKed every proxy's whole config.
    expect(parse([route({ rules: [rule({ name: 'canary.v2' })] })])[0].rules[0].name).toBe('canary.v2');
    const rewrite = { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', value: '' } } };
    expect(parse([route({ rules: [rule({ matches: [{ path: { type: 'PathPrefix', value: '/legacy' } }], filters: [rewrite] })] })])[0].rules[0].filters[0]).toEqual(rewrite);
    const other = { name: 'reviews-global', namespace: 'shop', port: 0, weight: 1, filters: [], invalid: 'InvalidKind' };
    expect(parse([route({ rules: [rule({ backends: [other] })] })])[0].rules[0].backends[0]).toEqual(other);
    // ...and no further: a resolved backend still needs a Service port, ReplaceFullPath an absolute path, a rule name RFC 1123.
    expect(err([route({ rules: [rule({ backends: [{ ...other, invalid: '' }] })] })])).toContain('routes[0].rules[0].backends[0].port');
    expect(err([route({ rules: [rule({ filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', value: '' } } }] })] })])).toContain('urlRewrite.path.value');
    expect(err([route({ rules: [rule({ name: 'Canary_v2' })] })])).toContain('routes[0].rules[0].name');
    expect(err([route({ rules: [rule({ name: `${'a'.repeat(63)}.`.repeat(4) + 'ab' })] })])).toContain('routes[0].rules[0].name: at most 253 characters');
  });

  describe('a rewrite or redirect path a request-target cannot carry is refused, naming the field and the character (adv10 F2)', () => {
    const rewrite = (value: string, type = 'ReplaceFullPath') => [route({ rules: [rule({ matches: [{ path: { type: 'PathPrefix', value: '/p' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type, value } } }] })] })];
    const redirect = (value: string, type = 'ReplaceFullPath') => [route({ rules: [rule({ backends: [], matches: [{ path: { type: 'PathPrefix', value: '/p' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type, value } } }] })] })];
    test.each([
      ['/a\x01b', 'character 2 (U+0001)'],
      ['/a\rb', 'character 2 (U+000D)'],
      ['/a\x7fb', 'character 2 (U+007F)'],
      ['/caf\u00e9', 'character 4 (U+00E9)'],
      ['/\u5f20', 'character 1 (U+5F20)'],
      ['/a b', 'character 2 (U+0020)'],
      ['/a\tb', 'character 2 (U+0009)'],
      ['/a?b', "character 2 ('?')"],
      ['/a#b', "character 2 ('#')"],
      ['/100%', "character 4 ('%')"],
      ['/a%zz', "character 2 ('%')"],
      ['/a"b', "character 2 ('\"')"],
      ['/a<b>', "character 2 ('<')"],
      ['/a\\b', "character 2 ('\\')"],
    ])('%j: %s', (value, why) => {
      for (const type of ['ReplaceFullPath', 'ReplacePrefixMatch']) {
        expect(err(rewrite(value, type))).toContain(`routes[0].rules[0].filters[0].urlRewrite.path.value: ${why}`);
        expect(err(redirect(value, type))).toContain(`routes[0].rules[0].filters[0].requestRedirect.path.value: ${why}`);
      }
      // The same on a backend's filters, and for a path match (the CRD's CEL rule says so for those).
      expect(err([route({ rules: [rule({ backends: [{ name: 'web', namespace: 'default', port: 80, filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', value } } }] }] })] })])).toContain('routes[0].rules[0].backends[0].filters[0].urlRewrite.path.value');
      expect(err([route({ rules: [rule({ matches: [{ path: { type: 'Exact', value } }] })] })])).toContain(`routes[0].rules[0].matches[0].path.value: ${why}`);
    });

    test('what RFC 3986 allows in a path is taken: unreserved, sub-delims, :, @, / and %HH (UTF-8 text percent-encoded)', () => {
      for (const value of ['/caf%C3%A9', "/a-b_c.d~e/!$&'()*+,;=:@x", '/%2f%2F%00', '/']) {
        expect(parse(rewrite(value))[0].rules[0].filters[0]).toEqual({ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', value } } });
        expect(parse(redirect(value))[0].rules[0].filters[0]).toMatchObject({ requestRedirect: { path: { type: 'ReplaceFullPath', value } } });
      }
    });

    test('a rewrite or redirect hostname is a precise RFC 1123 hostname: no wildcard, no other character, at most 253 characters', () => {
      const host = (hostname: string) => [
        route({ rules: [rule({ filters: [{ type: 'URLRewrite', urlRewrite: { hostname } }] })] }),
        route({ rules: [rule({ backends: [], filters: [{ type: 'RequestRedirect', requestRedirect: { hostname } }] })] }),
      ];
      for (const bad of ['*.example.com', 'exa mple.com', 'example.com\r\nx: y', 'caf\u00e9.example', 'Example.com', 'example.com:80', `${'a'.repeat(63)}.`.repeat(4) + 'ab']) {
        const [rw, rd] = host(bad);
        expect(err([rw])).toContain('routes[0].rules[0].filters[0].urlRewrite.hostname');
        expect(err([rd])).toContain('routes[0].rules[0].filters[0].requestRedirect.hostname');
      }
      const [rw, rd] = host('api.example.com');
      expect(parse([rw])[0].rules[0].filters[0]).toEqual({ type: 'URLRewrite', urlRewrite: { hostname: 'api.example.com' } });
      expect(parse([rd])[0].rules[0].filters[0]).toMatchObject({ requestRedirect: { hostname: 'api.example.com' } });
    });
  });

  test('a nested quantifier is RE2 and allowed; no path makes its match backtrack exponentially (ADV5-6)', () => {
    const [r] = parse([route({ rules: [rule({ matches: [{ path: { type: 'RegularExpression', value: '/docs/([\\w-]+/?)*' } }] })] })]);
    const re = anchored(r.rules[0].matches[0].path!.value);
    expect(re.test('/docs/guide/intro')).toBe(true);
    // Plain backtracking takes 2^27 steps for 27 letters (seconds; each more letter doubles it); linear: well under a millisecond.
    const t0 = performance.now();
    expect(re.test(`/docs/${'a'.repeat(27)}!`)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  test('routes_json from the wire: decoded by serviceFromWire, bad JSON and bad fields named', () => {
    const wire = { name: 'web', namespace: 'default', clusterIps: [], policyJson: '', ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: [], policyJson: '' }] };
    const s = serviceFromWire({ ...wire, routesJson: JSON.stringify([route()]) }, 'services[0]');
    expect(s.routes?.[0].rules[0].backends[0].name).toBe('web');
    expect(serviceFromWire(wire, 'services[0]')).not.toHaveProperty('routes');
    expect(() => serviceFromWire({ ...wire, routesJson: '[{' }, 'services[0]')).toThrow('services[0].routes: invalid JSON');
    expect(() => serviceFromWire({ ...wire, routesJson: JSON.stringify([route({ ports: [81] })]) }, 'services[0]')).toThrow('services[0].routes[0].ports[0]: the service has no port 81');
    expect(routesFromJson('', 'x')).toBeUndefined();
  });

  test('the static config spells routes the same way (parseService)', () => {
    const s = parseService({ name: 'web', ports: [{ port: 80 }], routes: [{ name: 'r', rules: [{ backends: [{ name: 'web', namespace: 'default', port: 80 }] }] }] }, 'mesh.services[0]');
    expect(s.routes).toHaveLength(1);
    expect(() => parseService({ name: 'web', ports: [{ port: 80 }], routes: [{ name: 'r', rules: [{ matches: [{ path: { type: 'Prefix' } }] }] }] }, 'mesh.services[0]')).toThrow(
      'mesh.services[0].routes[0].rules[0].matches[0].path.type',
    );
  });
});

test("a refused header value is never quoted (it may be a credential: a filter's Authorization, a match on an API key); the refusal names the character and where", () => {
  const secret = 'Bearer sk-live-0123456789abcdef';
  // A YAML block scalar (`value: |`) keeps its trailing newline: the commonest way a good token is refused.
  const set = err([route({ rules: [rule({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'authorization', value: `${secret}\n` }] } }] })] })]);
  expect(set).toBe('routes[0].rules[0].filters[0].requestHeaderModifier.set[0].value: a header value takes visible characters, spaces and tabs (RFC 9110 section 5.5), got U+000A at character 32 of 32 (the value is not shown: it may be a credential)');
  const match = err([route({ rules: [rule({ matches: [{ headers: [{ name: 'x-api-key', value: `k-${secret}\r\n` }] }] })] })]);
  expect(match).toContain('routes[0].rules[0].matches[0].headers[0].value: a header value takes visible characters');
  for (const m of [set, match]) expect(m).not.toContain('sk-live');
  expect(err([route({ rules: [rule({ matches: [{ headers: [{ name: 'x', value: 7 }] }] })] })])).toContain('expected a string');
});
