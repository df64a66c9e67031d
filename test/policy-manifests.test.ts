import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../common/schema.js';
import { parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource } from '../control-plane/translate/policy-objects.js';
import { validateResource } from '../manifests/validate.js';
import { RESERVED_OUTPUT_HEADERS } from '../contract/parse.js';

/**
 * The PeerAuthentication and AuthorizationPolicy CRD schemas and the control plane's
 * parsers must accept exactly the same objects, and name the same field when rejecting:
 * what `kubectl apply` lets through is what the mesh enforces.
 */
type Json = Record<string, unknown>;
const PARSERS: Record<string, (raw: unknown, path: string) => unknown> = {
  PeerAuthentication: parsePeerAuthenticationResource,
  AuthorizationPolicy: parseAuthorizationPolicyResource,
  RequestAuthentication: parseRequestAuthenticationResource,
};
const resource = (kind: string, spec: unknown): Json => ({ apiVersion: 'policy.wren.io/v1alpha1', kind, metadata: { name: 'p', namespace: 'demo' }, ...(spec === undefined ? {} : { spec }) });

function both(obj: Json): { crd: { ok: boolean; paths: string[] }; parsed: { ok: boolean; path?: string; warnings?: string[] } } {
  const v = validateResource(obj);
  let parsed: { ok: boolean; path?: string; warnings?: string[] } = { ok: true };
  try {
    const out = PARSERS[obj.kind as string](obj, '') as { warnings?: string[] };
    if (out.warnings) parsed = { ok: true, warnings: [...out.warnings] };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    parsed = { ok: false, path: e.path };
  }
  return { crd: v.ok ? { ok: true, paths: [] } : { ok: false, paths: v.errors.map((e) => e.path) }, parsed };
}

/**
 * Both accept, or both refuse at the same field; or the CRD refuses and the parser accepts
 * with a warning at a field the CRD names: a value that can never match (a DENY without
 * rules, a lower-case method, a path without "/", a destination.port that is no port) is
 * refused at `kubectl apply`, and read as matching nothing by the control plane, as by the
 * release before, so that an object stored before the CRD changed keeps its meaning instead
 * of being enforced fail-closed (adv13 D1).
 */
function agree(obj: Json): void {
  const { crd, parsed } = both(obj);
  const warned = (parsed.warnings ?? []).map((w) => w.slice(0, w.indexOf(':')));
  if (!crd.ok && parsed.ok && warned.length > 0) {
    expect(warned.every((w) => crd.paths.some((p) => p === w || p.startsWith(`${w}.`) || p.startsWith(`${w}[`)))).toBe(true);
    return;
  }
  expect({ ok: crd.ok, spec: obj.spec, warnings: [] }).toEqual({ ok: parsed.ok, spec: obj.spec, warnings: parsed.warnings ?? [] });
  if (!crd.ok && !parsed.ok) expect(crd.paths.some((p) => p === parsed.path || p.startsWith(`${parsed.path}.`))).toBe(true);
}

const STRINGS: unknown[] = ['x', '*', 'a*', '*a', 'a*b', '**', '*a*', '', 7, 'spiffe://cluster.local/ns/a/sa/b', 'cluster.local/ns/a/*'];
const PORTS: unknown[] = ['8080', '1', '65535', '0', '65536', '080', 'http', 8080, ''];

