import { DEFAULT_INBOUND_POLICY } from '../../contract/defaults.js';
import { ConfigError } from '../../common/schema.js';
import { parseJwksText } from '../../contract/parse.js';
import { resolveInboundPolicy, type PolicyObjects } from './inbound-policy.js';
import {
  parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource,
  type KAuthorizationPolicy, type KPeerAuthentication, type KRequestAuthentication,
} from './policy-objects.js';

let clock = 0;
const pa = (ns: string, name: string, spec: unknown, createdAt?: string): KPeerAuthentication =>
  parsePeerAuthenticationResource(
    { apiVersion: 'policy.wren.io/v1alpha1', kind: 'PeerAuthentication', metadata: { name, namespace: ns, creationTimestamp: createdAt ?? new Date(1e12 + ++clock * 1000).toISOString() }, spec },
    '',
  );
const ap = (ns: string, name: string, spec: unknown): KAuthorizationPolicy =>
  parseAuthorizationPolicyResource({ kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec }, '');

const objs = (peerAuthentications: KPeerAuthentication[], authorizationPolicies: KAuthorizationPolicy[] = []): PolicyObjects => ({ peerAuthentications, authorizationPolicies });
const web = { namespace: 'shop', labels: { app: 'web', version: 'v1' } };
const modeOf = (o: PolicyObjects, w = web) => {
  const p = resolveInboundPolicy(o, w);
  return [p.mtls.mode, Object.fromEntries(Object.entries(p.portLevelMtls).map(([k, v]) => [k, v.mode]))];
};

describe('PeerAuthentication precedence', () => {
  const mesh = (mode: string) => pa('wren-system', 'default', { mtls: { mode } });
  const ns = (mode: string) => pa('shop', 'default', { mtls: { mode } });
  const wl = (mode: string, ports: Record<string, string> = {}, labels: Record<string, string> = { app: 'web' }) =>
    pa('shop', 'web', { selector: { matchLabels: labels }, mtls: { mode }, portLevelMtls: Object.fromEntries(Object.entries(ports).map(([k, m]) => [k, { mode: m }])) });

  test('no policy: STRICT (the defaults object itself)', () => {
    expect(resolveInboundPolicy(objs([]), web)).toBe(DEFAULT_INBOUND_POLICY);
  });

  test.each([
    ['mesh-wide only', [mesh('PERMISSIVE')], 'PERMISSIVE'],
    ['namespace over mesh', [mesh('PERMISSIVE'), ns('STRICT')], 'STRICT'],
    ['workload over namespace', [ns('STRICT'), wl('PERMISSIVE')], 'PERMISSIVE'],
    ['workload UNSET inherits the namespace', [mesh('STRICT'), ns('PERMISSIVE'), wl('UNSET')], 'PERMISSIVE'],
    ['namespace UNSET inherits the mesh', [mesh('PERMISSIVE'), ns('UNSET')], 'PERMISSIVE'],
    ['a selector that does not match is ignored', [ns('PERMISSIVE'), wl('STRICT', {}, { app: 'db' })], 'PERMISSIVE'],
    ['another namespace is ignored', [pa('other', 'default', { mtls: { mode: 'PERMISSIVE' } })], 'STRICT'],
    ['a root-namespace policy with a selector is ignored (Istio)', [pa('wren-system', 'sel', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'PERMISSIVE' } })], 'STRICT'],
    ['an empty selector is namespace-wide', [pa('shop', 'empty', { selector: { matchLabels: {} }, mtls: { mode: 'PERMISSIVE' } })], 'PERMISSIVE'],
  ])('%s', (_name, list, want) => {
    expect(modeOf(objs(list))[0]).toBe(want);
  });

  test('the oldest policy of a level wins (then the name)', () => {
    const older = pa('shop', 'b-older', { mtls: { mode: 'PERMISSIVE' } }, '2024-01-01T00:00:00Z');
    const newer = pa('shop', 'a-newer', { mtls: { mode: 'STRICT' } }, '2024-06-01T00:00:00Z');
    expect(modeOf(objs([newer, older]))[0]).toBe('PERMISSIVE');
    const tieB = pa('shop', 'b', { mtls: { mode: 'STRICT' } }, '2024-01-01T00:00:00Z');
    const tieA = pa('shop', 'a', { mtls: { mode: 'PERMISSIVE' } }, '2024-01-01T00:00:00Z');
    expect(modeOf(objs([tieB, tieA]))[0]).toBe('PERMISSIVE');
  });

  test('port-level overrides come from the workload policy; an UNSET port inherits the workload mode', () => {
    expect(modeOf(objs([ns('STRICT'), wl('UNSET', { '9090': 'PERMISSIVE', '8443': 'UNSET' })]))).toEqual(['STRICT', { '8443': 'STRICT', '9090': 'PERMISSIVE' }]);
    expect(modeOf(objs([mesh('PERMISSIVE'), wl('UNSET', { '8443': 'STRICT' })]))).toEqual(['PERMISSIVE', { '8443': 'STRICT' }]);
  });
});

