import { loadManifestFile, mergeManifests } from './manifest-loader.js';
import type { KAuthorizationPolicy, KPeerAuthentication } from '../translate/policy-objects.js';
import { resolveInboundPolicy } from '../translate/inbound-policy.js';
import { compileAuthorizer } from '../../proxy/policy/authorizer.js';
import { inboundPolicyFromJson, inboundPolicyToJson } from '../../contract/discovery.js';

const web = (address: string, extra = '') => `kind: MeshService
metadata: { name: web, namespace: shop }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints:
    - { address: ${address}, port: &p 8080 }
${extra}`;

/** 101 aliases: one more than yaml's maxAliasCount, its guard against alias bombs. */
const manyAliases = Array.from({ length: 101 }, (_, i) => `    - { address: 10.0.1.${i + 1}, port: *p }`).join('\n') + '\n';

const endpointsOfWeb = (f: ReturnType<typeof loadManifestFile>) =>
  (f.objects.get('MeshService/shop/web')?.value as { ports: { endpoints: { address: string }[] }[] } | undefined)?.ports[0].endpoints.map((e) => e.address);

describe('YAML that parses but cannot become data is rejected like a syntax error, naming file and document', () => {
  const good = loadManifestFile('mesh/web.yaml', web('10.0.0.1'), undefined);

  test.each([
    ['more than 100 aliases', web('10.0.0.2', manyAliases), /^YAML: document 2: Excessive alias count/],
    ['a merge key to an undefined anchor', web('10.0.0.2').replace('spec:\n', 'spec:\n  <<: *defaults\n'), /^YAML: document 2: Unresolved alias .*defaults/],
  ])('%s: the file keeps its last good objects', (_, bad, reason) => {
    // The bad document is the second one: the first, valid, is not read either (the file keeps all it had, as for a syntax error).
    const f = loadManifestFile('mesh/web.yaml', web('10.0.0.3') + '---\n' + bad, good);
    expect(f.errors).toEqual([expect.stringMatching(new RegExp(`^mesh/web\\.yaml: ${reason.source.slice(1)}`))]);
    expect(f.rejected).toEqual([{ kind: '', namespace: '', name: '', path: '', reason: expect.stringMatching(reason), file: 'mesh/web.yaml' }]);
    expect(endpointsOfWeb(f)).toEqual(['10.0.0.1']);
  });

  test('a new file with such a document holds nothing and says why', () => {
    const f = loadManifestFile('mesh/other.yaml', web('10.0.0.2', manyAliases), undefined);
    expect(f.objects.size).toBe(0);
    expect(f.errors).toEqual([expect.stringMatching(/^mesh\/other\.yaml: YAML: document 1: Excessive alias count/)]);
  });

  test('fewer aliases are read as usual', () => {
    const f = loadManifestFile('mesh/web.yaml', web('10.0.0.2', manyAliases.split('\n').slice(0, 50).join('\n')), undefined);
    expect(f.errors).toEqual([]);
    expect(endpointsOfWeb(f)).toHaveLength(51);
  });
});

