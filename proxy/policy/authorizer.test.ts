import { parseAuthzPolicy } from '../../contract/parse-authz.js';
import type { AuthzPolicy } from '../../contract/model.js';
import { compileAuthorizer, type AuthzRequest, type RequestAuth } from './authorizer.js';

const pol = (name: string, action: string, rules: unknown): AuthzPolicy => parseAuthzPolicy({ name, action, rules }, 'p');

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const ADMIN = 'spiffe://cluster.local/ns/ops/sa/admin';
const SANDBOX = 'spiffe://cluster.local/ns/sandbox/sa/tester';

const http = (principal: string, method = 'GET', path = '/', headers: Record<string, string | string[]> = {}, port = 8080): AuthzRequest => ({
  principal, port, http: { method, path, headers },
});
const tcp = (principal: string, port = 8080): AuthzRequest => ({ principal, port, http: null });

const verdict = (policies: AuthzPolicy[], req: AuthzRequest) => {
  const d = compileAuthorizer(policies).authorize(req);
  return d.allow ? 'allow' : 'deny';
};

describe('source matching', () => {
  const allow = (source: unknown) => [pol('shop/p', 'ALLOW', [{ from: [{ source }] }])];
  test.each([
    ['full SPIFFE principal', { principals: [WEB] }, WEB, 'allow'],
    ['Istio short principal', { principals: ['cluster.local/ns/shop/sa/web'] }, WEB, 'allow'],
    ['other principal', { principals: [WEB] }, ADMIN, 'deny'],
    ['principal prefix', { principals: ['cluster.local/ns/shop/*'] }, WEB, 'allow'],
    ['principal prefix in SPIFFE form', { principals: ['spiffe://cluster.local/ns/ops/*'] }, WEB, 'deny'],
    ['principal suffix', { principals: ['*/sa/web'] }, WEB, 'allow'],
    ['principal presence, authenticated', { principals: ['*'] }, WEB, 'allow'],
    ['principal presence, plaintext', { principals: ['*'] }, '', 'deny'],
    ['notPrincipals excludes', { notPrincipals: [WEB] }, WEB, 'deny'],
    ['notPrincipals admits others', { notPrincipals: [WEB] }, ADMIN, 'allow'],
    ['notPrincipals "*" matches plaintext only', { notPrincipals: ['*'] }, '', 'allow'],
    ['notPrincipals "*" refuses authenticated', { notPrincipals: ['*'] }, WEB, 'deny'],
    ['namespace', { namespaces: ['shop'] }, WEB, 'allow'],
    ['namespace mismatch', { namespaces: ['shop'] }, ADMIN, 'deny'],
    ['namespace prefix', { namespaces: ['sand*'] }, SANDBOX, 'allow'],
    ['namespace of plaintext caller', { namespaces: ['*'] }, '', 'deny'],
    ['notNamespaces', { notNamespaces: ['sandbox'] }, SANDBOX, 'deny'],
    ['notNamespaces admits plaintext (no namespace)', { notNamespaces: ['sandbox'] }, '', 'allow'],
    ['unauthenticated: true, plaintext', { unauthenticated: true }, '', 'allow'],
    ['unauthenticated: true, mTLS', { unauthenticated: true }, WEB, 'deny'],
    ['unauthenticated: false, plaintext', { unauthenticated: false }, '', 'deny'],
    ['unauthenticated: false, mTLS', { unauthenticated: false }, WEB, 'allow'],
    ['fields are ANDed', { namespaces: ['shop'], notPrincipals: [WEB] }, WEB, 'deny'],
    ['empty source matches anyone', {}, '', 'allow'],
  ])('%s', (_name, source, principal, want) => {
    expect(verdict(allow(source), http(principal))).toBe(want);
  });

  test('sources of one rule are ORed', () => {
    const p = [pol('shop/p', 'ALLOW', [{ from: [{ source: { principals: [WEB] } }, { source: { namespaces: ['ops'] } }] }])];
    expect([WEB, ADMIN, SANDBOX].map((id) => verdict(p, http(id)))).toEqual(['allow', 'allow', 'deny']);
  });
});

