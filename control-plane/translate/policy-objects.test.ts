import { compileAuthorizer } from '../../proxy/policy/authorizer.js';
import { inboundPolicyFromJson, inboundPolicyToJson } from '../../contract/discovery.js';
import { resolveInboundPolicy } from './inbound-policy.js';
import { ConfigError } from '../../common/schema.js';
import {
  failClosedAuthorizationPolicy, failClosedPeerAuthentication, parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource,
  type KAuthorizationPolicy, type KPeerAuthentication,
} from './policy-objects.js';

/**
 * Found by the adversarial review (adv9 D5): a refused AuthorizationPolicy with no last good
 * version (the control plane restarted, or the object is new) was simply absent, so a
 * workload whose only ALLOW policy it was became open to every caller. It now fails closed
 * for the workloads it selects, as Istio does with a rule it cannot translate.
 */
type Json = Record<string, unknown>;
const object = (spec: unknown, metadata: Json = { name: 'only-frontend', namespace: 'shop' }): Json => ({
  apiVersion: 'policy.wren.io/v1alpha1', kind: 'AuthorizationPolicy', metadata, ...(spec === undefined ? {} : { spec }),
});
/** Refused: an empty operation would match every request (its intent cannot be read: a misspelt field the API server pruned). */
const refusedRule = { to: [{ operation: {} }] };

/** The stand-in for a refused object (it must be refused: the parser throws). */
function standIn(obj: Json): KAuthorizationPolicy | null {
  let error: unknown;
  try {
    parseAuthorizationPolicyResource(obj, '');
  } catch (e) {
    error = e;
  }
  expect(error).toBeDefined();
  return failClosedAuthorizationPolicy(obj, error);
}

const frontend = 'spiffe://cluster.local/ns/shop/sa/frontend';
const attacker = 'spiffe://cluster.local/ns/public/sa/attacker';
/** What the workload's proxy decides for `principal` with these policies in force. */
function decide(policies: readonly KAuthorizationPolicy[], labels: Record<string, string>, principal: string, namespace = 'shop') {
  const resolved = resolveInboundPolicy({ peerAuthentications: [], authorizationPolicies: policies }, { namespace, labels });
  // What the proxy gets: the policy through the wire form and the proxy's own parser.
  const wire = inboundPolicyFromJson(inboundPolicyToJson(resolved), 'inboundPolicy');
  const d = compileAuthorizer(wire.authorizationPolicies).authorize({ principal, port: 5432, http: { method: 'GET', path: '/', headers: {} } });
  return { allow: d.allow, reason: d.reason };
}