describe('an object defined twice is kept once; the other definition is rejected, naming both places', () => {
  const reason = (at: string, kept: string) => `${at}: MeshService shop/web is already defined in ${kept}, which stays in force; this one is ignored`;
  const rejection = (file: string, at: string, kept: string) => ({ kind: 'MeshService', namespace: 'shop', name: 'web', path: 'metadata.name', reason: reason(at, kept), file });

  test('in one file: the first document stays, the second is rejected', () => {
    const f = loadManifestFile('mesh/web.yaml', `${web('10.0.0.1')}---\n${web('10.0.0.2')}`, undefined);
    expect(endpointsOfWeb(f)).toEqual(['10.0.0.1']);
    expect(f.rejected).toEqual([rejection('mesh/web.yaml', 'document 2', 'document 1 of this file')]);
    expect(f.errors).toEqual([`mesh/web.yaml: metadata.name: ${reason('document 2', 'document 1 of this file')}`]);
  });

  test('in one kind: List, by its item', () => {
    const item = (a: string) => `{ kind: MeshService, metadata: { name: web, namespace: shop }, spec: { ports: [{ name: http, port: 80, protocol: http1 }], endpoints: [{ address: ${a}, port: 8080 }] } }`;
    const f = loadManifestFile('mesh/web.yaml', `${web('10.0.0.1')}---\nkind: List\nitems: [${item('10.0.0.2')}, ${item('10.0.0.3')}]\n`, undefined);
    expect(endpointsOfWeb(f)).toEqual(['10.0.0.1']);
    expect(f.rejected.map((r) => r.reason)).toEqual([reason('document 2, items[0]', 'document 1 of this file'), reason('document 2, items[1]', 'document 1 of this file')]);
  });

  const a = loadManifestFile('mesh/00-new.yaml', web('10.0.0.6'), undefined);
  const b = loadManifestFile('mesh/web.yaml', `kind: Pod\nmetadata: { name: p, namespace: shop }\n---\n${web('10.0.0.1')}`, undefined);
  const kept = (m: ReturnType<typeof mergeManifests>) => (m.objects.meshServices ?? []).map((s) => s.ports[0].endpoints[0].address);

  test('across files with none in force yet: the first file by name', () => {
    const m = mergeManifests([['mesh/00-new.yaml', a], ['mesh/web.yaml', b]]);
    expect(kept(m)).toEqual(['10.0.0.6']);
    expect(m.rejected).toEqual([rejection('mesh/web.yaml', 'document 2', 'mesh/00-new.yaml (document 1)')]);
    expect(m.owners.get('MeshService/shop/web')).toBe('mesh/00-new.yaml');
  });

  test('across files: the one in force stays though a new file sorts first; the new one takes over once the other is gone', () => {
    const established = mergeManifests([['mesh/web.yaml', b]]).owners;
    const m = mergeManifests([['mesh/00-new.yaml', a], ['mesh/web.yaml', b]], established);
    expect(kept(m)).toEqual(['10.0.0.1']);
    expect(m.rejected).toEqual([rejection('mesh/00-new.yaml', 'document 1', 'mesh/web.yaml (document 2)')]);
    expect(m.errors).toEqual([`mesh/00-new.yaml: metadata.name: ${reason('document 1', 'mesh/web.yaml (document 2)')}`]);
    expect(m.owners.get('MeshService/shop/web')).toBe('mesh/web.yaml');
    // Removed from web.yaml: the other definition is the only one, so it is the one in force.
    const gone = mergeManifests([['mesh/00-new.yaml', a], ['mesh/web.yaml', loadManifestFile('mesh/web.yaml', '', undefined)]], m.owners);
    expect(kept(gone)).toEqual(['10.0.0.6']);
    expect(gone.rejected).toEqual([]);
  });
});

/**
 * Found by the adversarial review (adv9 D5): the last good version of a refused object is
 * kept only in memory, so after a control-plane restart a refused AuthorizationPolicy was
 * absent, and a workload whose only ALLOW it was became open to every caller. With no last
 * good version, the refused policy is enforced fail-closed for the workloads it selects.
 */