// adv9 D1: Istio reads a principal of trust domain cluster.local as the mesh's own trust
// domain (Bundle.ReplaceTrustDomainAliases): with trust domain example.org, a DENY on
// cluster.local/ns/shop/sa/web never matched the peer spiffe://example.org/ns/shop/sa/web.
describe('trust domain: cluster.local is the mesh\'s', () => {
  const TD_WEB = 'spiffe://example.org/ns/shop/sa/web';
  const TD_ADMIN = 'spiffe://example.org/ns/ops/sa/admin';
  const decide = (policies: AuthzPolicy[], req: AuthzRequest) => (compileAuthorizer(policies, { trustDomain: 'example.org' }).authorize(req).allow ? 'allow' : 'deny');
  test.each([
    ['principals, short form', { principals: ['cluster.local/ns/shop/sa/web'] }, TD_WEB, 'allow'],
    ['principals, SPIFFE form', { principals: ['spiffe://cluster.local/ns/shop/sa/web'] }, TD_WEB, 'allow'],
    ['principals, another account', { principals: ['cluster.local/ns/shop/sa/web'] }, TD_ADMIN, 'deny'],
    ['principals, service-account prefix', { principals: ['cluster.local/ns/shop/sa/*'] }, TD_WEB, 'allow'],
    ['principals, a peer of another trust domain', { principals: ['cluster.local/ns/shop/sa/web'] }, 'spiffe://other.org/ns/shop/sa/web', 'deny'],
    ['principals, a cluster.local peer still matches it literally', { principals: ['cluster.local/ns/shop/sa/web'] }, WEB, 'allow'],
    ['principals, the local trust domain written out', { principals: ['example.org/ns/shop/sa/web'] }, TD_WEB, 'allow'],
    ['principals, the local trust domain does not stand for cluster.local', { principals: ['example.org/ns/shop/sa/web'] }, WEB, 'deny'],
    ['notPrincipals', { notPrincipals: ['cluster.local/ns/shop/sa/web'] }, TD_WEB, 'deny'],
    ['notPrincipals, others', { notPrincipals: ['cluster.local/ns/shop/sa/web'] }, TD_ADMIN, 'allow'],
    ['a prefix that is not TD/ns/NS/sa/SA is kept as written (Istio)', { principals: ['cluster.local/ns/shop/*'] }, TD_WEB, 'deny'],
    ['trust domain "*"', { principals: ['*/ns/shop/sa/web'] }, TD_WEB, 'allow'],
  ])('%s', (_name, source, principal, want) => {
    expect(decide([pol('shop/p', 'ALLOW', [{ from: [{ source }] }])], http(principal))).toBe(want);
  });

  test('the source.principal condition, values and notValues', () => {
    const p = (cond: Record<string, string[]>) => [pol('shop/d', 'DENY', [{ when: [{ key: 'source.principal', ...cond }] }])];
    expect([decide(p({ values: ['cluster.local/ns/shop/sa/web'] }), http(TD_WEB)), decide(p({ values: ['cluster.local/ns/shop/sa/web'] }), http(TD_ADMIN))]).toEqual(['deny', 'allow']);
    expect([decide(p({ notValues: ['cluster.local/ns/shop/sa/web'] }), http(TD_WEB)), decide(p({ notValues: ['cluster.local/ns/shop/sa/web'] }), http(TD_ADMIN))]).toEqual(['allow', 'deny']);
  });

  test('TCP too, and without a trust domain the mesh\'s is cluster.local', () => {
    expect(decide([pol('shop/d', 'DENY', [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }])], tcp(TD_WEB))).toBe('deny');
    expect(verdict([pol('shop/d', 'DENY', [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }])], tcp(TD_WEB))).toBe('allow');
  });
});

