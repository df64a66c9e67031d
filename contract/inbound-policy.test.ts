import { DEFAULT_INBOUND_POLICY } from './defaults.js';
import { fullResponse, inboundPolicyFromJson, inboundPolicyToJson, loadDiscoveryProto, type DiscoveryRequest } from './discovery.js';
import { parseInboundPolicy } from './parse.js';
import { ConfigError } from '../common/schema.js';

const policy = parseInboundPolicy(
  {
    mtls: { mode: 'PERMISSIVE' },
    portLevelMtls: { '8443': { mode: 'STRICT' } },
    authorizationPolicies: [
      { name: 'shop/allow', action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'], unauthenticated: false } }], to: [{ operation: { ports: ['8080'], paths: ['/api/*'] } }] }] },
      { name: 'shop/deny', action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-debug]', notValues: ['0'] }] }, {}] },
      { name: 'shop/none', action: 'AUDIT' },
    ],
  },
  'policy',
);

const pathOf = (raw: unknown): string => {
  try {
    parseInboundPolicy(raw, 'policy');
  } catch (e) {
    if (e instanceof ConfigError) return `${e.path}: ${e.problem}`;
    throw e;
  }
  return 'ok';
};

describe('parseInboundPolicy', () => {
  test('defaults: STRICT, no overrides, no authorization', () => {
    expect(parseInboundPolicy(undefined, 'policy')).toEqual(DEFAULT_INBOUND_POLICY);
    expect(policy.authorizationPolicies[2].rules).toEqual([]);
    expect(policy.authorizationPolicies[1].rules[1]).toEqual({ from: [], to: [], when: [] });
  });

  test.each([
    [{ mtls: { mode: 'DISABLE' } }, /^policy\.mtls\.mode: expected one of STRICT, PERMISSIVE/],
    [{ portLevelMtls: { http: { mode: 'STRICT' } } }, /^policy\.portLevelMtls\.http: expected a port number/],
    [{ portLevelMtls: { '70000': { mode: 'STRICT' } } }, /^policy\.portLevelMtls\.70000: /],
    [{ portLevelMtls: { '9090': {} } }, /^policy\.portLevelMtls\.9090\.mode: /],
    [{ authorizationPolicies: [{ name: 'a/b', action: 'CUSTOM' }] }, /^policy\.authorizationPolicies\[0\]\.action: CUSTOM \(external authorization\) is not supported/],
    [{ authorizationPolicies: [{ name: 'a/b', action: 'REJECT' }] }, /^policy\.authorizationPolicies\[0\]\.action: expected one of ALLOW, DENY, AUDIT/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ from: [{ source: { principals: ['td/ns/*/sa/x'] } }] }] }] }, /^policy\.authorizationPolicies\[0\]\.rules\[0\]\.from\[0\]\.source\.principals\[0\]: only exact/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ from: [{ source: { principals: ['*x*'] } }] }] }] }, /principals\[0\]: only exact/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ from: [{}] }] }] }, /^policy\.authorizationPolicies\[0\]\.rules\[0\]\.from\[0\]\.source: is required/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ to: [{ operation: { ports: ['0'] } }] }] }] }, /rules\[0\]\.to\[0\]\.operation\.ports\[0\]: expected a port number 1-65535/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ to: [{ operation: { ports: [8080] } }] }] }] }, /operation\.ports\[0\]: expected a string/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ to: [{ operation: { verbs: ['GET'] } }] }] }] }, /operation\.verbs: unknown field/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ when: [{ key: 'request.auth.claims[]', values: ['x'] }] }] }] }, /when\[0\]\.key: expected to match/],
    [{ authorizationPolicies: [{ name: 'a/b', rules: [{ when: [{ key: 'source.namespace' }] }] }] }, /when\[0\]\.values: values or notValues must be set/],
  ])('%j is rejected at its field path', (raw, want) => {
    expect(pathOf(raw)).toMatch(want);
  });

  test("a condition value in no supported match form is refused without quoting it (a request.headers[x-api-key] value is a key): the '*' is named by its position; another field's value is still quoted", () => {
    for (const f of ['values', 'notValues']) {
      const got = pathOf({ authorizationPolicies: [{ name: 'a/b', rules: [{ when: [{ key: 'request.headers[x-api-key]', [f]: ['sk-live*7f3a9c'] }] }] }] });
      expect(got).toMatch(new RegExp(`when\\[0\\]\\.${f}\\[0\\]: only exact "x", prefix "x\\*", suffix "\\*x" and presence "\\*" matches are supported, got a value \\(not shown: it may be a credential\\) with "\\*" at character 8 of 14`));
      expect(got).not.toContain('sk-live');
    }
    expect(pathOf({ authorizationPolicies: [{ name: 'a/b', rules: [{ when: [{ key: 'request.auth.claims[k]', values: [''] }] }] }] })).toMatch(/when\[0\]\.values\[0\]: an empty value matches nothing/);
    expect(pathOf({ authorizationPolicies: [{ name: 'a/b', rules: [{ from: [{ source: { principals: ['td/ns/*/sa/x'] } }] }] }] })).toContain('"td/ns/*/sa/x"');
  });
});

/**
 * Values the authorizer can never match (a lower-case method, a path without its "/", a
 * destination.port that is no port) are read as matching nothing on the wire and in the
 * static `policy:`, as by the release before: a control plane of that release sends them,
 * and refusing them would refuse the whole inbound policy (adv13 D1).
 */
