import type { InboundPolicy } from '../contract/model.js';
import type { ControlPlane } from '../control-plane/server.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { endpointSliceJson, FakeKubeApi, podJson, serviceJson } from './fake-kube-api.js';
import { waitFor } from './control-plane-harness.js';
import { startKubeControlPlane } from './helpers/kube-control-plane.js';
import { subscriber } from './helpers/subscriber.js';

/** PeerAuthentication and AuthorizationPolicy watched through the real client-node informers, resolved per subscriber. */
let api: FakeKubeApi;
let cp: ControlPlane;
const clients: DiscoveryClient[] = [];

const meta = (kind: string, name: string, ns: string) => ({ apiVersion: 'policy.wren.io/v1alpha1', kind, metadata: { name, namespace: ns } });
const allowFrontend = (ports: unknown[] = ['8080']) => ({
  ...meta('AuthorizationPolicy', 'web-allow', 'shop'),
  spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }], to: [{ operation: { ports } }] }] },
});

beforeEach(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  api.apply('pods', podJson('web-a', 'shop', 'web-sa', '10.0.0.1'));
  api.apply('peerauthentications', { ...meta('PeerAuthentication', 'default', 'wren-system'), spec: { mtls: { mode: 'PERMISSIVE' } } });
  api.apply('peerauthentications', { ...meta('PeerAuthentication', 'web', 'shop'), spec: { selector: { matchLabels: { app: 'web' } }, portLevelMtls: { '9090': { mode: 'STRICT' } } } });
  api.apply('authorizationpolicies', allowFrontend());
  cp = await startKubeControlPlane(api, { seed: 11 });
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await cp.close(100);
  await api.close();
});

const subscribe = (pod: string, labels: Record<string, string> = {}): DiscoveryClient => {
  const c = subscriber(cp, { namespace: 'shop', serviceAccount: 'web-sa', pod, labels });
  clients.push(c);
  return c;
};
const policyOf = (c: DiscoveryClient): InboundPolicy | undefined => c.current()?.inboundPolicy;

test('a subscriber gets the policy of its pod: mesh-wide mode, workload port overrides, selected authorization', async () => {
  const c = subscribe('web-a');
  const snap = await c.onFirstSnapshot();
  expect(snap.inboundPolicy).toMatchObject({ mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { '9090': { mode: 'STRICT' } } });
  expect(snap.inboundPolicy!.authorizationPolicies.map((p) => p.name)).toEqual(['shop/web-allow']);
});

test('an invalid update is rejected (counted) and the last good policy stays; a delete removes it', async () => {
  const c = subscribe('web-a');
  await c.onFirstSnapshot();
  api.apply('authorizationpolicies', allowFrontend(['http']));
  await waitFor(async () => {
    const text = await cp.metrics.registry.metrics();
    return /wren_cp_invalid_objects_total\{source="kubernetes"\} [1-9]/.test(text);
  }, 'rejection counted');
  expect(policyOf(c)!.authorizationPolicies[0].rules[0].to[0].operation.ports).toEqual(['8080']);
  api.apply('authorizationpolicies', allowFrontend(['8443']));
  await waitFor(() => policyOf(c)?.authorizationPolicies[0]?.rules[0].to[0].operation.ports[0] === '8443', 'fixed version pushed');
  api.delete('authorizationpolicies', 'shop', 'web-allow');
  await waitFor(() => policyOf(c)?.authorizationPolicies.length === 0, 'delete pushed');
  api.delete('peerauthentications', 'wren-system', 'default');
  await waitFor(() => policyOf(c)?.mtls.mode === 'STRICT', 'mesh-wide default gone');
});

test('for a pod the control plane does not know, the labels from Subscribe select; a label change on a known pod is pushed', async () => {
  const ghost = subscribe('ghost-0', { app: 'web' });
  const other = subscribe('ghost-1', { app: 'db' });
  expect((await ghost.onFirstSnapshot()).inboundPolicy!.authorizationPolicies).toHaveLength(1);
  expect((await other.onFirstSnapshot()).inboundPolicy!.authorizationPolicies).toHaveLength(0);
  const known = subscribe('web-a', { app: 'db' });
  expect((await known.onFirstSnapshot()).inboundPolicy!.authorizationPolicies).toHaveLength(1);
  const relabelled = podJson('web-a', 'shop', 'web-sa', '10.0.0.1') as { metadata: { labels: Record<string, string> } };
  relabelled.metadata.labels.app = 'web-v2';
  api.apply('pods', relabelled);
  await waitFor(() => policyOf(known)?.authorizationPolicies.length === 0, 'relabel pushed');
  expect(policyOf(known)!.portLevelMtls).toEqual({});
});