describe('operation matching', () => {
  const allow = (operation: unknown) => [pol('shop/p', 'ALLOW', [{ to: [{ operation }] }])];
  test.each([
    ['method', { methods: ['GET', 'HEAD'] }, http(WEB, 'GET'), 'allow'],
    ['method mismatch', { methods: ['GET'] }, http(WEB, 'POST'), 'deny'],
    ['notMethods', { notMethods: ['DELETE'] }, http(WEB, 'DELETE'), 'deny'],
    ['exact path', { paths: ['/api/orders'] }, http(WEB, 'GET', '/api/orders'), 'allow'],
    ['exact path ignores the query', { paths: ['/api/orders'] }, http(WEB, 'GET', '/api/orders?id=7'), 'allow'],
    ['exact path mismatch', { paths: ['/api/orders'] }, http(WEB, 'GET', '/api/orders/7'), 'deny'],
    ['prefix /x/*', { paths: ['/api/*'] }, http(WEB, 'GET', '/api/orders/7'), 'allow'],
    ['prefix does not match the bare /x', { paths: ['/api/*'] }, http(WEB, 'GET', '/api'), 'deny'],
    ['suffix *x', { paths: ['*.png'] }, http(WEB, 'GET', '/img/a.png'), 'allow'],
    ['presence *', { paths: ['*'] }, http(WEB, 'GET', '/anything'), 'allow'],
    ['notPaths', { paths: ['/api/*'], notPaths: ['/api/admin/*'] }, http(WEB, 'GET', '/api/admin/users'), 'deny'],
    ['dot segments are resolved before matching', { notPaths: ['/admin/*'] }, http(WEB, 'GET', '/public/../admin/x'), 'deny'],
    ['port', { ports: ['8080'] }, http(WEB, 'GET', '/', {}, 8080), 'allow'],
    ['port mismatch', { ports: ['8080'] }, http(WEB, 'GET', '/', {}, 9090), 'deny'],
    ['notPorts', { notPorts: ['9090'] }, http(WEB, 'GET', '/', {}, 9090), 'deny'],
    ['gRPC method path', { paths: ['/echo.Echo/*'], methods: ['POST'] }, http(WEB, 'POST', '/echo.Echo/Unary'), 'allow'],
  ])('%s', (_name, operation, req, want) => {
    expect(verdict(allow(operation), req)).toBe(want);
  });
});