describe('a refused AuthorizationPolicy with no last good version is enforced fail-closed', () => {
  const policy = (rules: string) => `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: only-frontend, namespace: shop }
spec:
  selector: { matchLabels: { app: db } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/shop/sa/frontend"] } }]
${rules}`;
  const good = policy('');
  // Refused: an empty operation would match every request (what a pruned, misspelt field leaves).
  const edited = policy('    - to: [{ operation: {} }]\n');
  const inForce = (f: ReturnType<typeof loadManifestFile>) => f.objects.get('AuthorizationPolicy/shop/only-frontend')?.value as KAuthorizationPolicy | undefined;

  test('while the control plane runs, the last good version stays', () => {
    const v1 = loadManifestFile('mesh/authz.yaml', good, undefined);
    const v2 = loadManifestFile('mesh/authz.yaml', edited, v1);
    expect(inForce(v2)).toBe(inForce(v1));
    expect(v2.rejected).toEqual([expect.not.objectContaining({ failClosed: expect.anything() })]);
  });

  test('after a restart (no previous version) the refused ALLOW is an ALLOW that matches nothing for app=db in shop', () => {
    const v = loadManifestFile('mesh/authz.yaml', edited, undefined);
    expect(inForce(v)).toMatchObject({ namespace: 'shop', selector: { app: 'db' }, policy: { name: 'shop/only-frontend', action: 'ALLOW', rules: [] }, failClosed: { enforced: expect.stringMatching(/^an ALLOW that matches nothing/) } });
    expect(v.rejected).toEqual([
      {
        kind: 'AuthorizationPolicy', namespace: 'shop', name: 'only-frontend', path: 'spec.rules[1].to[0].operation', reason: expect.stringMatching(/^must not be empty/), file: 'mesh/authz.yaml',
        failClosed: 'an ALLOW that matches nothing, for the workloads labelled app=db of namespace shop: they admit only what another ALLOW policy admits',
      },
    ]);
    const merged = mergeManifests([['mesh/authz.yaml', v]]).objects.authorizationPolicies;
    expect(merged.map((p) => [p.policy.name, p.policy.action, p.policy.rules.length])).toEqual([['shop/only-frontend', 'ALLOW', 0]]);
  });

  test('a stand-in is no good version: the next refused version is judged afresh (its selector), a valid one replaces it', () => {
    const v1 = loadManifestFile('mesh/authz.yaml', edited, undefined);
    const v2 = loadManifestFile('mesh/authz.yaml', edited.replace('app: db', 'app: cache'), v1);
    expect(inForce(v2)?.selector).toEqual({ app: 'cache' });
    const v3 = loadManifestFile('mesh/authz.yaml', good, v2);
    expect(inForce(v3)).toMatchObject({ policy: { rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }] } });
    expect(inForce(v3)?.failClosed).toBeUndefined();
    expect(v3.rejected).toEqual([]);
  });

  test('other kinds keep no stand-in: a refused new object is absent, as before', () => {
    const v = loadManifestFile('mesh/jwt.yaml', 'apiVersion: policy.wren.io/v1alpha1\nkind: RequestAuthentication\nmetadata: { name: p, namespace: shop }\nspec: { jwtRules: [{ issuer: "" }] }\n', undefined);
    expect(v.objects.size).toBe(0);
    expect(v.rejected[0].failClosed).toBeUndefined();
  });
});

/**
 * Left open by adv9 D5: a refused PeerAuthentication with no last good version was absent,
 * so after a control-plane restart a namespace STRICT (refused) left the namespace to a
 * mesh-wide PERMISSIVE. It is now enforced as STRICT in its place.
 */
describe('a refused PeerAuthentication with no last good version is enforced as STRICT', () => {
  const peer = (spec: string) => `apiVersion: policy.wren.io/v1alpha1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec:
${spec}`;
  const good = peer('  mtls: { mode: STRICT }\n');
  // portLevelMtls needs a selector: refused at spec.selector.
  const edited = peer('  mtls: { mode: STRICT }\n  portLevelMtls: { "8080": { mode: STRICT } }\n');
  const inForce = (f: ReturnType<typeof loadManifestFile>) => f.objects.get('PeerAuthentication/shop/strict')?.value as KPeerAuthentication | undefined;

  test('while the control plane runs, the last good version stays', () => {
    const v1 = loadManifestFile('mesh/peer.yaml', good, undefined);
    const v2 = loadManifestFile('mesh/peer.yaml', edited.replace('STRICT }\n  port', 'PERMISSIVE }\n  port'), v1);
    expect(inForce(v2)).toBe(inForce(v1));
    expect(v2.rejected).toEqual([expect.not.objectContaining({ failClosed: expect.anything() })]);
  });

  test('after a restart (no previous version) the refused object is STRICT for every workload of shop', () => {
    const v = loadManifestFile('mesh/peer.yaml', edited, undefined);
    expect(inForce(v)).toMatchObject({ name: 'strict', namespace: 'shop', selector: null, mode: 'STRICT', failClosed: { refusal: expect.stringMatching(/^spec\.selector: /) } });
    expect(inForce(v)?.portLevelMtls).toEqual({});
    expect(v.rejected).toEqual([
      {
        kind: 'PeerAuthentication', namespace: 'shop', name: 'strict', path: 'spec.selector', reason: expect.stringMatching(/^is required when portLevelMtls is set/), file: 'mesh/peer.yaml',
        failClosed: 'mTLS STRICT on every port, for every workload of namespace shop: plaintext is refused',
      },
    ]);
    expect(mergeManifests([['mesh/peer.yaml', v]]).objects.peerAuthentications.map((p) => [p.name, p.mode, p.failClosed !== undefined])).toEqual([['strict', 'STRICT', true]]);
  });

  test('a stand-in is no good version: the next refused version is judged afresh, a valid one replaces it', () => {
    const v1 = loadManifestFile('mesh/peer.yaml', edited, undefined);
    const v2 = loadManifestFile('mesh/peer.yaml', edited.replace('spec:\n', 'spec:\n  selector: {}\n'), v1);
    expect(inForce(v2)?.selector).toEqual({});
    const v3 = loadManifestFile('mesh/peer.yaml', peer('  mtls: { mode: PERMISSIVE }\n'), v2);
    expect(inForce(v3)).toMatchObject({ selector: null, mode: 'PERMISSIVE' });
    expect(inForce(v3)?.failClosed).toBeUndefined();
    expect(v3.rejected).toEqual([]);
  });
});