describe('AuthorizationPolicy: CRD schema == parser', () => {
  const rule = (r: unknown) => resource('AuthorizationPolicy', { rules: [r] });
  const cases: [string, Json][] = [
    ...['ALLOW', 'DENY', 'AUDIT', 'CUSTOM', 'allow', 1].map((a): [string, Json] => [`action ${JSON.stringify(a)}`, resource('AuthorizationPolicy', { action: a })]),
    ['spec missing', resource('AuthorizationPolicy', undefined)],
    ['spec {}', resource('AuthorizationPolicy', {})],
    ['rules [{}]', rule({})],
    ['unknown rule field', rule({ source: {} })],
    ['from without source', rule({ from: [{}] })],
    ['to without operation', rule({ to: [{}] })],
    ...['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].flatMap((f) =>
      [...STRINGS.map((v) => [v]), 'x'].map((v): [string, Json] => [`source.${f} ${JSON.stringify(v)}`, rule({ from: [{ source: { [f]: v } }] })]),
    ),
    ...[true, false, 'yes', 1].map((v): [string, Json] => [`unauthenticated ${JSON.stringify(v)}`, rule({ from: [{ source: { unauthenticated: v } }] })]),
    ...['requestPrincipals', 'notRequestPrincipals'].flatMap((f) =>
      [...STRINGS.map((v) => [v]), 'x'].map((v): [string, Json] => [`source.${f} ${JSON.stringify(v)}`, rule({ from: [{ source: { [f]: v } }] })]),
    ),
    ...['ports', 'notPorts'].flatMap((f) => PORTS.map((v): [string, Json] => [`operation.${f} ${JSON.stringify(v)}`, rule({ to: [{ operation: { [f]: [v] } }] })])),
    ...['methods', 'notMethods', 'paths', 'notPaths'].flatMap((f) => STRINGS.map((v): [string, Json] => [`operation.${f} ${JSON.stringify(v)}`, rule({ to: [{ operation: { [f]: [v] } }] })])),
    ['operation.hosts (unsupported)', rule({ to: [{ operation: { hosts: ['a'] } }] })],
    ...['request.headers[x-a]', 'request.headers[X-A]', 'source.principal', 'source.namespace', 'destination.port', 'request.auth.claims[iss]', 'request.auth.claims[a][b]', 'request.auth.claims[https://x/groups]', 'request.auth.claims[]', 'request.auth.claims[a', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'request.auth.issuer', 'source.ip', 'request.headers[]', 'request.headers[a b]', ''].map(
      (k): [string, Json] => [`when.key ${JSON.stringify(k)}`, rule({ when: [{ key: k, values: ['1'] }] })],
    ),
    ...[{}, { values: [] }, { notValues: [] }, { values: ['x'] }, { notValues: ['x'] }, { values: [], notValues: ['x'] }, { values: ['a*b'] }, { notValues: [''] }].map(
      (v): [string, Json] => [`when ${JSON.stringify(v)}`, rule({ when: [{ key: 'source.namespace', ...v }] })],
    ),
    ['when without key', rule({ when: [{ values: ['x'] }] })],
    ...[{ matchLabels: { app: 'a' } }, { matchLabels: {} }, {}, { matchLabels: { app: 1 } }, { matchExpressions: [] }].map(
      (s): [string, Json] => [`selector ${JSON.stringify(s)}`, resource('AuthorizationPolicy', { selector: s, rules: [{}] })],
    ),
    // Istio's ValidateAuthorizationPolicy: what restricts nothing, or can never match, is refused by both (adversarial review: D3).
    ...[undefined, [], [{}]].flatMap((rules) =>
      ['DENY', 'AUDIT', 'ALLOW'].map((action): [string, Json] => [`${action} rules ${JSON.stringify(rules)}`, resource('AuthorizationPolicy', { action, ...(rules ? { rules } : {}) })]),
    ),
    ['from []', rule({ from: [], to: [{ operation: { paths: ['/x'] } }] })],
    ['to []', rule({ from: [{ source: { namespaces: ['a'] } }], to: [] })],
    ['source {}', rule({ from: [{ source: {} }] })],
    ['operation {}', rule({ to: [{ operation: {} }] })],
    ...['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals'].map((f): [string, Json] => [`source with only ${f}: []`, rule({ from: [{ source: { [f]: [] } }] })]),
    ['source principals [] and namespaces', rule({ from: [{ source: { principals: [], namespaces: ['a'] } }] })],
    ['source with only unauthenticated: false', rule({ from: [{ source: { unauthenticated: false } }] })],
    ...['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'].map((f): [string, Json] => [`operation with only ${f}: []`, rule({ to: [{ operation: { [f]: [] } }] })]),
    ...['values', 'notValues'].flatMap((f) =>
      ['8080', '80*', '*', 'http', '080', '0', '65536'].map((v): [string, Json] => [`destination.port ${f} ${JSON.stringify(v)}`, rule({ when: [{ key: 'destination.port', [f]: [v] }] })]),
    ),
    ['destination.port values ["8080", "http"]', rule({ when: [{ key: 'destination.port', values: ['8080', 'http'] }] })],
    ['source.namespace values ["80*"] (not a port key)', rule({ when: [{ key: 'source.namespace', values: ['80*'] }] })],
    ...['methods', 'notMethods'].flatMap((f) =>
      ['GET', 'get', 'Get', 'G*', '*ET', 'g*', 'PROPFIND', 'M-SEARCH', 'GET POST', 'GET\r'].map((v): [string, Json] => [`operation.${f} ${JSON.stringify(v)}`, rule({ to: [{ operation: { [f]: [v] } }] })]),
    ),
    ...['paths', 'notPaths'].flatMap((f) =>
      ['/admin', '/', '/*', 'admin', 'admin*', '/admin?x=1', '/a#b', '*.php', '*?x=1', '*'].map((v): [string, Json] => [`operation.${f} ${JSON.stringify(v)}`, rule({ to: [{ operation: { [f]: [v] } }] })]),
    ),
  ];
  test.each(cases)('%s', (_name, obj) => agree(obj));
});