describe('conditions', () => {
  const deny = (when: unknown) => [pol('shop/d', 'DENY', [{ when }])];
  test.each([
    ['header value', [{ key: 'request.headers[x-debug]', values: ['1', 'true'] }], { 'x-debug': 'true' }, 'deny'],
    ['header name is case-insensitive', [{ key: 'request.headers[X-Debug]', values: ['1'] }], { 'x-debug': '1' }, 'deny'],
    ['header other value', [{ key: 'request.headers[x-debug]', values: ['1'] }], { 'x-debug': '0' }, 'allow'],
    ['header absent', [{ key: 'request.headers[x-debug]', values: ['*'] }], {}, 'allow'],
    ['header notValues, absent', [{ key: 'request.headers[x-token]', notValues: ['*'] }], {}, 'deny'],
    // `*` on a header is Envoy's present_match (Istio matcher.HeaderMatcher): an empty value is there (adv9 D2).
    ['header "*", present and empty', [{ key: 'request.headers[x-debug]', values: ['*'] }], { 'x-debug': '' }, 'deny'],
    ['header "*", present', [{ key: 'request.headers[x-debug]', values: ['*'] }], { 'x-debug': '1' }, 'deny'],
    ['header notValues "*", present and empty', [{ key: 'request.headers[x-token]', notValues: ['*'] }], { 'x-token': '' }, 'allow'],
    ['header notValues "*", present', [{ key: 'request.headers[x-token]', notValues: ['*'] }], { 'x-token': 't' }, 'allow'],
    ['header "*" among other values, present and empty', [{ key: 'request.headers[x-debug]', values: ['1', '*'] }], { 'x-debug': '' }, 'deny'],
    ['header prefix, absent (no empty value to match)', [{ key: 'request.headers[x-a]', notValues: ['v*'] }], {}, 'deny'],
    ['header suffix, present and empty', [{ key: 'request.headers[x-a]', values: ['*v'] }], { 'x-a': '' }, 'allow'],
    ['header prefix', [{ key: 'request.headers[user-agent]', values: ['curl/*'] }], { 'user-agent': 'curl/8.1' }, 'deny'],
    ['repeated header joined with commas', [{ key: 'request.headers[x-a]', values: ['1,2'] }], { 'x-a': ['1', '2'] }, 'deny'],
    ['all conditions must hold', [{ key: 'request.headers[x-a]', values: ['1'] }, { key: 'source.namespace', values: ['ops'] }], { 'x-a': '1' }, 'allow'],
    ['source.principal short form', [{ key: 'source.principal', values: ['cluster.local/ns/shop/sa/web'] }], {}, 'deny'],
    ['destination.port', [{ key: 'destination.port', values: ['8080'] }], {}, 'deny'],
  ])('%s', (_name, when, headers, want) => {
    expect(verdict(deny(when), http(WEB, 'GET', '/', headers))).toBe(want);
  });

  // The listeners keep the connection's own fields out of the header map: these are read from the request.
  const upgrade = (upgrade: string | undefined, authority = 'web.shop:80'): AuthzRequest => ({
    principal: WEB, port: 8080, http: { method: 'GET', path: '/ws', headers: {}, authority, ...(upgrade === undefined ? {} : { upgrade }) },
  });
  test.each([
    ['upgrade header of a WebSocket upgrade', 'request.headers[upgrade]', ['websocket'], 'websocket', 'deny'],
    ['upgrade header, any upgrade', 'request.headers[Upgrade]', ['*'], 'websocket', 'deny'],
    ['upgrade header, another protocol', 'request.headers[upgrade]', ['websocket'], 'connect-udp', 'allow'],
    ['upgrade header of a plain request', 'request.headers[upgrade]', ['*'], undefined, 'allow'],
    ['connection header of an upgrade', 'request.headers[connection]', ['upgrade'], 'websocket', 'deny'],
    ['connection header of a plain request', 'request.headers[connection]', ['*'], undefined, 'allow'],
  ])('%s', (_name, key, values, proto, want) => {
    expect(verdict(deny([{ key, values }]), upgrade(proto))).toBe(want);
  });

  test('a plain request has no upgrade or connection header: notValues ["*"] matches it, and an upgrade does not', () => {
    for (const key of ['request.headers[upgrade]', 'request.headers[connection]']) {
      const p = deny([{ key, notValues: ['*'] }]);
      expect([verdict(p, upgrade(undefined)), verdict(p, upgrade('websocket'))]).toEqual(['deny', 'allow']);
    }
  });

  // adv9 D6: the header map is a plain object; `constructor` found Object.prototype's and
  // `v.join is not a function` failed every request (500), even under an AUDIT-only policy.
  test.each(['constructor', '__proto__', 'hasOwnProperty', 'toString'])('request.headers[%s] reads the request\'s own field only', (name) => {
    const own = (v: string): Record<string, string> => Object.defineProperty({}, name.toLowerCase(), { value: v, enumerable: true }) as Record<string, string>;
    for (const action of ['DENY', 'AUDIT', 'ALLOW']) {
      for (const cond of [{ values: ['x'] }, { notValues: ['x'] }, { values: ['*'] }]) {
        const a = compileAuthorizer([pol('shop/p', action, [{ when: [{ key: `request.headers[${name}]`, ...cond }] }])]);
        expect(() => a.authorize(http(WEB))).not.toThrow();
        expect(() => a.authorize(http(WEB, 'GET', '/', own('x')))).not.toThrow();
      }
    }
    const p = deny([{ key: `request.headers[${name}]`, values: ['x'] }]);
    expect([verdict(p, http(WEB)), verdict(p, http(WEB, 'GET', '/', own('x'))), verdict(p, http(WEB, 'GET', '/', own('y')))]).toEqual(['allow', 'deny', 'allow']);
    const q = deny([{ key: `request.headers[${name}]`, notValues: ['x'] }]);
    expect([verdict(q, http(WEB)), verdict(q, http(WEB, 'GET', '/', own('x')))]).toEqual(['deny', 'allow']);
  });

  test('request.auth.claims[constructor] reads the token\'s own claim only', () => {
    const auth: RequestAuth = { principal: 'i/s', audiences: [], presenter: '', claims: JSON.parse('{"sub":"s","__proto__":"p","nested":{"a":"b"}}') as Record<string, unknown> };
    const req = (a: RequestAuth): AuthzRequest => ({ principal: WEB, port: 8080, http: { method: 'GET', path: '/', headers: {} }, auth: a });
    const d = (key: string, cond: Record<string, string[]>) => verdict(deny([{ key, ...cond }]), req(auth));
    expect(d('request.auth.claims[constructor]', { notValues: ['*'] })).toBe('deny'); // no such claim
    expect(d('request.auth.claims[nested][constructor]', { notValues: ['*'] })).toBe('deny');
    expect(d('request.auth.claims[__proto__]', { values: ['p'] })).toBe('deny'); // a claim of that name
    expect(d('request.auth.claims[nested][a]', { values: ['b'] })).toBe('deny');
  });

  test('only headers read "*" as present: a string field keeps Istio\'s ".+" (non-empty), so an empty claim does not match', () => {
    const req = (headers: Record<string, string>, claims: Record<string, unknown>): AuthzRequest => ({
      principal: WEB, port: 8080, http: { method: 'GET', path: '/', headers }, auth: { principal: 'i/s', audiences: [''], presenter: '', claims },
    });
    expect(verdict(deny([{ key: 'request.headers[x-a]', values: ['*'] }]), req({ 'x-a': '' }, {}))).toBe('deny');
    expect(verdict(deny([{ key: 'request.auth.claims[a]', values: ['*'] }]), req({}, { a: '' }))).toBe('allow');
    expect(verdict(deny([{ key: 'request.auth.audiences', values: ['*'] }]), req({}, {}))).toBe('allow');
    expect(verdict(deny([{ key: 'request.auth.presenter', values: ['*'] }]), req({}, {}))).toBe('allow');
  });

  test('request.headers[host] reads the authority', () => {
    const p = deny([{ key: 'request.headers[host]', values: ['admin.*'] }]);
    expect([verdict(p, upgrade(undefined, 'admin.shop:80')), verdict(p, upgrade(undefined, 'web.shop:80'))]).toEqual(['deny', 'allow']);
  });
});