describe('a refused AuthorizationPolicy with no last good version fails closed for the workloads it selects', () => {
  const db = { app: 'db' };
  const allowFrontend = (extra: Json = {}) => object({ selector: { matchLabels: db }, action: 'ALLOW', rules: [{ from: [{ source: { principals: [frontend] } }] }, refusedRule], ...extra });

  test('a refused ALLOW becomes an ALLOW that matches nothing: the attacker is denied, not allowed by "no policy"', () => {
    const p = standIn(allowFrontend())!;
    expect(p).toMatchObject({ namespace: 'shop', selector: db, policy: { name: 'shop/only-frontend', action: 'ALLOW', rules: [] } });
    expect(p.failClosed).toEqual({
      refusal: expect.stringMatching(/^spec\.rules\[1\]\.to\[0\]\.operation: must not be empty/),
      enforced: 'an ALLOW that matches nothing, for the workloads labelled app=db of namespace shop: they admit only what another ALLOW policy admits',
    });
    expect(decide([p], db, attacker)).toEqual({ allow: false, reason: 'no-allow-policy-matched' });
    // Without it the workload had no policy at all: everyone was let in.
    expect(decide([], db, attacker)).toEqual({ allow: true, reason: 'no-policies' });
    // Other ALLOW policies still admit what they admit; other workloads are not touched.
    const other = parseAuthorizationPolicyResource(object({ selector: { matchLabels: db }, rules: [{ from: [{ source: { principals: [frontend] } }] }] }, { name: 'ops', namespace: 'shop' }), '');
    expect(decide([p, other], db, frontend)).toMatchObject({ allow: true });
    expect(decide([p], { app: 'web' }, attacker)).toEqual({ allow: true, reason: 'no-policies' });
  });

  test('a refused DENY becomes a DENY of every request', () => {
    const p = standIn(object({ selector: { matchLabels: db }, action: 'DENY', rules: [{ from: [{ source: { namespaces: ['public'] } }], when: [{ key: 'source.ip', values: ['10.0.0.1'] }] }] }))!;
    expect(p.policy).toEqual({ name: 'shop/only-frontend', action: 'DENY', rules: [{ from: [], to: [], when: [] }] });
    expect(p.failClosed?.enforced).toBe('a DENY of every request, for the workloads labelled app=db of namespace shop');
    expect(decide([p], db, frontend)).toEqual({ allow: false, reason: 'deny-policy shop/only-frontend' });
  });

  /**
   * Found by the adversarial review (adv13 D1): what can never match has a meaning that can be
   * read (it matches nothing) and was accepted by the release before; refused, it was enforced
   * fail-closed on every control-plane start: a DENY without rules in wren-system denied the
   * whole mesh. It is accepted, enforced as matching nothing, and reported as a warning.
   */
  test.each([
    ['a DENY without rules', { action: 'DENY' }, 'spec.rules: a DENY policy without rules denies nothing'],
    ['a DENY on methods ["get"]', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['get'] } }] }] }, 'spec.rules[0].to[0].operation.methods[0]: "get" never matches'],
    ['a DENY on paths ["admin"]', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['admin'] } }] }] }, 'spec.rules[0].to[0].operation.paths[0]: "admin" never matches'],
    ['a DENY when destination.port ["http"]', { action: 'DENY', rules: [{ when: [{ key: 'destination.port', values: ['http'] }] }] }, 'spec.rules[0].when[0].values[0]: "http" never matches'],
  ])('%s is not refused: it denies nothing, with a warning', (_name, spec, warning) => {
    const p = parseAuthorizationPolicyResource(object(spec, { name: 'placeholder', namespace: 'wren-system' }), '');
    expect(p.failClosed).toBeUndefined();
    expect(p.warnings).toEqual([expect.stringContaining(warning)]);
    expect(decide([p], db, frontend, 'shop')).toMatchObject({ allow: true });
  });

  test('a refused AUDIT audits every request and decides nothing', () => {
    const p = standIn(object({ selector: { matchLabels: db }, action: 'AUDIT', rules: [refusedRule] }))!;
    expect(p.policy).toMatchObject({ action: 'AUDIT', rules: [{ from: [], to: [], when: [] }] });
    expect(decide([p], db, attacker)).toEqual({ allow: true, reason: 'no-allow-policies' });
  });

  test.each([['CUSTOM'], ['deny'], [7]])('an action that cannot be read (%j) becomes a DENY of every request', (action) => {
    const p = standIn(object({ selector: { matchLabels: db }, action, rules: [{}] }))!;
    expect(p.policy.action).toBe('DENY');
    expect(p.failClosed?.enforced).toMatch(/^a DENY of every request, .* \(the action cannot be read\)$/);
  });

  test.each([
    ['an empty selector', {}],
    ['a selector with matchExpressions', { matchExpressions: [{ key: 'app', operator: 'In', values: ['db'] }] }],
    ['a label value that is no string', { matchLabels: { app: 1 } }],
  ])('%s cannot be read: the whole namespace is the scope', (_name, selector) => {
    const p = standIn(object({ selector, action: 'ALLOW', rules: [{}] }))!;
    expect(p.selector).toBeNull();
    expect(p.failClosed?.enforced).toMatch(/for every workload \(the selector cannot be read\) of namespace shop/);
    expect(decide([p], { app: 'anything' }, attacker)).toMatchObject({ allow: false });
  });

  test('in the root namespace the scope is every namespace, and the text says so', () => {
    const p = standIn(object({ selector: { matchLabels: db }, action: 'DENY', rules: [refusedRule] }, { name: 'mesh-deny', namespace: 'wren-system' }))!;
    expect(p.failClosed?.enforced).toMatch(/of namespace wren-system \(the root namespace: every namespace\)$/);
    expect(decide([p], db, frontend, 'shop')).toMatchObject({ allow: false });
  });

  test('a spec that is missing or no object: an ALLOW of nothing for the whole namespace, as an empty spec is', () => {
    for (const spec of [undefined, null, 'ALLOW', []]) expect(standIn(object(spec))).toMatchObject({ selector: null, policy: { action: 'ALLOW', rules: [] } });
  });

  test('a namespace that is no DNS label holds no workload: nothing stands in; a name that cannot be shown is "(unnamed)"', () => {
    expect(standIn(object({ action: 'DENY', rules: [refusedRule] }, { name: 'x', namespace: 'Shop' }))).toBeNull();
    expect(standIn(object({ action: 'DENY', rules: [refusedRule] }, { name: 'Bad Name', namespace: 'shop' }))?.policy.name).toBe('shop/(unnamed)');
    expect(standIn(object({ action: 'DENY', rules: [refusedRule] }, { name: 'x' }))?.namespace).toBe('default');
  });

  test('label values are shown printable in what is enforced', () => {
    const p = standIn(object({ selector: { matchLabels: { app: 'db\u001b]0;x\u0007' } }, action: 'DENY', rules: [refusedRule] }))!;
    expect(p.failClosed?.enforced).toContain('app=db\\x1b]0;x\\x07');
  });
});

