import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import type { ServiceRoute } from '../contract/routes.js';
import { ControlPlane } from '../control-plane/server.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { waitFor } from './control-plane-harness.js';
import { FakeKubeApi, serviceJson } from './fake-kube-api.js';
import { subscriber } from './helpers/subscriber.js';

/**
 * HTTPRoute / GRPCRoute through the real client-node informers against the fake API:
 * watch add / modify / delete reach subscribers as routes_json, and the route status
 * (status.parents for the Service parents, controllerName wren.io/mesh) is written back
 * through the status subresource, once per change (a status write is itself a watch event).
 */
let api: FakeKubeApi;
let cp: ControlPlane;
const clients: DiscoveryClient[] = [];
/** service key -> last routes_json pushed to the subscriber in `web`. */
const pushed = new Map<string, string>();

const httpRoute = (name: string, spec: Record<string, unknown>, status?: Record<string, unknown>) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'shop' }, spec, ...(status ? { status } : {}),
});
const reviewsParent = { group: '', kind: 'Service', name: 'reviews', port: 9080 };
const split = (v2: string) => ({ parentRefs: [reviewsParent], rules: [{ backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 80 }, { name: v2, port: 9080, weight: 20 }] }] });

beforeEach(async () => {
  api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
  for (const [n, ip] of [['reviews', '10.96.0.40'], ['reviews-v1', '10.96.0.41'], ['reviews-v2', '10.96.0.42']]) api.apply('services', serviceJson(n, 'shop', [{ name: 'http', port: 9080 }], ip));
  pushed.clear();
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(11), logger: silentLogger,
    source: (ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 }, statusRetryMs: 100 }),
  });
  cp.discovery.onPush((p) => {
    for (const s of p.response.services) pushed.set(`${s.name}.${s.namespace}`, s.routesJson ?? '');
  });
  await cp.whenReady();
  const c = subscriber(cp, { namespace: 'web', serviceAccount: 'web', pod: 'web-0' });
  clients.push(c);
  await c.onFirstSnapshot();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await cp.close(100);
  await api.close();
});

const routes = (): ServiceRoute[] => {
  const j = pushed.get('reviews.shop') ?? '';
  return j ? (JSON.parse(j) as ServiceRoute[]) : [];
};
type Parent = { parentRef: Record<string, unknown>; controllerName: string; conditions: { type: string; status: string; reason: string; observedGeneration: number; lastTransitionTime: string }[] };
const parentsOf = (name: string, resource: 'httproutes' | 'grpcroutes' = 'httproutes'): Parent[] =>
  ((api.get(resource, 'shop', name)?.status as { parents?: Parent[] } | undefined)?.parents ?? []);
const summary = (p: Parent) => `${p.controllerName} ${String(p.parentRef.name)} ${p.conditions.map((c) => `${c.type}=${c.status}/${c.reason}@${c.observedGeneration}`).join(' ')}`;
const patchesFor = (name: string) => api.statusPatches.filter((p) => p.name === name).length;