describe('policy combination (Istio evaluation order)', () => {
  const allowWeb = pol('shop/allow-web', 'ALLOW', [{ from: [{ source: { principals: [WEB] } }] }]);
  const denyPost = pol('shop/deny-post', 'DENY', [{ to: [{ operation: { methods: ['POST'] } }] }]);
  const auditAll = pol('shop/audit', 'AUDIT', [{}]);

  test('no policies: everything allowed, and the authorizer says it is inactive', () => {
    const a = compileAuthorizer([]);
    expect(a.active).toBe(false);
    expect(a.authorize(http(''))).toMatchObject({ allow: true, reason: 'no-policies' });
  });

  test('DENY is evaluated before ALLOW', () => {
    const a = compileAuthorizer([allowWeb, denyPost]);
    expect(a.authorize(http(WEB, 'POST'))).toMatchObject({ allow: false, action: 'DENY', policy: 'shop/deny-post', reason: 'deny-policy shop/deny-post' });
    expect(a.authorize(http(WEB, 'GET'))).toMatchObject({ allow: true, action: 'ALLOW', policy: 'shop/allow-web', reason: 'allow-policy shop/allow-web' });
  });

  test('any ALLOW policy makes the workload default-deny', () => {
    expect(compileAuthorizer([allowWeb]).authorize(http(ADMIN))).toMatchObject({ allow: false, action: 'ALLOW', policy: '', reason: 'no-allow-policy-matched' });
  });

  test('only DENY policies: what they do not match is allowed', () => {
    expect(compileAuthorizer([denyPost]).authorize(http(ADMIN, 'GET'))).toMatchObject({ allow: true, action: 'NONE', reason: 'no-allow-policies' });
  });

  test('ALLOW with no rules allows nothing; with rules [{}] allows everything; DENY with no rules denies nothing', () => {
    expect(verdict([pol('a/none', 'ALLOW', [])], http(WEB))).toBe('deny');
    expect(verdict([pol('a/all', 'ALLOW', [{}])], http(''))).toBe('allow');
    expect(verdict([pol('a/none', 'DENY', [])], http(WEB))).toBe('allow');
    expect(verdict([pol('a/all', 'DENY', [{}])], http(WEB))).toBe('deny');
  });

  test('rules of a policy are ORed; policies of an action are ORed', () => {
    const p = pol('a/two', 'ALLOW', [{ to: [{ operation: { paths: ['/a'] } }] }, { to: [{ operation: { paths: ['/b'] } }] }]);
    const q = pol('a/three', 'ALLOW', [{ to: [{ operation: { paths: ['/c'] } }] }]);
    expect(['/a', '/b', '/c', '/d'].map((path) => verdict([p, q], http(WEB, 'GET', path)))).toEqual(['allow', 'allow', 'allow', 'deny']);
  });

  test('AUDIT never changes the decision and reports its matches', () => {
    const auditAdmin = pol('shop/audit-admin', 'AUDIT', [{ to: [{ operation: { paths: ['/admin/*'] } }] }]);
    const alone = compileAuthorizer([auditAll, auditAdmin]);
    expect(alone.active).toBe(true);
    expect(alone.authorize(http('', 'GET', '/admin/x'))).toMatchObject({ allow: true, audited: ['shop/audit', 'shop/audit-admin'] });
    expect(alone.authorize(http('', 'GET', '/'))).toMatchObject({ allow: true, audited: ['shop/audit'] });
    const withAllow = compileAuthorizer([auditAll, allowWeb]);
    expect(withAllow.authorize(http(ADMIN))).toMatchObject({ allow: false, reason: 'no-allow-policy-matched', audited: ['shop/audit'] });
    expect(withAllow.authorize(http(WEB))).toMatchObject({ allow: true, audited: ['shop/audit'] });
  });
});

