import { loadCrdSchemas, validateResource } from '../manifests/validate.js';
import { parseAuthorizationPolicyResource, parsePeerAuthenticationResource, parseRequestAuthenticationResource } from '../control-plane/translate/policy-objects.js';

/**
 * Found by the adversary review (crd-pruning-widens-allow).
 *
 * What a user does: applies an Istio-style ALLOW AuthorizationPolicy that restricts callers
 * by a field Wren does not support (`source.ipBlocks`, `source.serviceAccounts`,
 * `operation.hosts`), with any client that does not ask for strict field validation:
 * Helm, Argo CD, Flux, client libraries, `kubectl apply --validate=warn|false`.
 *
 * What happens: the policy.wren.io CRD (manifests/crds/authorizationpolicy.yaml) is a
 * structural schema whose `source` and `operation` objects do not preserve unknown fields,
 * so the API server PRUNES the unsupported field (answering with a warning at most:
 * fieldValidation defaults to Warn for clients that do not set it) and stores
 * `from: [{ source: {} }]` / `to: [{ operation: {} }]`. That passes the CRD schema and the
 * control plane's strict parser, and an empty source/operation matches every request: the
 * ALLOW meant for one subnet or one host now allows every caller. docs/policy.md promises
 * "ipBlocks, remoteIpBlocks, hosts, serviceAccounts ... are not supported; the CRD and the
 * parsers reject them" -- after pruning nobody sees them to reject.
 *
 * What should happen: an unsupported restriction must never turn into no restriction.
 * Either the CRD keeps unknown fields there (x-kubernetes-preserve-unknown-fields) so the
 * parser rejects them with their path, or an empty `source`/`operation` is invalid
 * (minProperties: 1, as Istio's validation refuses an empty source/operation), so the
 * pruned object is refused at admission.
 *
 * Pruning is modelled below exactly as the API server does it for a structural schema
 * (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning).
 */
type Json = Record<string, unknown>;

function prune(value: unknown, schema: Json | undefined): unknown {
  if (!schema || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => prune(v, schema['items'] as Json | undefined));
  const props = schema['properties'] as Record<string, Json> | undefined;
  const additional = schema['additionalProperties'] as Json | undefined;
  const out: Json = {};
  for (const [k, v] of Object.entries(value as Json)) {
    if (props && k in props) out[k] = prune(v, props[k]);
    else if (typeof additional === 'object') out[k] = prune(v, additional);
    else if (schema['x-kubernetes-preserve-unknown-fields'] === true || (!props && !additional)) out[k] = v;
    // else: pruned (an unknown field of a structural object)
  }
  return out;
}

const crd = loadCrdSchemas().find('policy.wren.io/v1alpha1', 'AuthorizationPolicy');

const policy = (rule: Json): Json => ({
  apiVersion: 'policy.wren.io/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'only-office', namespace: 'shop' },
  spec: { selector: { matchLabels: { app: 'admin' } }, action: 'ALLOW', rules: [rule] },
});

test.each([
  ['source.ipBlocks', { from: [{ source: { ipBlocks: ['10.20.0.0/16'] } }] }],
  ['source.serviceAccounts', { from: [{ source: { serviceAccounts: ['shop/ops'] } }] }],
  ['operation.hosts', { to: [{ operation: { hosts: ['admin.internal'] } }] }],
])('an ALLOW restricted by unsupported %s is refused, not widened to everyone', (_field, rule) => {
  expect(crd).toBeDefined();
  const stored = prune(policy(rule), crd!.openApi);
  // What etcd holds and the control plane's informer hands to the parser.
  let accepted = true;
  try {
    if (!validateResource(stored).ok) accepted = false;
    else parseAuthorizationPolicyResource(stored, '');
  } catch {
    accepted = false;
  }
  // Accepted means: an ALLOW whose one rule has an empty source/operation, matching every caller.
  expect(accepted ? { acceptedRule: (stored as { spec: { rules: unknown[] } }).spec.rules[0] } : 'refused').toBe('refused');
});

/**
 * The same pruning on Istio's `targetRefs` (security/v1beta1 AuthorizationPolicy, the
 * replacement of `selector` for Services and Gateways): pruned, the policy has no selector
 * and applies to EVERY workload of the namespace. An ALLOW meant for the `frontend`
 * Service ("callers from namespace public may call it") then also admits namespace
 * `public` to `db`, whose own ALLOW only names `backend`: ALLOW policies are OR-ed.
 */
test('an ALLOW scoped by unsupported targetRefs is refused, not applied to the whole namespace', () => {
  const obj = {
    apiVersion: 'policy.wren.io/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'public-to-frontend', namespace: 'shop' },
    spec: { targetRefs: [{ kind: 'Service', group: '', name: 'frontend' }], action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['public'] } }] }] },
  };
  const stored = prune(obj, crd!.openApi);
  let accepted: unknown = 'refused';
  try {
    if (validateResource(stored).ok) accepted = { selector: parseAuthorizationPolicyResource(stored, '').selector };
  } catch {
    accepted = 'refused';
  }
  // { selector: null } = every workload in namespace shop.
  expect(accepted).toBe('refused');
});