/**
 * Found by the adversarial review (adv9 D3). Istio's ValidateAuthorizationPolicy
 * (pkg/config/validation) refuses an empty `from.source` / `to.operation`, an empty `from` /
 * `to` list, a DENY without rules and a destination.port value that is no port; Wren also
 * refuses method and path values the authorizer could never match. Each is refused by the
 * CRD (so at `kubectl apply`) and by the control plane's parser, at the field named here.
 */
describe('AuthorizationPolicy: what restricts nothing, or never matches, is refused by both', () => {
  const ap = (spec: Json) => resource('AuthorizationPolicy', spec);
  const rule = (r: Json) => ap({ rules: [r] });
  const refused: [string, Json, string][] = [
    ['source {}', rule({ from: [{ source: {} }] }), 'spec.rules[0].from[0].source'],
    ['source {principals: []}', rule({ from: [{ source: { principals: [] } }] }), 'spec.rules[0].from[0].source'],
    ['operation {}', rule({ to: [{ operation: {} }] }), 'spec.rules[0].to[0].operation'],
    ['operation {paths: [], methods: []}', rule({ to: [{ operation: { paths: [], methods: [] } }] }), 'spec.rules[0].to[0].operation'],
    ['from []', rule({ from: [], to: [{ operation: { paths: ['/x'] } }] }), 'spec.rules[0].from'],
    ['to []', rule({ from: [{ source: { namespaces: ['a'] } }], to: [] }), 'spec.rules[0].to'],
    ['selector {}', ap({ selector: {}, rules: [{}] }), 'spec.selector'],
  ];
  test.each(refused)('%s', (_name, obj, path) => {
    const { crd, parsed } = both(obj);
    expect(parsed).toEqual({ ok: false, path });
    expect(crd.ok).toBe(false);
    expect(crd.paths.some((p) => p === path || p.startsWith(`${path}.`) || p.startsWith(`${path}[`))).toBe(true);
  });

  /**
   * A value that can never match has a meaning that can be read: it matches nothing. The CRD
   * refuses it at `kubectl apply` (feedback at apply time); the parser reads it as the release
   * before did and reports it as a warning at its field, since refusing it would enforce the
   * object fail-closed on every control-plane start: a DENY that denied nothing became a DENY
   * of every request (adv13 D1).
   */
  const warned: [string, Json, string][] = [
    ['DENY without rules', ap({ action: 'DENY' }), 'spec.rules'],
    ['DENY rules []', ap({ action: 'DENY', rules: [] }), 'spec.rules'],
    ['destination.port values ["http"]', ap({ action: 'DENY', rules: [{ when: [{ key: 'destination.port', values: ['http'] }] }] }), 'spec.rules[0].when[0].values[0]'],
    ['destination.port notValues ["80*"]', ap({ action: 'DENY', rules: [{ when: [{ key: 'destination.port', notValues: ['80*'] }] }] }), 'spec.rules[0].when[0].notValues[0]'],
    ['methods ["get"]', ap({ action: 'DENY', rules: [{ to: [{ operation: { methods: ['get'] } }] }] }), 'spec.rules[0].to[0].operation.methods[0]'],
    ['paths ["admin"]', ap({ action: 'DENY', rules: [{ to: [{ operation: { paths: ['admin'] } }] }] }), 'spec.rules[0].to[0].operation.paths[0]'],
    ['notPaths ["/admin?debug=1"]', ap({ action: 'ALLOW', rules: [{ to: [{ operation: { notPaths: ['/admin?debug=1'] } }] }] }), 'spec.rules[0].to[0].operation.notPaths[0]'],
  ];
  test.each(warned)('%s: the CRD refuses it, the parser accepts it with a warning', (_name, obj, path) => {
    const { crd, parsed } = both(obj);
    expect(parsed).toEqual({ ok: true, warnings: [expect.stringMatching(new RegExp(`^${path.replace(/[.[\]]/g, '\\$&')}: `))] });
    expect(crd.ok).toBe(false);
    expect(crd.paths.some((p) => p === path || p.startsWith(`${path}.`) || p.startsWith(`${path}[`))).toBe(true);
  });

  const accepted: [string, Json][] = [
    ['rules [{}] (matches everything)', rule({})],
    ['DENY rules [{}]', ap({ action: 'DENY', rules: [{}] })],
    ['ALLOW without rules (matches nothing)', ap({})],
    ['source with one empty list beside a set one', rule({ from: [{ source: { principals: [], namespaces: ['a'] } }] })],
    ['source with only unauthenticated', rule({ from: [{ source: { unauthenticated: true } }] })],
    ['destination.port values ["8080"]', rule({ when: [{ key: 'destination.port', values: ['8080'] }] })],
    ['methods ["GET", "M-SEARCH", "G*"]', rule({ to: [{ operation: { methods: ['GET', 'M-SEARCH', 'G*'] } }] })],
    ['paths ["/", "/api/*", "*.php", "*"]', rule({ to: [{ operation: { paths: ['/', '/api/*', '*.php', '*'] } }] })],
  ];
  test.each(accepted)('%s is accepted', (_name, obj) => {
    expect(both(obj)).toEqual({ crd: { ok: true, paths: [] }, parsed: { ok: true } }); // and no warning
  });
});