test('RequestAuthentication: the selected jwtRules are pushed; an invalid update keeps the last good one; a delete removes them', async () => {
  const jwks = JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'k' }] });
  const ra = (jwtRules: unknown[]) => ({ ...meta('RequestAuthentication', 'web-jwt', 'shop'), spec: { selector: { matchLabels: { app: 'web' } }, jwtRules } });
  api.apply('requestauthentications', ra([{ issuer: 'https://id.example.com', jwks, audiences: ['web'] }]));
  const c = subscribe('web-a');
  await waitFor(() => policyOf(c)?.jwtRules.length === 1, 'jwtRules pushed');
  expect(policyOf(c)!.jwtRules[0]).toMatchObject({ issuer: 'https://id.example.com', audiences: ['web'], jwks });
  const other = subscribe('ghost-1', { app: 'db' });
  expect((await other.onFirstSnapshot()).inboundPolicy?.jwtRules ?? []).toEqual([]);
  api.apply('requestauthentications', ra([{ issuer: 'https://id.example.com', jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}' }]));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [1-9]/.test(await cp.metrics.registry.metrics()), 'rejection counted');
  expect(policyOf(c)!.jwtRules[0].jwks).toBe(jwks);
  api.delete('requestauthentications', 'shop', 'web-jwt');
  await waitFor(() => policyOf(c)?.jwtRules.length === 0, 'delete pushed');
});

test('RateLimitPolicy: the selected limits are pushed; an invalid update keeps the last good one; a delete removes them', async () => {
  const rl = (identity: unknown) => ({ ...meta('RateLimitPolicy', 'web-limits', 'shop'), spec: { selector: { matchLabels: { app: 'web' } }, identity } });
  api.apply('ratelimitpolicies', rl({ requestsPerSecond: 5, burst: 10 }));
  const c = subscribe('web-a');
  await waitFor(() => policyOf(c)?.rateLimits?.length === 1, 'rateLimits pushed');
  expect(policyOf(c)!.rateLimits![0]).toMatchObject({ name: 'shop/web-limits', identity: { requestsPerSecond: 5, burst: 10 } });
  const other = subscribe('ghost-1', { app: 'db' });
  expect((await other.onFirstSnapshot()).inboundPolicy?.rateLimits ?? []).toEqual([]);
  api.apply('ratelimitpolicies', rl({ requestsPerSecond: 0 }));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [1-9]/.test(await cp.metrics.registry.metrics()), 'rejection counted');
  expect(policyOf(c)!.rateLimits![0].identity).toEqual({ requestsPerSecond: 5, burst: 10 });
  api.delete('ratelimitpolicies', 'shop', 'web-limits');
  await waitFor(() => (policyOf(c)?.rateLimits ?? []).length === 0, 'delete pushed');
});

/**
 * Found by the adversarial review (adv9 D5): the last good version of a refused object is the
 * one the running control plane read. After a restart a refused AuthorizationPolicy has none
 * and was simply absent: a workload whose only ALLOW it was became open to every caller. It
 * is now enforced fail-closed for the workloads it selects, and says so.
 */