describe('the deciding rule (the dashboard\'s "why" view)', () => {
  const twoRules = pol('shop/two', 'ALLOW', [{ to: [{ operation: { paths: ['/a'] } }] }, { to: [{ operation: { paths: ['/b'] } }] }]);
  const denyRules = pol('shop/deny', 'DENY', [{ to: [{ operation: { paths: ['/x'] } }] }, { to: [{ operation: { methods: ['DELETE'] } }] }]);
  const other = pol('shop/other', 'ALLOW', [{ from: [{ source: { principals: [ADMIN] } }] }]);

  test('ALLOW: the index of the rule that matched, named the way Istio names it in Envoy RBAC', () => {
    const a = compileAuthorizer([twoRules, other]);
    expect(a.authorize(http(WEB, 'GET', '/a'))).toMatchObject({ allow: true, policy: 'shop/two', rule: 0, effectivePolicyId: 'ns[shop]-policy[two]-rule[0]', considered: [] });
    expect(a.authorize(http(WEB, 'GET', '/b'))).toMatchObject({ allow: true, policy: 'shop/two', rule: 1, effectivePolicyId: 'ns[shop]-policy[two]-rule[1]' });
    expect(a.authorize(http(ADMIN, 'GET', '/z'))).toMatchObject({ allow: true, policy: 'shop/other', rule: 0, effectivePolicyId: 'ns[shop]-policy[other]-rule[0]' });
  });

  test('DENY: the rule that matched, also when an earlier rule of the policy did not', () => {
    const a = compileAuthorizer([twoRules, denyRules]);
    expect(a.authorize(http(WEB, 'DELETE', '/a'))).toMatchObject({ allow: false, action: 'DENY', policy: 'shop/deny', rule: 1, effectivePolicyId: 'ns[shop]-policy[deny]-rule[1]' });
    expect(a.authorize(http(WEB, 'GET', '/x'))).toMatchObject({ allow: false, action: 'DENY', rule: 0 });
  });

  test('no ALLOW rule matched: no rule, and the ALLOW policies that were considered', () => {
    const a = compileAuthorizer([twoRules, denyRules, other]);
    expect(a.authorize(http(WEB, 'GET', '/c'))).toMatchObject({ allow: false, reason: 'no-allow-policy-matched', policy: '', rule: -1, effectivePolicyId: '', considered: ['shop/two', 'shop/other'] });
  });

  test('no policy decided: no rule, nothing considered', () => {
    expect(compileAuthorizer([]).authorize(http(WEB))).toMatchObject({ rule: -1, effectivePolicyId: '', considered: [] });
    expect(compileAuthorizer([denyRules]).authorize(http(WEB, 'GET', '/a'))).toMatchObject({ reason: 'no-allow-policies', rule: -1, effectivePolicyId: '', considered: [] });
  });

  test('TCP keeps the rule indices of the policy (a rule skipped for TCP does not shift them)', () => {
    const p = pol('shop/mixed', 'ALLOW', [{ to: [{ operation: { methods: ['GET'] } }] }, { to: [{ operation: { ports: ['5432'] } }] }]);
    expect(compileAuthorizer([p]).authorize(tcp(WEB, 5432))).toMatchObject({ allow: true, rule: 1, effectivePolicyId: 'ns[shop]-policy[mixed]-rule[1]' });
  });

  test('the same rule gives the same (frozen) decision: nothing is allocated per request', () => {
    const a = compileAuthorizer([twoRules]);
    const d = a.authorize(http(WEB, 'GET', '/b'));
    expect(a.authorize(http(WEB, 'GET', '/b'))).toBe(d);
    expect(Object.isFrozen(d)).toBe(true);
  });
});