/**
 * Found by the adversarial review (adv9 D4): the CRD accepted an empty list (or object) for
 * the Istio fields Wren does not implement (`maxItems: 0`), the parser refused the field as
 * unknown, so `kubectl apply` succeeded (a Helm value rendered `hosts: []`) and the policy
 * was never enforced. Now both read empty as Istio's "not set" and refuse anything else.
 */
describe('AuthorizationPolicy: unsupported Istio fields, empty is "not set" for both', () => {
  const ap = (spec: Json) => resource('AuthorizationPolicy', { selector: { matchLabels: { app: 'db' } }, ...spec });
  const principals = { principals: ['cluster.local/ns/shop/sa/frontend'] };
  const fields: [string, (v: unknown) => Json, unknown, unknown, string][] = [
    ...['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts'].map(
      (f): [string, (v: unknown) => Json, unknown, unknown, string] => [
        `source.${f}`, (v) => ap({ rules: [{ from: [{ source: { ...principals, [f]: v } }] }] }), [], ['10.0.0.0/8'], `spec.rules[0].from[0].source.${f}`,
      ],
    ),
    ...['hosts', 'notHosts'].map((f): [string, (v: unknown) => Json, unknown, unknown, string] => [
      `operation.${f}`, (v) => ap({ rules: [{ to: [{ operation: { paths: ['/api/*'], [f]: v } }] }] }), [], ['admin.internal'], `spec.rules[0].to[0].operation.${f}`,
    ]),
    ['targetRefs', (v) => ap({ targetRefs: v, rules: [{ from: [{ source: principals }] }] }), [], [{ kind: 'Service', group: '', name: 'db' }], 'spec.targetRefs'],
    ['targetRef', (v) => ap({ targetRef: v, rules: [{ from: [{ source: principals }] }] }), {}, { kind: 'Service', group: '', name: 'db' }, 'spec.targetRef'],
  ];
  test.each(fields)('%s: empty is accepted by both and enforced as not set; set is refused by both', (_f, make, empty, set, path) => {
    expect(both(make(empty))).toEqual({ crd: { ok: true, paths: [] }, parsed: { ok: true } });
    const parsed = parseAuthorizationPolicyResource(make(empty), '');
    expect(parsed.selector).toEqual({ app: 'db' });
    // The model has no room for them: the rule is what it would be without the field.
    expect(JSON.stringify(parsed.policy.rules)).not.toMatch(/ipBlocks|serviceAccounts|hosts|targetRef/i);
    const refused = both(make(set));
    expect(refused.parsed).toEqual({ ok: false, path });
    expect(refused.crd.ok).toBe(false);
    expect(refused.crd.paths.some((p) => p === path || p.startsWith(path))).toBe(true);
  });

  test('a source whose only field is an empty unsupported list restricts nothing: refused by both', () => {
    const r = both(ap({ rules: [{ from: [{ source: { ipBlocks: [] } }] }] }));
    expect(r.parsed).toEqual({ ok: false, path: 'spec.rules[0].from[0].source' });
    expect(r.crd.ok).toBe(false);
  });
});