test.each([
  [{ when: [{ key: 'destination.port', values: ['http'] }] }],
  [{ when: [{ key: 'destination.port', notValues: ['80*'] }] }],
  [{ to: [{ operation: { methods: ['get'] } }] }],
  [{ to: [{ operation: { notMethods: ['Post*'] } }] }],
  [{ to: [{ operation: { paths: ['admin'] } }] }],
  [{ to: [{ operation: { notPaths: ['/admin?x=1'] } }] }],
])('a value that never matches is accepted in the model form: %j', (rule) => {
  expect(pathOf({ authorizationPolicies: [{ name: 'a/b', rules: [rule] }] })).toBe('ok');
});

test('the model form keeps what the resource form refuses as a mistake: an empty source or operation means "any", a DENY without rules denies nothing', () => {
  // The resolved policy the authorizer compiles (static `policy:`, the discovery stream); the CRD form refuses these (test/policy-manifests.test.ts).
  expect(pathOf({ authorizationPolicies: [{ name: 'a/b', rules: [{ from: [{ source: {} }], to: [{ operation: {} }] }] }, { name: 'a/c', action: 'DENY' }] })).toBe('ok');
});

describe('inbound policy on the wire', () => {
  test('defaults travel as "", anything else as compact JSON that parses back to the same policy', () => {
    expect(inboundPolicyToJson(DEFAULT_INBOUND_POLICY)).toBe('');
    expect(inboundPolicyToJson(parseInboundPolicy({}, 'p'))).toBe('');
    const json = inboundPolicyToJson(policy);
    expect(json).not.toContain('[]');
    expect(inboundPolicyFromJson(json, 'inboundPolicy')).toEqual(policy);
    expect(inboundPolicyFromJson('', 'inboundPolicy')).toBe(DEFAULT_INBOUND_POLICY);
    expect(() => inboundPolicyFromJson('{"mtls":{"mode":"OFF"}}', 'inboundPolicy')).toThrow(/^inboundPolicy\.mtls\.mode: /);
    expect(() => inboundPolicyFromJson('{nope', 'inboundPolicy')).toThrow(/^inboundPolicy: invalid JSON/);
  });

  test('a response with the policy appended as a second encoded message decodes as one response carrying it', () => {
    const proto = loadDiscoveryProto();
    const base = proto.encodeResponse(fullResponse('e-1', 'f1', []));
    const suffix = proto.encodeResponse({ inboundPolicy: { policyJson: inboundPolicyToJson(policy) } } as never);
    const decoded = proto.decodeResponse(Buffer.concat([base, suffix]));
    expect(decoded).toMatchObject({ version: 'e-1', nonce: 'f1', full: true });
    expect(inboundPolicyFromJson(decoded.inboundPolicy!.policyJson, 'p')).toEqual(policy);
    // Absent means "no policy in this response"; present-but-empty means the defaults.
    expect(proto.decodeResponse(base).inboundPolicy ?? null).toBeNull();
    const dflt = proto.decodeResponse(Buffer.concat([base, proto.encodeResponse({ inboundPolicy: { policyJson: '' } } as never)]));
    expect(dflt.inboundPolicy).toEqual({ policyJson: '', opaquePorts: [] }); // no opaque ports: decoded as none
  });

  test('Subscribe carries the workload labels', () => {
    const m = loadDiscoveryProto().Client.service.Stream;
    const req: DiscoveryRequest = { subscribe: { identity: { spiffeId: 'spiffe://td/ns/a/sa/b', namespace: 'a', pod: 'b-0', labels: { app: 'b', version: 'v2' } }, services: [], lastVersion: '' } };
    const back = m.requestDeserialize(m.requestSerialize(req)) as { subscribe: { identity: { labels: Record<string, string> } } };
    expect(back.subscribe.identity.labels).toEqual({ app: 'b', version: 'v2' });
  });
});

test('jwtRules survive the wire: model -> JSON -> the parser the proxy validates with', () => {
  const withJwt = parseInboundPolicy(
    {
      jwtRules: [
        { issuer: 'https://a', jwksUri: 'https://a/jwks', fromHeaders: [{ name: 'X-Jwt' }], outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }] },
        { issuer: 'https://b', jwksFile: '/etc/b.json', audiences: ['web'], forwardOriginalToken: true, outputPayloadToHeader: 'x-payload', fromParams: ['t'] },
      ],
      authorizationPolicies: [{ name: 'a/b', rules: [{ from: [{ source: { requestPrincipals: ['https://a/*'] } }], when: [{ key: 'request.auth.claims[x][y]', values: ['1'] }] }] }],
    },
    'policy',
  );
  expect(inboundPolicyFromJson(inboundPolicyToJson(withJwt), 'wire')).toEqual(withJwt);
});

/*
 * A refused jwksUri is quoted in the refusal, which the control plane logs and lists
 * (/debug/rejected, `wren check`) and `wren proxy` prints for its own config: a password in
 * its userinfo, or a key in its query, was quoted with it (adv32).
 */
test.each([
  ['https://svc:S3cr3t-pw@idp.example.com/jwks', 'S3cr3t-pw', '"https://REDACTED@idp.example.com/jwks"', 'no credentials'],
  ['ftp://u:S3cr3t-pw@idp.example.com/k', 'S3cr3t-pw', '"ftp://REDACTED@idp.example.com/k"', 'no credentials'],
  ['https://idp.example.com/jwks?api_key=S3cr3t-key x', 'S3cr3t-key', '"https://idp.example.com/jwks?…"', 'expected to match'],
])('a refused jwksUri %s is quoted without its credentials', (jwksUri, secret, shown, why) => {
  let problem = '';
  try {
    parseInboundPolicy({ mtls: { mode: 'STRICT' }, jwtRules: [{ issuer: 'https://a', jwksUri }] }, 'policy');
  } catch (e) {
    problem = (e as Error).message;
  }
  expect(problem).toContain('policy.jwtRules[0].jwksUri');
  expect(problem).toContain(shown);
  expect(problem).toContain(why);
  expect(problem).not.toContain(secret);
});