describe('TCP (no method, path or headers)', () => {
  test('an ALLOW rule with HTTP-only fields never matches TCP', () => {
    const p = [pol('a/get', 'ALLOW', [{ from: [{ source: { principals: [WEB] } }], to: [{ operation: { methods: ['GET'] } }] }])];
    expect(verdict(p, http(WEB, 'GET'))).toBe('allow');
    expect(verdict(p, tcp(WEB))).toBe('deny');
    const byHeader = [pol('a/h', 'ALLOW', [{ when: [{ key: 'request.headers[x-a]', values: ['1'] }] }])];
    expect(verdict(byHeader, tcp(WEB))).toBe('deny');
  });

  test('a DENY rule is applied to TCP without its HTTP-only fields (it matches more)', () => {
    const p = [pol('a/deny', 'DENY', [{ to: [{ operation: { ports: ['5432'], methods: ['POST'] } }] }])];
    expect(verdict(p, tcp(WEB, 5432))).toBe('deny');
    expect(verdict(p, tcp(WEB, 6379))).toBe('allow');
    expect(verdict(p, http(WEB, 'GET', '/', {}, 5432))).toBe('allow');
  });

  test('identity and port rules apply to TCP as to HTTP', () => {
    const p = [pol('a/db', 'ALLOW', [{ from: [{ source: { namespaces: ['shop'] } }], to: [{ operation: { ports: ['5432'] } }] }])];
    expect([tcp(WEB, 5432), tcp(ADMIN, 5432), tcp(WEB, 6379), tcp('', 5432)].map((r) => verdict(p, r))).toEqual(['allow', 'deny', 'deny', 'deny']);
  });
});