/**
 * `selector: {}` is what the API server stores of a misspelt `matchLabel:`; read as "no
 * selector" it spread a workload's policy to the whole namespace. Refused by each security
 * kind's parser at spec.selector; an absent selector (or an empty matchLabels) is still the
 * whole namespace.
 */
describe('an empty selector is refused by the PeerAuthentication, RequestAuthentication and AuthorizationPolicy parsers', () => {
  const jwt = { issuer: 'https://id.example.com', jwksUri: 'https://id.example.com/jwks' };
  const kinds: [string, (raw: unknown, path: string) => { selector: unknown }, Json][] = [
    ['PeerAuthentication', parsePeerAuthenticationResource, { mtls: { mode: 'PERMISSIVE' } }],
    ['RequestAuthentication', parseRequestAuthenticationResource, { jwtRules: [jwt] }],
    ['AuthorizationPolicy', parseAuthorizationPolicyResource, { rules: [{}] }],
  ];
  const doc = (kind: string, spec: Json): Json => ({ apiVersion: 'policy.wren.io/v1alpha1', kind, metadata: { name: 'p', namespace: 'shop' }, spec });

  test.each(kinds)('%s', (kind, parse, spec) => {
    let error: unknown;
    try {
      parse(doc(kind, { ...spec, selector: {} }), '');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ path: 'spec.selector', problem: expect.stringMatching(/^must not be empty/) });
    expect(parse(doc(kind, spec), '').selector).toBeNull();
    expect(parse(doc(kind, { ...spec, selector: { matchLabels: {} } }), '').selector).toBeNull();
    expect(parse(doc(kind, { ...spec, selector: { matchLabels: { app: 'db' } } }), '').selector).toEqual({ app: 'db' });
  });
});

/**
 * Left open by adv9 D5: a refused PeerAuthentication with no last good version (the control
 * plane restarted, or the object is new) was simply absent, so the enclosing level applied: a
 * namespace STRICT refused under a mesh-wide PERMISSIVE left the namespace open to plaintext.
 * It now stands in as mode STRICT on every port, at the object's level and age.
 */