describe('PeerAuthentication: CRD schema == parser', () => {
  const pa = (spec: unknown) => resource('PeerAuthentication', spec);
  const sel = { matchLabels: { app: 'a' } };
  const cases: [string, Json][] = [
    ['no spec', pa(undefined)],
    ['spec {}', pa({})],
    ...['STRICT', 'PERMISSIVE', 'UNSET', 'DISABLE', 'strict', 1].map((m): [string, Json] => [`mtls.mode ${JSON.stringify(m)}`, pa({ mtls: { mode: m } })]),
    ['mtls {}', pa({ mtls: {} })],
    ...['9090', '1', '65535', '0', '65536', '080', 'http'].map((k): [string, Json] => [`portLevelMtls key ${k}`, pa({ selector: sel, portLevelMtls: { [k]: { mode: 'PERMISSIVE' } } })]),
    ...['STRICT', 'UNSET', 'DISABLE', undefined].map((m): [string, Json] => [`portLevelMtls mode ${String(m)}`, pa({ selector: sel, portLevelMtls: { '9090': m === undefined ? {} : { mode: m } } })]),
    ['portLevelMtls without selector', pa({ portLevelMtls: { '9090': { mode: 'STRICT' } } })],
    ['portLevelMtls with an empty selector', pa({ selector: { matchLabels: {} }, portLevelMtls: { '9090': { mode: 'STRICT' } } })],
    ['empty portLevelMtls without selector', pa({ portLevelMtls: {} })],
    ['unknown field', pa({ mtls: { mode: 'STRICT' }, mode: 'STRICT' })],
    ...[{ matchLabels: { app: 'a' } }, { matchLabels: {} }, {}, { matchLabels: { app: 1 } }, { matchExpressions: [] }].map(
      (s): [string, Json] => [`selector ${JSON.stringify(s)}`, pa({ selector: s, mtls: { mode: 'STRICT' } })],
    ),
  ];
  test.each(cases)('%s', (_name, obj) => agree(obj));
});

/**
 * `selector: {}` is what the API server stores of a misspelt `matchLabel:` (pruned for
 * clients without strict field validation); read as "no selector" it widened a workload's
 * PeerAuthentication (say PERMISSIVE for one legacy workload) or RequestAuthentication to
 * the whole namespace. Refused by the CRD and the parser, as for AuthorizationPolicy.
 */