describe('AuthorizationPolicy selection', () => {
  const allow = { rules: [{}] };
  test('namespace-wide, matching selector, and root-namespace policies apply; others do not; sorted by name', () => {
    const p = resolveInboundPolicy(
      objs([], [
        ap('shop', 'z-all', allow),
        ap('shop', 'web-only', { ...allow, selector: { matchLabels: { app: 'web' } } }),
        ap('shop', 'db-only', { ...allow, selector: { matchLabels: { app: 'db' } } }),
        ap('other', 'elsewhere', allow),
        ap('wren-system', 'mesh-deny', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['sandbox'] } }] }] }),
        ap('wren-system', 'mesh-v1', { ...allow, selector: { matchLabels: { version: 'v1' } } }),
      ]),
      web,
    );
    expect(p.authorizationPolicies.map((x) => `${x.action} ${x.name}`)).toEqual(['ALLOW shop/web-only', 'ALLOW shop/z-all', 'DENY wren-system/mesh-deny', 'ALLOW wren-system/mesh-v1']);
    expect(p.mtls.mode).toBe('STRICT');
  });

  test('spec {} is allow-nothing (ALLOW with no rules)', () => {
    expect(ap('shop', 'deny-all', {}).policy).toEqual({ name: 'shop/deny-all', action: 'ALLOW', rules: [] });
  });
});

describe('the resources are validated with field paths', () => {
  const err = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      if (e instanceof ConfigError) return `${e.path}: ${e.problem}`;
      throw e;
    }
    return 'ok';
  };
  test.each([
    [() => pa('shop', 'x', { mtls: { mode: 'DISABLE' } }), /^spec\.mtls\.mode: expected one of STRICT, PERMISSIVE, UNSET/],
    [() => pa('shop', 'x', { selector: { matchLabels: { app: 'web' } }, portLevelMtls: { http: { mode: 'STRICT' } } }), /^spec\.portLevelMtls\.http: /],
    [() => pa('shop', 'x', { portLevelMtls: { '9090': { mode: 'STRICT' } } }), /^spec\.selector: is required when portLevelMtls is set/],
    [() => pa('shop', 'x', { mtls: { mode: 'STRICT', extra: 1 } }), /^spec\.mtls\.extra: unknown field/],
    [() => ap('shop', 'x', undefined), /^spec: is required/],
    [() => ap('shop', 'x', { action: 'CUSTOM', rules: [] }), /^spec\.action: CUSTOM/],
    [() => ap('shop', 'x', { rules: [{ to: [{ operation: { ports: ['http'] } }] }] }), /^spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: expected a port number/],
    [() => ap('shop', 'x', { rules: [{ from: [{ source: { principals: ['a*b'] } }] }] }), /^spec\.rules\[0\]\.from\[0\]\.source\.principals\[0\]: only exact/],
  ])('%#', (f, want) => {
    expect(err(f)).toMatch(want);
  });
});