/**
 * Found by the adversarial review (adv13 D1): objects the release before accepted, with a
 * value that can never match, were refused by the next one and, on any control-plane start
 * (the upgrade itself), enforced fail-closed: a DENY without rules in wren-system denied every
 * request of the mesh, an ALLOW with one never-matching rule admitted nobody. They are read
 * as before (the never-matching value matches nothing) and reported as warnings.
 */
describe('a control plane started on objects with values that never match enforces what the release before did', () => {
  /** What the workload's proxy decides: the policies in force, resolved, through the wire form and compiled. */
  const decide = (yaml: string, workload: { namespace: string; labels: Record<string, string> }, principal: string, method = 'GET', path = '/') => {
    const f = loadManifestFile('mesh/authz.yaml', yaml, undefined); // a control plane that just started: no previous version
    const objects = mergeManifests([['mesh/authz.yaml', f]]).objects;
    const wire = inboundPolicyFromJson(inboundPolicyToJson(resolveInboundPolicy(objects, workload)), 'p');
    const d = compileAuthorizer(wire.authorizationPolicies).authorize({ principal, port: 8080, http: { method, path, headers: {} } });
    return { file: f, allow: d.allow };
  };
  const ap = (name: string, namespace: string, spec: string) => `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}`;
  const ledger = { namespace: 'payments', labels: { app: 'ledger' } };

  test.each([
    ['a DENY without rules in wren-system', ap('placeholder', 'wren-system', '  action: DENY\n'), 'spec.rules: a DENY policy without rules denies nothing'],
    ['a DENY on methods ["get"] in wren-system', ap('no-lower-get', 'wren-system', '  action: DENY\n  rules: [{ to: [{ operation: { methods: ["get"] } }] }]\n'), 'spec.rules[0].to[0].operation.methods[0]: "get" never matches'],
    ['a DENY on paths ["admin"] in wren-system', ap('no-admin', 'wren-system', '  action: DENY\n  rules: [{ to: [{ operation: { paths: ["admin"] } }] }]\n'), 'spec.rules[0].to[0].operation.paths[0]: "admin" never matches'],
    ['a DENY when destination.port ["http"] in wren-system', ap('no-http', 'wren-system', '  action: DENY\n  rules: [{ when: [{ key: destination.port, values: ["http"] }] }]\n'), 'spec.rules[0].when[0].values[0]: "http" never matches'],
  ])('%s denies nothing, with a warning', (_name, yaml, warning) => {
    const { file, allow } = decide(yaml, ledger, 'spiffe://cluster.local/ns/payments/sa/web');
    expect(allow).toBe(true);
    expect(file.errors).toEqual([]);
    expect(file.rejected).toEqual([]);
    expect(file.warnings).toEqual([expect.stringContaining(`mesh/authz.yaml: AuthorizationPolicy wren-system/`)]);
    expect(file.warnings[0]).toContain(warning);
  });

  test('an ALLOW with one valid rule and one that never matches still admits its legitimate caller, and only it', () => {
    const yaml = ap('db-callers', 'shop', `  selector: { matchLabels: { app: db } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/shop/sa/frontend"] } }]
    - to: [{ operation: { methods: ["get"], paths: ["/public*"] } }]
`);
    const db = { namespace: 'shop', labels: { app: 'db' } };
    const frontend = decide(yaml, db, 'spiffe://cluster.local/ns/shop/sa/frontend', 'POST', '/orders');
    expect(frontend.allow).toBe(true);
    expect(frontend.file.warnings).toEqual([expect.stringContaining('spec.rules[1].to[0].operation.methods[0]: "get" never matches')]);
    // The never-matching rule admits nobody: GET /public from another caller is denied, as before.
    expect(decide(yaml, db, 'spiffe://cluster.local/ns/public/sa/attacker', 'GET', '/public/x').allow).toBe(false);
  });
});