describe('a refused PeerAuthentication with no last good version is enforced as STRICT in its place', () => {
  const pa = (spec: unknown, metadata: Json = { name: 'strict', namespace: 'shop', creationTimestamp: '2026-01-02T00:00:00Z' }): Json => ({
    apiVersion: 'policy.wren.io/v1alpha1', kind: 'PeerAuthentication', metadata, ...(spec === undefined ? {} : { spec }),
  });
  const good = (spec: Json, metadata: Json): KPeerAuthentication => parsePeerAuthenticationResource(pa(spec, metadata), '');
  const meshPermissive = good({ mtls: { mode: 'PERMISSIVE' } }, { name: 'default', namespace: 'wren-system', creationTimestamp: '2026-01-01T00:00:00Z' });
  const nsPermissive = good({ mtls: { mode: 'PERMISSIVE' } }, { name: 'open', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' });
  function standInPa(obj: Json): KPeerAuthentication | null {
    let error: unknown;
    try {
      parsePeerAuthenticationResource(obj, '');
    } catch (e) {
      error = e;
    }
    expect(error).toBeDefined();
    return failClosedPeerAuthentication(obj, error);
  }
  /** What the workload's proxy gets: the resolved policy through the wire form, as { mode, ports }. */
  function mtls(pas: readonly (KPeerAuthentication | null)[], labels: Record<string, string>, namespace = 'shop') {
    const resolved = resolveInboundPolicy({ peerAuthentications: pas.filter((p) => p !== null), authorizationPolicies: [] }, { namespace, labels });
    const wire = inboundPolicyFromJson(inboundPolicyToJson(resolved), 'inboundPolicy');
    return { mode: wire.mtls.mode, ports: Object.fromEntries(Object.entries(wire.portLevelMtls).map(([k, v]) => [k, v.mode])) };
  }
  // The author meant STRICT; port-level modes need a selector, so the object is refused (the CEL rule, or a cluster without CEL: the parser).
  const refusedNsStrict = pa({ mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'STRICT' } } });

  test('a namespace STRICT refused under a mesh-wide PERMISSIVE: the namespace stays STRICT, not PERMISSIVE', () => {
    const p = standInPa(refusedNsStrict)!;
    expect(p).toMatchObject({ name: 'strict', namespace: 'shop', selector: null, mode: 'STRICT', createdAt: '2026-01-02T00:00:00Z' });
    expect(p.portLevelMtls).toEqual({});
    expect(p.failClosed).toEqual({
      refusal: expect.stringMatching(/^spec\.selector: is required when portLevelMtls is set/),
      enforced: 'mTLS STRICT on every port, for every workload of namespace shop: plaintext is refused',
    });
    expect(mtls([meshPermissive, p], { app: 'db' })).toEqual({ mode: 'STRICT', ports: {} });
    // Without it: the mesh-wide PERMISSIVE applied.
    expect(mtls([meshPermissive], { app: 'db' })).toEqual({ mode: 'PERMISSIVE', ports: {} });
    // Other namespaces are not touched.
    expect(mtls([meshPermissive, p], { app: 'db' }, 'other')).toEqual({ mode: 'PERMISSIVE', ports: {} });
  });

  test.each([['PERMISSIVE'], ['UNSET'], ['DISABLE'], ['strict']])('whatever mode the refused object said (%s), STRICT is enforced', (mode) => {
    const p = standInPa(pa({ selector: { matchLabels: { app: 'db' } }, mtls: { mode }, portLevelMtls: { '9090': { mode: 'PERMISSIVE' }, http: { mode: 'PERMISSIVE' } } }))!;
    expect(p).toMatchObject({ selector: { app: 'db' }, mode: 'STRICT' });
    expect(p.portLevelMtls).toEqual({});
    expect(p.failClosed?.enforced).toBe('mTLS STRICT on every port, for the workloads labelled app=db of namespace shop: plaintext is refused');
    // Every port of the selected workloads, the ports the refused object made PERMISSIVE included; other workloads keep the namespace's mode.
    expect(mtls([nsPermissive, p], { app: 'db' })).toEqual({ mode: 'STRICT', ports: {} });
    expect(mtls([nsPermissive, p], { app: 'web' })).toEqual({ mode: 'PERMISSIVE', ports: {} });
  });

  test('it takes the object\'s place at its level and age: an older policy of the same level still wins, as over a valid version', () => {
    const p = standInPa(refusedNsStrict)!;
    const olderNs = good({ mtls: { mode: 'PERMISSIVE' } }, { name: 'older', namespace: 'shop', creationTimestamp: '2025-01-01T00:00:00Z' });
    const valid = good({ mtls: { mode: 'STRICT' } }, { name: 'strict', namespace: 'shop', creationTimestamp: '2026-01-02T00:00:00Z' });
    expect(mtls([olderNs, p], {})).toEqual(mtls([olderNs, valid], {}));
    // A workload policy still overrides a namespace one, as it would the valid version.
    const wl = good({ selector: { matchLabels: { app: 'legacy' } }, mtls: { mode: 'PERMISSIVE' } }, { name: 'legacy', namespace: 'shop' });
    expect(mtls([p, wl], { app: 'legacy' })).toEqual(mtls([valid, wl], { app: 'legacy' }));
    // No creationTimestamp: it counts as the oldest of its level (the stricter outcome).
    expect(standInPa(pa({ mtls: { mode: 'STRIKT' } }, { name: 'x', namespace: 'shop' }))?.createdAt).toBe('');
  });

  test.each([
    ['an empty selector', {}],
    ['a misspelt matchLabels', { matchLabel: { app: 'legacy' } }],
    ['matchExpressions', { matchExpressions: [{ key: 'app', operator: 'In', values: ['db'] }] }],
    ['a label value that is no string', { matchLabels: { app: 1 } }],
  ])('%s cannot be read: a workload policy for every workload of the namespace, which a namespace PERMISSIVE does not override', (_name, selector) => {
    const p = standInPa(pa({ selector, mtls: { mode: 'STRICT' } }))!;
    expect(p.selector).toEqual({});
    expect(p.failClosed?.enforced).toBe('mTLS STRICT on every port, for every workload (the selector cannot be read) of namespace shop, as a workload policy: plaintext is refused');
    expect(mtls([meshPermissive, nsPermissive, p], { app: 'anything' })).toEqual({ mode: 'STRICT', ports: {} });
    expect(mtls([meshPermissive, nsPermissive, p], {}, 'other')).toEqual({ mode: 'PERMISSIVE', ports: {} });
  });

  test('in the root namespace: without a selector, or with one that cannot be read, mesh-wide; with a readable selector (ignored there) nothing', () => {
    const root = { name: 'mesh', namespace: 'wren-system', creationTimestamp: '2025-01-01T00:00:00Z' };
    for (const spec of [{ mtls: { mode: 'PERMISSIVE' }, mode: 'x' }, { selector: {}, mtls: { mode: 'STRICT' } }]) {
      const p = standInPa(pa(spec, root))!;
      expect(p).toMatchObject({ namespace: 'wren-system', selector: null, mode: 'STRICT' });
      expect(p.failClosed?.enforced).toMatch(/^mTLS STRICT on every port, mesh-wide \(namespace wren-system: every namespace/);
      expect(mtls([meshPermissive, p], {}, 'any')).toEqual({ mode: 'STRICT', ports: {} });
    }
    expect(standInPa(pa({ selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRIKT' } }, root))).toBeNull();
  });

  test('a spec that is missing or no object: STRICT for the whole namespace; a namespace that is no DNS label: nothing', () => {
    for (const spec of ['STRICT', []]) expect(standInPa(pa(spec))).toMatchObject({ selector: null, mode: 'STRICT' });
    expect(standInPa(pa({ mtls: { mode: 'STRIKT' } }, { name: 'x', namespace: 'Shop' }))).toBeNull();
    expect(standInPa(pa({ mtls: { mode: 'STRIKT' } }, { name: 'Bad Name', namespace: 'shop' }))?.name).toBe('(unnamed)');
    expect(standInPa(pa({ mtls: { mode: 'STRIKT' } }, { name: 'x' }))?.namespace).toBe('default');
  });
});
