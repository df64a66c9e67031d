import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServiceRoute } from '../contract/routes.js';
import type { ControlPlane } from '../control-plane/server.js';
import type { DirSource } from '../control-plane/sources/dir-source.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { replaceFile } from './helpers/replace-file.js';
import { subscriber } from './helpers/subscriber.js';
import { BATCH_CONSUMER_ROUTE_YAML } from './helpers/routes.js';
import { servicesYaml } from './helpers/service-yaml.js';

/**
 * HTTPRoutes from the directory source to the discovery stream: what each subscriber gets
 * in ServiceResource.routes_json (the proxy half decodes it; here it is checked as JSON of
 * contract/routes.ts objects), per subscriber namespace (consumer routes, GEP-1294).
 */
const services = servicesYaml('shop', [['reviews', '10.96.0.40', 9080], ['reviews-v1', '10.96.0.41', 9080], ['reviews-v2', '10.96.0.42', 9080]]);

const producer = (v1: number, v2: number, path = '/') => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: reviews-split, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: ${JSON.stringify(path)} } }]
      backendRefs:
        - { name: reviews-v1, port: 9080, weight: ${v1} }
        - { name: reviews-v2, port: 9080, weight: ${v2} }
`;

const consumer = BATCH_CONSUMER_ROUTE_YAML;

describe('routes from the directory source, pushed per subscriber namespace', () => {
  let plane: DirControlPlane;
  let dir: string;
  let cp: ControlPlane;
  let source: DirSource;
  const clients: DiscoveryClient[] = [];
  /** namespace -> service key -> the last routes_json pushed for it. */
  const pushed = new Map<string, Map<string, string>>();

  beforeEach(async () => {
    pushed.clear();
    plane = await startDirControlPlane({
      prefix: 'wren-routes-dir-', trustDomain: 'cluster.local', seed: 3, mesh: { 'services.yaml': services, 'routes.yaml': producer(90, 10) },
      dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 100 }, ready: false,
    });
    ({ cp, dir, source } = plane);
    cp.discovery.onPush((p) => {
      const ns = /\/ns\/([^/]+)\//.exec(p.identity)![1];
      const m = pushed.get(ns) ?? new Map<string, string>();
      pushed.set(ns, m);
      for (const s of p.response.services) m.set(`${s.name}.${s.namespace}`, s.routesJson ?? '');
    });
    await cp.whenReady();
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.stop()));
    await plane.close(100);
  });

  const subscribe = (ns: string): DiscoveryClient => {
    const c = subscriber(cp, { namespace: ns, serviceAccount: 'app', pod: `app-${ns}` });
    clients.push(c);
    return c;
  };
  const routesOf = (ns: string, svc = 'reviews.shop'): ServiceRoute[] | undefined => {
    const j = pushed.get(ns)?.get(svc);
    return j === undefined ? undefined : j === '' ? [] : (JSON.parse(j) as ServiceRoute[]);
  };
  const weights = (ns: string) => routesOf(ns)?.[0]?.rules[0].backends.map((b) => `${b.name}:${b.weight}`).join(',');

  test('a producer route reaches every subscriber; a consumer route only subscribers in its namespace; edits and deletes are pushed', async () => {
    await subscribe('web').onFirstSnapshot();
    await subscribe('batch').onFirstSnapshot();
    expect(routesOf('web')).toEqual([
      {
        kind: 'HTTPRoute', name: 'reviews-split', namespace: 'shop', ports: [9080],
        rules: [{
          name: '', filters: [], timeouts: { requestMs: 0, backendRequestMs: 0 },
          matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
          backends: [
            { name: 'reviews-v1', namespace: 'shop', port: 9080, weight: 90, filters: [], invalid: '' },
            { name: 'reviews-v2', namespace: 'shop', port: 9080, weight: 10, filters: [], invalid: '' },
          ],
        }],
      },
    ]);
    expect(routesOf('batch')).toEqual(routesOf('web'));
    expect(routesOf('web', 'reviews-v1.shop')).toEqual([]);

    // A consumer route in batch: batch's subscriber gets it instead; web's keeps the producer route.
    await replaceFile(join(dir, 'consumer.yaml'), consumer);
    await waitFor(() => routesOf('batch')?.[0]?.name === 'batch-reviews', 'consumer route pushed to batch');
    expect(routesOf('batch')!.map((r) => r.name)).toEqual(['batch-reviews']);
    expect(routesOf('batch')![0].rules[0].backends[0]).toMatchObject({ name: 'reviews-v2', invalid: '' });
    expect(weights('web')).toBe('reviews-v1:90,reviews-v2:10');
    // /debug/view shows both, by Service.
    const view = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { routes: Record<string, { producer: ServiceRoute[]; consumers: Record<string, ServiceRoute[]> }> };
    expect(view.routes['reviews.shop'].producer.map((r) => r.name)).toEqual(['reviews-split']);
    expect(Object.keys(view.routes['reviews.shop'].consumers)).toEqual(['batch']);

    // An edit of the producer route: web gets the new weights; batch still its own route.
    await replaceFile(join(dir, 'routes.yaml'), producer(50, 50));
    await waitFor(() => weights('web') === 'reviews-v1:50,reviews-v2:50', 'edit pushed');
    expect(routesOf('batch')!.map((r) => r.name)).toEqual(['batch-reviews']);

    // Deleting the consumer route gives batch the producer route back; deleting that leaves no routes.
    await rm(join(dir, 'consumer.yaml'));
    await waitFor(() => routesOf('batch')?.[0]?.name === 'reviews-split', 'batch back on the producer route');
    await rm(join(dir, 'routes.yaml'));
    await waitFor(() => routesOf('web')?.length === 0 && routesOf('batch')?.length === 0, 'routes removed');
  });

  test('an invalid edit is rejected with its field path and the last good route stays', async () => {
    await subscribe('web').onFirstSnapshot();
    expect(weights('web')).toBe('reviews-v1:90,reviews-v2:10');
    await replaceFile(join(dir, 'routes.yaml'), producer(90, 10, 'no-slash'));
    await waitFor(() => source.errors().length > 0, 'rejection reported');
    expect(source.errors()).toEqual(["mesh/routes.yaml: spec.rules[0].matches[0].path.value: value must be an absolute path and start with '/'"]);
    await new Promise((r) => setTimeout(r, 250)); // a rescan or two
    expect(weights('web')).toBe('reviews-v1:90,reviews-v2:10');
    expect(routesOf('web')![0].rules[0].matches[0].path).toEqual({ type: 'PathPrefix', value: '/' });
    // Fixed: the new version is pushed.
    await replaceFile(join(dir, 'routes.yaml'), producer(1, 1, '/api'));
    await waitFor(() => routesOf('web')?.[0]?.rules[0].matches[0].path?.value === '/api', 'fixed route pushed');
    expect(source.errors()).toEqual([]);
  });

  test('a backend that does not resolve stays with its reason (the proxy answers 500 for it) and is reported', async () => {
    await subscribe('web').onFirstSnapshot();
    await replaceFile(join(dir, 'routes.yaml'), producer(1, 1).replace('name: reviews-v2', 'name: reviews-v3'));
    await waitFor(() => routesOf('web')?.[0]?.rules[0].backends[1]?.name === 'reviews-v3', 'pushed');
    expect(routesOf('web')![0].rules[0].backends[1].invalid).toBe('BackendNotFound');
    expect(source.routeProblems()).toEqual([
      'HTTPRoute/shop/reviews-split -> Service shop/reviews: ResolvedRefs=False BackendNotFound: spec.rules[0].backendRefs[1]: Service shop/reviews-v3 not found',
    ]);
  });
});