test('a route is pushed, its status written once; a change re-pushes and rewrites the status; a delete removes it', async () => {
  api.apply('httproutes', httpRoute('reviews-split', split('reviews-v2')));
  await waitFor(() => routes()[0]?.name === 'reviews-split', 'route pushed');
  expect(routes()[0].rules[0].backends.map((b) => `${b.name}:${b.weight}:${b.invalid}`)).toEqual(['reviews-v1:80:', 'reviews-v2:20:']);
  await waitFor(() => parentsOf('reviews-split').length === 1, 'status written');
  expect(parentsOf('reviews-split').map(summary)).toEqual(['wren.io/mesh reviews Accepted=True/Accepted@1 ResolvedRefs=True/ResolvedRefs@1']);
  expect(parentsOf('reviews-split')[0].parentRef).toEqual(reviewsParent);
  expect(api.statusPatches.at(-1)!.contentType).toBe('application/merge-patch+json');
  // The status write comes back as a watch event: nothing more is written.
  await new Promise((r) => setTimeout(r, 400));
  expect(patchesFor('reviews-split')).toBe(1);

  // Modify: a backend that does not exist (generation 2): pushed with its reason, status says why.
  api.apply('httproutes', httpRoute('reviews-split', split('reviews-v3')));
  await waitFor(() => routes()[0]?.rules[0].backends[1]?.name === 'reviews-v3', 'change pushed');
  expect(routes()[0].rules[0].backends[1].invalid).toBe('BackendNotFound');
  await waitFor(() => parentsOf('reviews-split')[0]?.conditions[1]?.status === 'False', 'status rewritten');
  expect(parentsOf('reviews-split').map(summary)).toEqual(['wren.io/mesh reviews Accepted=True/Accepted@2 ResolvedRefs=False/BackendNotFound@2']);
  await new Promise((r) => setTimeout(r, 300));
  expect(patchesFor('reviews-split')).toBe(2);

  // Creating the missing Service resolves the ref: status back to True without a spec change.
  api.apply('services', serviceJson('reviews-v3', 'shop', [{ name: 'http', port: 9080 }], '10.96.0.43'));
  await waitFor(() => parentsOf('reviews-split')[0]?.conditions[1]?.status === 'True', 'resolved after the Service appeared');
  expect(routes()[0].rules[0].backends[1].invalid).toBe('');

  api.delete('httproutes', 'shop', 'reviews-split');
  await waitFor(() => routes().length === 0 && pushed.get('reviews.shop') === '', 'delete pushed');
});

test('other controllers\' status entries are kept; a route with only Gateway parents gets no status from the mesh', async () => {
  const gatewayEntry = {
    parentRef: { name: 'ingress' }, controllerName: 'example.com/gateway',
    conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' }],
  };
  api.apply('httproutes', httpRoute('both', { parentRefs: [{ name: 'ingress' }, reviewsParent], rules: [{ backendRefs: [{ name: 'reviews-v1', port: 9080 }] }] }, { parents: [gatewayEntry] }));
  api.apply('httproutes', httpRoute('north-south', { parentRefs: [{ name: 'ingress' }], rules: [{ backendRefs: [{ name: 'reviews-v1', port: 9080 }] }] }));
  await waitFor(() => parentsOf('both').length === 2, 'mesh status added');
  expect(parentsOf('both').map((p) => p.controllerName)).toEqual(['example.com/gateway', 'wren.io/mesh']);
  expect(parentsOf('both')[0]).toEqual(gatewayEntry);
  expect(routes().map((r) => r.name)).toEqual(['both']);
  await new Promise((r) => setTimeout(r, 300));
  expect(patchesFor('north-south')).toBe(0);
  expect(patchesFor('both')).toBe(1);
});

test('a status written by another controller meanwhile is not overwritten: the stale write gets 409 and is redone on the newer object', async () => {
  const gatewayEntry = {
    parentRef: { name: 'ingress' }, controllerName: 'example.com/gateway',
    conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' }],
  };
  api.interleaveStatusPatch = { parents: [gatewayEntry] };
  api.apply('httproutes', httpRoute('raced', { parentRefs: [{ name: 'ingress' }, reviewsParent], rules: [{ backendRefs: [{ name: 'reviews-v1', port: 9080 }] }] }));
  // Promptly: by the retry (100 ms here) if the newer object's event came while the stale write was in flight.
  await waitFor(() => parentsOf('raced').length === 2, 'both entries present', 4000);
  expect(parentsOf('raced').map((p) => p.controllerName)).toEqual(['example.com/gateway', 'wren.io/mesh']);
  expect(patchesFor('raced')).toBe(2);
  await new Promise((r) => setTimeout(r, 300));
  expect(patchesFor('raced')).toBe(2);
});

