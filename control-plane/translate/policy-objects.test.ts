import { compileAuthorizer } from '../../proxy/policy/authorizer.js';
import { inboundPolicyFromJson, inboundPolicyToJson } from '../../contract/discovery.js';
import { resolveInboundPolicy } from './inbound-policy.js';
import { ConfigError } from '../../common/schema.js';
import {
  failClosedAuthorizationPolicy, parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource, type KAuthorizationPolicy,
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
const refusedRule = { to: [{ operation: { paths: ['admin'] } }] };

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
      refusal: expect.stringMatching(/^spec\.rules\[1\]\.to\[0\]\.operation\.paths\[0\]: a path is matched/),
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
    const p = standIn(object({ selector: { matchLabels: db }, action: 'DENY', rules: [{ from: [{ source: { namespaces: ['public'] } }], when: [{ key: 'destination.port', values: ['postgres'] }] }] }))!;
    expect(p.policy).toEqual({ name: 'shop/only-frontend', action: 'DENY', rules: [{ from: [], to: [], when: [] }] });
    expect(p.failClosed?.enforced).toBe('a DENY of every request, for the workloads labelled app=db of namespace shop');
    expect(decide([p], db, frontend)).toEqual({ allow: false, reason: 'deny-policy shop/only-frontend' });
  });

  test('a DENY refused for having no rules still fails closed (it was meant to deny something)', () => {
    expect(standIn(object({ selector: { matchLabels: db }, action: 'DENY' }))?.policy.rules).toEqual([{ from: [], to: [], when: [] }]);
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
    const p = standIn(object({ selector: { matchLabels: db }, action: 'DENY' }, { name: 'mesh-deny', namespace: 'wren-system' }))!;
    expect(p.failClosed?.enforced).toMatch(/of namespace wren-system \(the root namespace: every namespace\)$/);
    expect(decide([p], db, frontend, 'shop')).toMatchObject({ allow: false });
  });

  test('a spec that is missing or no object: an ALLOW of nothing for the whole namespace, as an empty spec is', () => {
    for (const spec of [undefined, null, 'ALLOW', []]) expect(standIn(object(spec))).toMatchObject({ selector: null, policy: { action: 'ALLOW', rules: [] } });
  });

  test('a namespace that is no DNS label holds no workload: nothing stands in; a name that cannot be shown is "(unnamed)"', () => {
    expect(standIn(object({ action: 'DENY' }, { name: 'x', namespace: 'Shop' }))).toBeNull();
    expect(standIn(object({ action: 'DENY' }, { name: 'Bad Name', namespace: 'shop' }))?.policy.name).toBe('shop/(unnamed)');
    expect(standIn(object({ action: 'DENY' }, { name: 'x' }))?.namespace).toBe('default');
  });

  test('label values are shown printable in what is enforced', () => {
    const p = standIn(object({ selector: { matchLabels: { app: 'db\u001b]0;x\u0007' } }, action: 'DENY' }))!;
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