/**
 * Found by the adversarial review (adv13 D2): the same AuthorizationPolicy in a.yaml (refused)
 * and b.yaml (valid): the merge kept a.yaml's fail-closed stand-in (the first file) and
 * rejected the valid copy as a duplicate, so the frontend was denied.
 */
test('a parsed AuthorizationPolicy wins over a fail-closed stand-in for the same object in another file', () => {
  const bad = `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: only-frontend, namespace: shop }
spec:
  selector: { matchLabels: { app: db } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/shop/sa/frontend"] } }], to: [{ operation: {} }] }]
`;
  const good = bad.replace(', to: [{ operation: {} }]', '');
  const a = loadManifestFile('mesh/a.yaml', bad, undefined);
  const b = loadManifestFile('mesh/b.yaml', good, undefined);
  expect((a.objects.get('AuthorizationPolicy/shop/only-frontend')?.value as KAuthorizationPolicy).failClosed).toBeDefined();
  for (const established of [new Map<string, string>(), new Map([['AuthorizationPolicy/shop/only-frontend', 'mesh/a.yaml']])]) {
    const m = mergeManifests([['mesh/a.yaml', a], ['mesh/b.yaml', b]], established);
    expect(m.objects.authorizationPolicies).toEqual([b.objects.get('AuthorizationPolicy/shop/only-frontend')!.value]);
    expect(m.owners.get('AuthorizationPolicy/shop/only-frontend')).toBe('mesh/b.yaml');
    expect(m.errors).toEqual([expect.stringMatching(/^mesh\/a\.yaml: metadata\.name: .* already defined in mesh\/b\.yaml/)]);
  }
  // Two stand-ins, or two parsed copies: the first (or established) file, as before.
  const m2 = mergeManifests([['mesh/a.yaml', a], ['mesh/c.yaml', loadManifestFile('mesh/c.yaml', bad, undefined)]]);
  expect(m2.owners.get('AuthorizationPolicy/shop/only-frontend')).toBe('mesh/a.yaml');
});

/**
 * Found by the adversarial review (adv13 lead): a refused AuthorizationPolicy whose
 * metadata.namespace is YAML null (`namespace:` rendered empty) or "" got no stand-in (its
 * namespace was no DNS label) while the loader filed it under `default`: the workloads it
 * was meant for were left with no policy, open to every caller.
 */
test.each([['null', ''], ['""', '""']])('a refused AuthorizationPolicy with namespace %s is enforced fail-closed in default, where the loader files it', (_name, ns) => {
  const yaml = `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: only-frontend, namespace: ${ns} }
spec:
  selector: { matchLabels: { app: db } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/frontend"] } }], to: [{ operation: {} }] }]
`;
  const f = loadManifestFile('mesh/a.yaml', yaml, undefined);
  expect([...f.objects.keys()]).toEqual(['AuthorizationPolicy/default/only-frontend']);
  expect(f.objects.get('AuthorizationPolicy/default/only-frontend')?.value).toMatchObject({ namespace: 'default', selector: { app: 'db' }, policy: { name: 'default/only-frontend', action: 'ALLOW', rules: [] } });
  expect(f.rejected).toEqual([expect.objectContaining({ namespace: 'default', name: 'only-frontend', failClosed: expect.stringMatching(/^an ALLOW that matches nothing, for the workloads labelled app=db of namespace default/) })]);
});

/** The same for a PeerAuthentication: refused with a YAML null or "" namespace, it is STRICT in default, not absent. */
test.each([['null', ''], ['""', '""']])('a refused PeerAuthentication with namespace %s is enforced as STRICT in default, where the loader files it', (_name, ns) => {
  const yaml = `apiVersion: policy.wren.io/v1alpha1
kind: PeerAuthentication
metadata: { name: strict, namespace: ${ns} }
spec:
  mtls: { mode: STRICT }
  portLevelMtls: { "8080": { mode: STRICT } }
`;
  const f = loadManifestFile('mesh/peer.yaml', yaml, undefined);
  expect([...f.objects.keys()]).toEqual(['PeerAuthentication/default/strict']);
  expect(f.objects.get('PeerAuthentication/default/strict')?.value).toMatchObject({ namespace: 'default', selector: null, mode: 'STRICT', failClosed: expect.anything() });
  expect(f.rejected).toEqual([expect.objectContaining({ namespace: 'default', name: 'strict', failClosed: expect.stringMatching(/^mTLS STRICT on every port, for every workload of namespace default/) })]);
});