test('an ExtensionRef filter: Accepted=False UnsupportedValue, not pushed; a GRPCRoute is pushed as kind GRPCRoute with its status', async () => {
  api.apply('httproutes', httpRoute('ext', {
    parentRefs: [reviewsParent],
    rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'example.com', kind: 'Fault', name: 'f' } }], backendRefs: [{ name: 'reviews-v1', port: 9080 }] }],
  }));
  await waitFor(() => parentsOf('ext').length === 1, 'status written');
  expect(parentsOf('ext').map(summary)).toEqual(['wren.io/mesh reviews Accepted=False/UnsupportedValue@1 ResolvedRefs=True/ResolvedRefs@1']);
  expect(routes()).toEqual([]);

  api.apply('grpcroutes', {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'grpc', namespace: 'shop' },
    spec: { parentRefs: [reviewsParent], rules: [{ matches: [{ method: { service: 'reviews.v1.Reviews' } }], backendRefs: [{ name: 'reviews-v2', port: 9080 }] }] },
  });
  await waitFor(() => routes()[0]?.kind === 'GRPCRoute', 'grpc route pushed');
  expect(routes()[0].rules[0].matches[0].grpc).toEqual({ type: 'Exact', service: 'reviews.v1.Reviews', method: '' });
  await waitFor(() => parentsOf('grpc', 'grpcroutes').length === 1, 'grpc status written');
  expect(parentsOf('grpc', 'grpcroutes').map(summary)).toEqual(['wren.io/mesh reviews Accepted=True/Accepted@1 ResolvedRefs=True/ResolvedRefs@1']);
});

test('an object that fails validation is rejected (counted) and the last good version stays', async () => {
  api.apply('httproutes', httpRoute('r', split('reviews-v2')));
  await waitFor(() => routes()[0]?.name === 'r', 'route pushed');
  api.apply('httproutes', httpRoute('r', { parentRefs: [reviewsParent], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '(' } }], backendRefs: [{ name: 'reviews-v1', port: 9080 }] }] }));
  await waitFor(async () => /wren_cp_invalid_objects_total\{source="kubernetes"\} [1-9]/.test(await cp.metrics.registry.metrics()), 'rejection counted');
  await new Promise((r) => setTimeout(r, 200));
  expect(routes()[0].rules[0].backends.map((b) => b.name)).toEqual(['reviews-v1', 'reviews-v2']);
});

test('a route the proxies would refuse (Host in a header filter): Accepted=False UnsupportedValue with the field path, counted once, its last good version still pushed (ADV5-1)', async () => {
  api.apply('httproutes', httpRoute('r', split('reviews-v2')));
  await waitFor(() => routes()[0]?.name === 'r', 'route pushed');
  await waitFor(() => parentsOf('r').length === 1, 'status written');
  // Valid for the CRD and for the control plane's object parser (an HTTPHeaderName), refused by the proxies' route parser.
  const bad = httpRoute('r', { parentRefs: [reviewsParent], rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'Host', value: 'x' }] } }], backendRefs: [{ name: 'reviews-v1', port: 9080 }] }] });
  api.apply('httproutes', { ...bad, metadata: { ...bad.metadata, generation: 2 } });
  await waitFor(() => parentsOf('r')[0]?.conditions[0]?.status === 'False', 'refusal written');
  const accepted = parentsOf('r')[0].conditions[0];
  expect({ reason: accepted.reason, gen: accepted.observedGeneration }).toEqual({ reason: 'UnsupportedValue', gen: 2 });
  expect((accepted as unknown as { message: string }).message).toMatch(/rules\[0\]\.filters\[0\]\.requestHeaderModifier\.set\[0\]\.name: host cannot be modified.*its last accepted version stays in force/);
  expect(/wren_cp_invalid_objects_total\{source="kubernetes"\} 1\n/.test(await cp.metrics.registry.metrics())).toBe(true);
  expect(routes()[0].rules[0].backends.map((b) => b.name)).toEqual(['reviews-v1', 'reviews-v2']);
});