describe('PeerAuthentication and RequestAuthentication: an empty selector is refused by both', () => {
  const jwt = { issuer: 'https://id.example.com', jwksUri: 'https://id.example.com/jwks' };
  test.each([
    ['PeerAuthentication', { selector: {}, mtls: { mode: 'PERMISSIVE' } }],
    ['PeerAuthentication with portLevelMtls', { selector: {}, portLevelMtls: { '9090': { mode: 'PERMISSIVE' } } }],
    ['RequestAuthentication', { selector: {}, jwtRules: [jwt] }],
  ])('%s selector {}', (name, spec) => {
    const { crd, parsed } = both(resource(name.split(' ')[0], spec));
    expect(parsed).toEqual({ ok: false, path: 'spec.selector' });
    expect(crd.ok).toBe(false);
    expect(crd.paths).toContain('spec.selector');
  });

  test.each([
    ['PeerAuthentication', { mtls: { mode: 'PERMISSIVE' } }],
    ['PeerAuthentication', { selector: { matchLabels: {} }, mtls: { mode: 'PERMISSIVE' } }],
    ['RequestAuthentication', { jwtRules: [jwt] }],
  ])('%s without a selector (or with an empty matchLabels) is accepted by both: the whole namespace', (kind, spec) => {
    expect(both(resource(kind, spec))).toEqual({ crd: { ok: true, paths: [] }, parsed: { ok: true } });
  });
});

describe('RequestAuthentication: CRD schema == parser', () => {
  const JWKS = '{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"k"}]}';
  const ra = (spec: unknown) => resource('RequestAuthentication', spec);
  const jr = (r: Json) => ra({ jwtRules: [r] });
  const base = { issuer: 'https://id.example.com', jwksUri: 'https://id.example.com/jwks' };
  const cases: [string, Json][] = [
    ['no spec', ra(undefined)],
    ['spec {}', ra({})],
    ['jwtRules []', ra({ jwtRules: [] })],
    ['a full rule', jr({ ...base, audiences: ['a'], fromHeaders: [{ name: 'Authorization', prefix: 'Bearer ' }], fromParams: ['t'], forwardOriginalToken: true, outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }], outputPayloadToHeader: 'x-payload' })],
    ...['', ' x', 'x ', 'https://a', 7].map((v): [string, Json] => [`issuer ${JSON.stringify(v)}`, jr({ ...base, issuer: v })]),
    ['no issuer', jr({ jwksUri: base.jwksUri })],
    ...['https://a/jwks', 'http://127.0.0.1:8080/k', 'ftp://a/k', 'https://', '', 'a b'].map((v): [string, Json] => [`jwksUri ${JSON.stringify(v)}`, jr({ issuer: base.issuer, jwksUri: v })]),
    ...['/etc/jwks.json', 'etc/jwks.json', ''].map((v): [string, Json] => [`jwksFile ${JSON.stringify(v)}`, jr({ issuer: base.issuer, jwksFile: v })]),
    ['jwks inline', jr({ issuer: base.issuer, jwks: JWKS })],
    ['no key source', jr({ issuer: base.issuer })],
    ['two key sources', jr({ ...base, jwks: JWKS })],
    ['three key sources', jr({ ...base, jwks: JWKS, jwksFile: '/k' })],
    ...['x-jwt', 'X-JWT', 'a b', '', ':path'].map((v): [string, Json] => [`fromHeaders.name ${JSON.stringify(v)}`, jr({ ...base, fromHeaders: [{ name: v }] })]),
    ['fromHeaders without name', jr({ ...base, fromHeaders: [{ prefix: 'Bearer ' }] })],
    ...['access_token', 'a b', ''].map((v): [string, Json] => [`fromParams ${JSON.stringify(v)}`, jr({ ...base, fromParams: [v] })]),
    ...[true, 'yes'].map((v): [string, Json] => [`forwardOriginalToken ${JSON.stringify(v)}`, jr({ ...base, forwardOriginalToken: v })]),
    ['outputClaimToHeaders without claim', jr({ ...base, outputClaimToHeaders: [{ header: 'x-a' }] })],
    // Headers the proxy keeps for itself (adversarial review adv9): refused by both, in any case.
    ...[...RESERVED_OUTPUT_HEADERS, 'wren-peer', 'wren-x', 'Host', 'Content-Length', 'X-Forwarded-Client-Cert', 'WREN-TARGET-PORT', 'x-wren-user', 'x-forwarded-for', 'hostname', 'tes', 'x-user'].flatMap((h): [string, Json][] => [
      [`outputClaimToHeaders header ${JSON.stringify(h)}`, jr({ ...base, outputClaimToHeaders: [{ header: h, claim: 'sub' }] })],
      [`outputPayloadToHeader ${JSON.stringify(h)}`, jr({ ...base, outputPayloadToHeader: h })],
    ]),
    ['outputPayloadToHeader bad', jr({ ...base, outputPayloadToHeader: 'a b' })],
    ['unknown rule field', jr({ ...base, jwtHeaders: ['x'] })],
    ['unknown spec field', ra({ targetRef: {} })],
    ...[{ matchLabels: { app: 'a' } }, { matchLabels: { app: 1 } }, { matchLabels: {} }, {}, { matchExpressions: [] }].map((s): [string, Json] => [`selector ${JSON.stringify(s)}`, ra({ selector: s, jwtRules: [base] })]),
  ];
  test.each(cases)('%s', (_name, obj) => agree(obj));
});