describe('RequestAuthentication', () => {
  const JWKS = JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k1' }] });
  const ra = (ns: string, name: string, spec: unknown) =>
    parseRequestAuthenticationResource({ apiVersion: 'policy.wren.io/v1alpha1', kind: 'RequestAuthentication', metadata: { name, namespace: ns }, spec }, '');
  const rule = (issuer: string) => ({ issuer, jwks: JWKS });
  const withRa = (...requestAuthentications: KRequestAuthentication[]): PolicyObjects => ({ peerAuthentications: [], authorizationPolicies: [], requestAuthentications });

  test('the jwtRules of every selecting policy (workload namespace and wren-system), by namespace/name', () => {
    const p = resolveInboundPolicy(
      withRa(
        ra('shop', 'b-web', { selector: { matchLabels: { app: 'web' } }, jwtRules: [rule('https://b')] }),
        ra('shop', 'a-all', { jwtRules: [rule('https://a')] }),
        ra('wren-system', 'mesh', { jwtRules: [rule('https://mesh')] }),
        ra('shop', 'db-only', { selector: { matchLabels: { app: 'db' } }, jwtRules: [rule('https://db')] }),
        ra('other', 'x', { jwtRules: [rule('https://other')] }),
      ),
      web,
    );
    expect(p.jwtRules.map((r) => r.issuer)).toEqual(['https://a', 'https://b', 'https://mesh']);
    expect(p.jwtRules[0]).toMatchObject({ audiences: [], fromHeaders: [], fromParams: [], forwardOriginalToken: false, jwksUri: '', jwksFile: '' });
  });

  test('a workload no RequestAuthentication selects keeps the defaults object', () => {
    expect(resolveInboundPolicy(withRa(ra('shop', 'db', { selector: { matchLabels: { app: 'db' } }, jwtRules: [rule('https://db')] })), web)).toBe(DEFAULT_INBOUND_POLICY);
  });

  test.each([
    [{ jwtRules: [{ jwksUri: 'https://x/jwks' }] }, 'spec.jwtRules[0].issuer', 'expected a string'],
    [{ jwtRules: [{ issuer: 'https://a' }] }, 'spec.jwtRules[0]', 'one of jwksUri, jwks or jwksFile is required'],
    [{ jwtRules: [{ issuer: 'https://a', jwks: JWKS, jwksUri: 'https://a/k' }] }, 'spec.jwtRules[0]', 'only one of'],
    [{ jwtRules: [{ issuer: 'https://a', jwksUri: 'ftp://a/k' }] }, 'spec.jwtRules[0].jwksUri', 'expected to match'],
    // Credentials in the authority: fetch refuses them, and the URI is shown in logs and on the metrics port.
    [{ jwtRules: [{ issuer: 'https://a', jwksUri: 'https://svc:S3cr3t@a/k' }] }, 'spec.jwtRules[0].jwksUri', 'expected to match'],
    [{ jwtRules: [{ issuer: 'https://a', jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}' }] }, 'spec.jwtRules[0].jwks.keys[0].kty', 'symmetric keys'],
    [{ jwtRules: [{ issuer: 'https://a', jwks: '{"keys":[{"kty":"EC","d":"x"}]}' }] }, 'spec.jwtRules[0].jwks.keys[0]', 'private key'],
    [{ jwtRules: [{ issuer: 'https://a', jwks: 'nope' }] }, 'spec.jwtRules[0].jwks', 'invalid JSON'],
    // An RSA private key without `d` is still one (RFC 7518 section 6.3.2).
    [{ jwtRules: [{ issuer: 'https://a', jwks: '{"keys":[{"kty":"RSA","n":"x","e":"AQAB","p":"x","q":"y"}]}' }] }, 'spec.jwtRules[0].jwks.keys[0]', 'private key'],
    [{ jwtRules: [rule('https://a'), rule('https://a')] }, 'spec.jwtRules[1].issuer', 'duplicate issuer'],
    [{ jwtRules: [{ ...rule('https://a'), fromHeaders: [{ prefix: 'Bearer ' }] }] }, 'spec.jwtRules[0].fromHeaders[0].name', 'expected a string'],
    [{ jwtRules: [{ ...rule('https://a'), outputClaimToHeaders: [{ header: 'x y', claim: 'sub' }] }] }, 'spec.jwtRules[0].outputClaimToHeaders[0].header', 'expected to match'],
    [{ jwtRules: [{ ...rule('https://a'), forwardToken: true }] }, 'spec.jwtRules[0].forwardToken', 'unknown field'],
  ])('invalid %j is rejected at %s', (spec, path, problem) => {
    let err: unknown;
    try {
      ra('shop', 'bad', spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(path);
    expect((err as ConfigError).problem).toContain(problem);
  });

  test('header names are stored lower-case', () => {
    const r = ra('shop', 'h', { jwtRules: [{ ...rule('https://a'), fromHeaders: [{ name: 'X-Jwt' }], outputClaimToHeaders: [{ header: 'X-Sub', claim: 'sub' }] }] });
    expect(r.jwtRules[0].fromHeaders).toEqual([{ name: 'x-jwt', prefix: '' }]);
    expect(r.jwtRules[0].outputClaimToHeaders).toEqual([{ header: 'x-sub', claim: 'sub' }]);
  });
});

test('an inline JWKS that is not JSON is refused without quoting it (it may hold a private key pasted by mistake)', () => {
  let err: unknown;
  try {
    parseJwksText('{"keys":[{"kty":"RSA","d":"SECRETPART', 'jwks');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).problem).toMatch(/^expected a JSON Web Key Set \(JSON\), got invalid JSON( at position \d+)?$/);
  expect(String((err as Error).message)).not.toContain('SECRETPART');
});