/**
 * Found by the adversarial review (adv9 D3): a MISSPELT field is pruned the same way. A
 * source or operation whose only field was misspelt (`principal:` for `principals:`) is
 * stored as `source: {}` / `operation: {}`, which matched every caller or request: an
 * ALLOW for one caller became an ALLOW for everyone. Istio's validation refuses an empty
 * source and operation ("`from.source` must not be empty"), and so do the CRD (at
 * admission, after pruning) and the control plane's parser.
 */
const allowOnly = (spec: Json): Json => ({
  apiVersion: 'policy.wren.io/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'only-frontend', namespace: 'shop' },
  spec: { selector: { matchLabels: { app: 'admin' } }, action: 'ALLOW', ...spec },
});

/** What happens to the object after the API server pruned it: refused by the CRD, refused by the parser, or accepted as stored. */
function afterPruning(obj: Json): { crd: string; parser: string; stored: unknown } {
  const stored = prune(obj, crd!.openApi) as Json;
  const v = validateResource(stored);
  let parser = 'accepted';
  try {
    parseAuthorizationPolicyResource(stored, '');
  } catch (e) {
    parser = `refused at ${(e as { path?: string }).path}`;
  }
  return { crd: v.ok ? 'accepted' : `refused at ${v.errors.map((e) => e.path).join(', ')}`, parser, stored: stored.spec };
}

test.each([
  ['source.principal', { from: [{ source: { principal: ['cluster.local/ns/shop/sa/frontend'] } }] }, 'spec.rules[0].from[0].source'],
  ['source.namespace', { from: [{ source: { namespace: ['shop'] } }] }, 'spec.rules[0].from[0].source'],
  ['source.requestPrincipal', { from: [{ source: { requestPrincipal: ['https://idp/alice'] } }] }, 'spec.rules[0].from[0].source'],
  ['operation.path', { to: [{ operation: { path: ['/public/*'] } }] }, 'spec.rules[0].to[0].operation'],
  ['operation.method', { to: [{ operation: { method: ['GET'] } }] }, 'spec.rules[0].to[0].operation'],
  ['operation.port', { to: [{ operation: { port: ['8080'] } }] }, 'spec.rules[0].to[0].operation'],
])('an ALLOW whose only restriction is misspelt (%s) is refused after pruning, not widened to everyone', (_field, rule, path) => {
  const r = afterPruning(allowOnly({ rules: [rule] }));
  expect({ crd: r.crd.startsWith(`refused at ${path}`), parser: r.parser }).toEqual({ crd: true, parser: `refused at ${path}` });
});

test('an ALLOW whose selector has a misspelt matchLabels is refused after pruning, not applied to the whole namespace', () => {
  const obj = allowOnly({ rules: [{ from: [{ source: { namespaces: ['public'] } }] }] });
  (obj.spec as Json).selector = { matchLabel: { app: 'admin' } };
  expect(afterPruning(obj)).toMatchObject({ crd: 'refused at spec.selector', parser: 'refused at spec.selector' });
});

/**
 * The CRD refuses it at `kubectl apply`. The parser reads a DENY without rules as what it
 * is, a DENY that denies nothing (adv13 D1: refused, it was enforced fail-closed as a DENY of
 * every request when the control plane started on one stored before the CRD changed), and
 * reports it as a warning.
 */
test('a DENY whose rules are misspelt is refused after pruning by the CRD; the parser reads it as denying nothing, with a warning', () => {
  const obj = allowOnly({ action: 'DENY', rule: [{ from: [{ source: { namespaces: ['public'] } }] }] });
  expect(afterPruning(obj)).toMatchObject({ crd: 'refused at spec.rules', parser: 'accepted' });
  expect(parseAuthorizationPolicyResource(prune(obj, crd!.openApi), '').warnings).toEqual([expect.stringMatching(/^spec\.rules: a DENY policy without rules denies nothing/)]);
});

/**
 * The same misspelt `matchLabel:` on a PeerAuthentication or a RequestAuthentication: pruned
 * to `selector: {}`, which was read as "no selector", so a workload's PERMISSIVE meant for one
 * legacy workload (under a STRICT namespace) opened every workload of the namespace to
 * plaintext. Refused by the CRD and the parser, as for an AuthorizationPolicy.
 */
test.each([
  ['PeerAuthentication', parsePeerAuthenticationResource, { selector: { matchLabel: { app: 'legacy' } }, mtls: { mode: 'PERMISSIVE' } }],
  ['RequestAuthentication', parseRequestAuthenticationResource, { selector: { matchLabel: { app: 'api' } }, jwtRules: [{ issuer: 'https://id.example.com', jwksUri: 'https://id.example.com/jwks' }] }],
])('a %s whose selector has a misspelt matchLabels is refused after pruning, not applied to the whole namespace', (kind, parse, spec) => {
  const schema = loadCrdSchemas().find('policy.wren.io/v1alpha1', kind);
  expect(schema).toBeDefined();
  const stored = prune({ apiVersion: 'policy.wren.io/v1alpha1', kind, metadata: { name: 'p', namespace: 'shop' }, spec }, schema!.openApi) as Json;
  expect((stored.spec as Json).selector).toEqual({});
  const v = validateResource(stored);
  let parser = 'accepted';
  try {
    parse(stored, '');
  } catch (e) {
    parser = `refused at ${(e as { path?: string }).path}`;
  }
  expect({ crd: v.ok ? 'accepted' : v.errors.map((e) => e.path), parser }).toEqual({ crd: ['spec.selector'], parser: 'refused at spec.selector' });
});