test('after a control-plane restart, a refused AuthorizationPolicy is enforced fail-closed; a valid version replaces it', async () => {
  await cp.close(100);
  api.apply('authorizationpolicies', allowFrontend(['http']));
  cp = await startKubeControlPlane(api, { seed: 12, control: { admin: '127.0.0.1:0' } });
  const c = subscribe('web-a');
  const snap = await c.onFirstSnapshot();
  // An ALLOW that matches nothing, for app=web in shop: the workload does not fall back to "no policy, allow all".
  expect(snap.inboundPolicy!.authorizationPolicies).toEqual([{ name: 'shop/web-allow', action: 'ALLOW', rules: [] }]);
  const rejected = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/rejected`)).json()) as { rejected: unknown[] };
  expect(rejected.rejected).toEqual([
    {
      kind: 'AuthorizationPolicy', namespace: 'shop', name: 'web-allow', path: 'spec.rules[0].to[0].operation.ports[0]', reason: 'expected a port number 1-65535, got "http"',
      failClosed: 'an ALLOW that matches nothing, for the workloads labelled app=web of namespace shop: they admit only what another ALLOW policy admits',
    },
  ]);
  expect(await cp.metrics.registry.metrics()).toMatch(/^wren_cp_authorization_policies_fail_closed 1$/m);
  const view = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { authorizationPolicies: { failClosed?: unknown }[] };
  expect(view.authorizationPolicies[0].failClosed).toMatchObject({ refusal: 'spec.rules[0].to[0].operation.ports[0]: expected a port number 1-65535, got "http"' });

  api.apply('authorizationpolicies', allowFrontend(['8443']));
  await waitFor(() => policyOf(c)?.authorizationPolicies[0]?.rules.length === 1, 'valid version pushed');
  expect(await cp.metrics.registry.metrics()).toMatch(/^wren_cp_authorization_policies_fail_closed 0$/m);
  // Refused again while running: this time the last good version (8443) stays.
  api.apply('authorizationpolicies', allowFrontend(['http']));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [2-9]/.test(await cp.metrics.registry.metrics()), 'second rejection counted');
  await new Promise((r) => setTimeout(r, 50));
  expect(policyOf(c)!.authorizationPolicies[0].rules[0].to[0].operation.ports).toEqual(['8443']);
});

/**
 * The same for a PeerAuthentication (left open by adv9 D5): after a restart a refused one had
 * no last good version and was absent, so the mesh-wide PERMISSIVE applied to the workload it
 * made STRICT. It is now enforced as mTLS STRICT on every port in its place, and says so.
 */
test('after a control-plane restart, a refused PeerAuthentication is enforced as STRICT; a valid version replaces it', async () => {
  const web = (portLevelMtls: Record<string, unknown>) => ({ ...meta('PeerAuthentication', 'web', 'shop'), spec: { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls } });
  await cp.close(100);
  api.apply('peerauthentications', web({ http: { mode: 'PERMISSIVE' } }));
  cp = await startKubeControlPlane(api, { seed: 13, control: { admin: '127.0.0.1:0' } });
  const c = subscribe('web-a');
  const snap = await c.onFirstSnapshot();
  // Not the mesh-wide PERMISSIVE: STRICT on every port of app=web, the port the refused object opened included.
  expect({ mtls: snap.inboundPolicy!.mtls, portLevelMtls: snap.inboundPolicy!.portLevelMtls }).toEqual({ mtls: { mode: 'STRICT' }, portLevelMtls: {} });
  const enforced = 'mTLS STRICT on every port, for the workloads labelled app=web of namespace shop: plaintext is refused';
  const rejected = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/rejected`)).json()) as { rejected: unknown[] };
  expect(rejected.rejected).toEqual([
    { kind: 'PeerAuthentication', namespace: 'shop', name: 'web', path: expect.stringMatching(/^spec\.portLevelMtls/), reason: expect.any(String), failClosed: enforced },
  ]);
  expect(await cp.metrics.registry.metrics()).toMatch(/^wren_cp_peer_authentications_fail_closed 1$/m);
  const view = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { peerAuthentications: { name: string; failClosed?: unknown }[] };
  expect(view.peerAuthentications.find((p) => p.name === 'web')?.failClosed).toMatchObject({ enforced });

  api.apply('peerauthentications', web({ '8080': { mode: 'PERMISSIVE' } }));
  await waitFor(() => policyOf(c)?.portLevelMtls['8080']?.mode === 'PERMISSIVE', 'valid version pushed');
  expect(await cp.metrics.registry.metrics()).toMatch(/^wren_cp_peer_authentications_fail_closed 0$/m);
  // Refused again while running: this time the last good version stays.
  api.apply('peerauthentications', web({ http: { mode: 'PERMISSIVE' } }));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [2-9]/.test(await cp.metrics.registry.metrics()), 'second rejection counted');
  await new Promise((r) => setTimeout(r, 50));
  expect(policyOf(c)!.portLevelMtls).toEqual({ '8080': { mode: 'PERMISSIVE' } });
});

test('a pod gets the target ports its Services declare opaque with its policy (Kubernetes source), and loses one a Service then declares HTTP', async () => {
  const c = subscribe('web-a');
  await c.onFirstSnapshot();
  // A server-first port declared opaque by appProtocol, with a named targetPort the slice resolves to 3307 for this pod.
  api.apply('services', serviceJson('web', 'shop', [{ name: 'db', port: 3306, appProtocol: 'mysql' }, { name: 'http', port: 80, targetPort: 8080 }]));
  api.apply('endpointslices', endpointSliceJson('web-1', 'shop', 'web', [{ name: 'db', port: 3307 }, { name: 'http', port: 8080 }], [{ ip: '10.0.0.1', pod: 'web-a' }]));
  await waitFor(() => policyOf(c)?.opaquePorts?.join() === '3307', 'opaque port pushed');
  // The policy itself is unchanged: only the opaque ports were pushed anew.
  expect(policyOf(c)).toMatchObject({ mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { '9090': { mode: 'STRICT' } } });
  // Another Service selecting the pod declares the same target port HTTP: the safe side, sniffed.
  api.apply('services', serviceJson('web-admin', 'shop', [{ name: 'http-admin', port: 80, targetPort: 3307 }], '10.96.0.11'));
  api.apply('endpointslices', endpointSliceJson('web-admin-1', 'shop', 'web-admin', [{ name: 'http-admin', port: 3307 }], [{ ip: '10.0.0.1', pod: 'web-a' }]));
  await waitFor(() => policyOf(c) !== undefined && (policyOf(c)!.opaquePorts ?? []).length === 0, 'opaque port withdrawn');
});