test('a claim is never written to a header the proxy keeps for itself: the CRD and the parser refuse the same names', () => {
  const JWKS = { issuer: 'https://id.example.com', jwksUri: 'https://id.example.com/jwks' };
  const outcome = (header: string) => both(resource('RequestAuthentication', { jwtRules: [{ ...JWKS, outputClaimToHeaders: [{ header, claim: 'sub' }] }] }));
  for (const h of [...RESERVED_OUTPUT_HEADERS, 'wren-target-port', 'X-Forwarded-Client-Cert', 'Content-Length']) {
    const r = outcome(h);
    expect({ h, crd: r.crd.ok, parsed: r.parsed }).toEqual({ h, crd: false, parsed: { ok: false, path: 'spec.jwtRules[0].outputClaimToHeaders[0].header' } });
  }
  expect(outcome('x-user').parsed.ok && outcome('x-user').crd.ok).toBe(true);
});

test('every example of the two kinds parses, every invalid one fails at the path in its comment', () => {
  const root = join(import.meta.dirname, '..', 'manifests', 'examples');
  const docs = (f: string) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJS() as Json).filter((d) => d && String(d.kind) in PARSERS);
  const good = readdirSync(root).filter((f) => f.endsWith('.yaml')).flatMap((f) => docs(join(root, f)));
  expect(good.length).toBeGreaterThanOrEqual(7);
  for (const d of good) expect(() => PARSERS[d.kind as string](d, '')).not.toThrow();
  const bad = readdirSync(join(root, 'invalid')).filter((f) => /^(peerauthentication|authorizationpolicy|requestauthentication)-/.test(f));
  expect(bad.length).toBeGreaterThanOrEqual(5);
  for (const f of bad) {
    const text = readFileSync(join(root, 'invalid', f), 'utf8');
    const want = /^# expect-error: (\S+)/m.exec(text)![1];
    const r = both(docs(join(root, 'invalid', f))[0]);
    // `# parser-warning: PATH`: the CRD refuses it, the control plane reads it (a value that never matches) with a warning at PATH.
    const warning = /^# parser-warning: (\S+)/m.exec(text)?.[1];
    if (warning !== undefined) expect({ f, parsed: r.parsed }).toEqual({ f, parsed: { ok: true, warnings: [expect.stringMatching(new RegExp(`^${warning.replace(/[.[\]]/g, '\\$&')}: `))] } });
    else expect({ f, parsed: r.parsed }).toEqual({ f, parsed: { ok: false, path: want } });
  }
});