describe('request authentication (JWT): requestPrincipals and request.auth.*', () => {
  const ISS = 'https://id.example.com';
  const auth = (sub: string, claims: Record<string, unknown> = {}): RequestAuth => ({
    principal: `${ISS}/${sub}`,
    audiences: ['checkout', 'web'],
    presenter: 'spa',
    claims: { iss: ISS, sub, ...claims },
  });
  const withAuth = (a: RequestAuth | null, path = '/'): AuthzRequest => ({ ...http(WEB, 'GET', path), auth: a });
  const allow = (rules: unknown) => [pol('shop/jwt', 'ALLOW', rules)];

  test.each([
    ['requestPrincipals exact', { requestPrincipals: [`${ISS}/alice`] }, auth('alice'), 'allow'],
    ['requestPrincipals other subject', { requestPrincipals: [`${ISS}/alice`] }, auth('bob'), 'deny'],
    ['requestPrincipals issuer prefix', { requestPrincipals: [`${ISS}/*`] }, auth('bob'), 'allow'],
    ['requestPrincipals "*" needs a token', { requestPrincipals: ['*'] }, null, 'deny'],
    ['requestPrincipals "*" with a token', { requestPrincipals: ['*'] }, auth('carol'), 'allow'],
    ['notRequestPrincipals "*": only requests without a token', { notRequestPrincipals: ['*'] }, null, 'allow'],
    ['notRequestPrincipals excludes', { notRequestPrincipals: [`${ISS}/mallory`] }, auth('mallory'), 'deny'],
    ['ANDed with the peer principal', { principals: [WEB], requestPrincipals: [`${ISS}/alice`] }, auth('alice'), 'allow'],
    ['ANDed with the peer principal, other peer', { principals: [ADMIN], requestPrincipals: [`${ISS}/alice`] }, auth('alice'), 'deny'],
  ])('%s', (_name, source, a, want) => {
    expect(verdict(allow([{ from: [{ source }] }]), withAuth(a))).toBe(want);
  });

  test.each([
    ['claims[groups] list', [{ key: 'request.auth.claims[groups]', values: ['admins'] }], auth('a', { groups: ['users', 'admins'] }), 'allow'],
    ['claims[groups] list, no match', [{ key: 'request.auth.claims[groups]', values: ['admins'] }], auth('a', { groups: ['users'] }), 'deny'],
    ['claims[groups] string', [{ key: 'request.auth.claims[groups]', values: ['adm*'] }], auth('a', { groups: 'admins' }), 'allow'],
    ['claims notValues', [{ key: 'request.auth.claims[groups]', notValues: ['banned'] }], auth('a', { groups: ['users', 'banned'] }), 'deny'],
    ['nested claims[a][b]', [{ key: 'request.auth.claims[realm_access][roles]', values: ['editor'] }], auth('a', { realm_access: { roles: ['editor'] } }), 'allow'],
    ['nested, not an object', [{ key: 'request.auth.claims[realm_access][roles]', values: ['*'] }], auth('a', { realm_access: 'x' }), 'deny'],
    ['a number claim never matches', [{ key: 'request.auth.claims[level]', values: ['3'] }], auth('a', { level: 3 }), 'deny'],
    ['claims without a token', [{ key: 'request.auth.claims[groups]', values: ['*'] }], null, 'deny'],
    ['request.auth.principal', [{ key: 'request.auth.principal', values: [`${ISS}/a`] }], auth('a'), 'allow'],
    ['request.auth.audiences (any)', [{ key: 'request.auth.audiences', values: ['web'] }], auth('a'), 'allow'],
    ['request.auth.audiences notValues', [{ key: 'request.auth.audiences', notValues: ['web'] }], auth('a'), 'deny'],
    ['request.auth.presenter', [{ key: 'request.auth.presenter', values: ['spa'] }], auth('a'), 'allow'],
  ])('when %s', (_name, when, a, want) => {
    expect(verdict(allow([{ when }]), withAuth(a))).toBe(want);
  });

  test('JWT fields are HTTP-only: an ALLOW rule using them never matches TCP; a DENY rule drops them', () => {
    expect(verdict(allow([{ from: [{ source: { requestPrincipals: ['*'] } }] }]), tcp(WEB))).toBe('deny');
    expect(verdict(allow([{ when: [{ key: 'request.auth.claims[g]', notValues: ['x'] }] }]), tcp(WEB))).toBe('deny');
    const deny = [pol('shop/d', 'DENY', [{ from: [{ source: { notRequestPrincipals: ['*'] } }], to: [{ operation: { ports: ['5432'] } }] }])];
    expect(verdict(deny, tcp(WEB, 5432))).toBe('deny');
    expect(verdict(deny, { ...http(WEB, 'GET', '/', {}, 5432), auth: auth('a') })).toBe('allow');
    expect(verdict(deny, { ...http(WEB, 'GET', '/', {}, 5432), auth: null })).toBe('deny');
  });
});
