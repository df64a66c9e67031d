import { join } from 'node:path';
import { createLogger, type Logger } from '../common/logger.js';
import type { ControlPlane } from '../control-plane/server.js';
import type { DirSource } from '../control-plane/sources/dir-source.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import type { MeshSnapshot } from '../contract/model.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { replaceFile } from './helpers/replace-file.js';
import { subscriber } from './helpers/subscriber.js';
import { servicesYaml } from './helpers/service-yaml.js';

/**
 * ADV5-1 (found by adversary5): an HTTPRoute that the control plane validates and accepts (and that the Gateway
 * API CRD accepts, so `kubectl apply` takes it) is refused by every proxy's own route
 * parser (contract/parse-routes.ts), which is stricter than the control plane's
 * (control-plane/translate/route-objects.ts, route-compile.ts). The proxy NACKs the WHOLE
 * DiscoveryResponse (proxy/discovery/discovery-client.ts onResponse), so:
 *  - a proxy that starts while such a route exists never gets a first snapshot: no
 *    services, no endpoints, no policy, it never becomes ready;
 *  - running proxies freeze on their last good config for every service, not only the
 *    route's one (the control plane resends full responses that carry the route).
 *
 * What a user does: writes an ordinary route in the Service's namespace (a producer route,
 * pushed to every caller mesh-wide). Each case below is valid per the v1.6.1 CRD
 * (/work/shared/reference/gateway-api/httproutes.yaml) and passes the control plane's
 * validation. What should happen: either the control plane refuses the object (field
 * path, `wren_cp_invalid_objects_total`, Accepted=False; the last good version stays, as
 * docs/traffic-management.md "Validation" promises for what it cannot serve) or the proxy
 * accepts it: one route must never take the mesh's configuration down (Istio validates
 * RE2 and header names in istiod before pushing; Envoy's xDS rejects a bad
 * RouteConfiguration per resource, not the whole snapshot).
 */
const services = servicesYaml('shop', [['reviews', '10.96.0.40', 9080], ['reviews-v2', '10.96.0.42', 9080], ['ratings', '10.96.0.50', 8080]]);

const route = (rule: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: reviews, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
  rules:
${rule}
`;

/** Each is valid per the CRD (schema and CEL) and accepted by the control plane's validation. */
const CASES: [id: string, what: string, rule: string][] = [
  [
    'ADV5-1a',
    'a backendRef of another kind (ServiceImport, no port needed by the CRD) is InvalidKind and sent with port 0',
    `    - backendRefs:
        - { group: multicluster.x-k8s.io, kind: ServiceImport, name: reviews-global, weight: 1 }
        - { name: reviews-v2, port: 9080, weight: 9 }`,
  ],
  [
    'ADV5-1b',
    'a RegularExpression path with a lookahead (compiles as a JS RegExp; the proxy refuses lookaround)',
    `    - matches: [{ path: { type: RegularExpression, value: "/api/(?!internal).*" } }]
      backendRefs: [{ name: reviews-v2, port: 9080 }]`,
  ],
  [
    'ADV5-1c',
    'a RequestHeaderModifier that sets Host (a valid HTTPHeaderName; the proxy refuses Host in filters)',
    `    - filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: Host, value: reviews-v2.shop }] }
      backendRefs: [{ name: reviews-v2, port: 9080 }]`,
  ],
  [
    'ADV5-1d',
    'a rule name with a dot (SectionName allows DNS subdomains up to 253 characters; the proxy only DNS labels)',
    `    - name: canary.v2
      backendRefs: [{ name: reviews-v2, port: 9080 }]`,
  ],
  [
    'ADV5-1e',
    'a header match value outside Latin-1 (the CRD has only maxLength 4096)',
    `    - matches: [{ headers: [{ name: x-user-name, value: "Zoë 张" }] }]
      backendRefs: [{ name: reviews-v2, port: 9080 }]`,
  ],
  [
    'ADV5-1f',
    'a URLRewrite ReplacePrefixMatch of "" (the spec\'s own table: /foo -> "/"; the CRD has only maxLength)',
    `    - matches: [{ path: { type: PathPrefix, value: /legacy } }]
      filters:
        - type: URLRewrite
          urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: "" } }
      backendRefs: [{ name: reviews-v2, port: 9080 }]`,
  ],
  [
    'ADV5-1g',
    'an HTTPRouteRetry with attempts 11 (no maximum in the spec; the proxy caps at 10)',
    `    - retry: { attempts: 11, codes: [503] }
      backendRefs: [{ name: reviews-v2, port: 9080 }]`,
  ],
];

/** A control plane over `services` and `routeYaml`, rescanning every 100 ms. */
const startNackControlPlane = (routeYaml: string): Promise<DirControlPlane> =>
  startDirControlPlane({
    prefix: 'wren-adv5-nack-', trustDomain: 'cluster.local', seed: 3, mesh: { 'services.yaml': services, 'routes.yaml': routeYaml },
    dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 100 },
  });

/** A subscriber's logger that keeps the detail of each warning (its NACKs: what the proxy refused). */
const nackLogger = (into: string[]): Logger => createLogger({ level: 'warn', sink: (l) => void ((JSON.parse(l) as { detail?: string }).detail && into.push((JSON.parse(l) as { detail: string }).detail)) });

describe('ADV5-1: a route the control plane accepts must not make proxies NACK the whole configuration', () => {
  let plane: DirControlPlane;
  let dir: string;
  let cp: ControlPlane;
  let source: DirSource;
  const clients: DiscoveryClient[] = [];

  afterEach(async () => {
    nacks.length = 0;
    await Promise.all(clients.splice(0).map((c) => c.stop()));
    await plane?.close(100);
  });

  const start = async (routeYaml: string): Promise<void> => {
    plane = await startNackControlPlane(routeYaml);
    ({ cp, dir, source } = plane);
  };

  /** The proxy's NACK details (its warn lines), to show what it refused. */
  const nacks: string[] = [];
  const subscribe = (ns: string): DiscoveryClient => {
    const c = subscriber(cp, { namespace: ns, serviceAccount: 'app', pod: `app-${ns}`, logger: nackLogger(nacks) });
    clients.push(c);
    return c;
  };

  /** The first snapshot within `ms`, or null (what a starting proxy waits on before it is ready). */
  const firstSnapshot = (c: DiscoveryClient, ms: number): Promise<MeshSnapshot | null> =>
    Promise.race([c.onFirstSnapshot(), new Promise<null>((r) => setTimeout(() => r(null), ms).unref())]);

  test.each(CASES)('%s: %s', async (_id, _what, rule) => {
    await start(route(rule));
    // The control plane took the route, or refused the object naming the field (a remedy the finding allows:
    // the control plane validates route regexes as RE2 itself, so the lookahead of ADV5-1b is refused there).
    for (const e of source.errors()) expect(e).toMatch(/^mesh\/routes\.yaml: .*spec\.rules\[0\]\.matches\[0\]\.path\.value: /);
    if (_id !== 'ADV5-1b') expect(source.errors()).toEqual([]);
    const web = subscribe('web');
    const snap = await firstSnapshot(web, 3000);
    // Fails on main: the response is NACKed (the detail names the route field the proxy refused) and no snapshot ever comes.
    expect({ nacks, gotSnapshot: snap !== null }).toEqual({ nacks: [], gotSnapshot: true });
    // The unrelated service is served as usual.
    expect(snap!.services.map((s) => `${s.name}.${s.namespace}`)).toContain('ratings.shop');
  });

  test('a route changed into one the proxies would refuse: Accepted=False with the field path, counted once, its last good version stays pushed', async () => {
    const ok = `    - matches: [{ path: { type: RegularExpression, value: "/api/.*" } }]
      backendRefs: [{ name: reviews-v2, port: 9080 }]`;
    await start(route(ok));
    const web = subscribe('web');
    const pathOf = (s: MeshSnapshot | null) => s?.services.find((x) => x.name === 'reviews')?.routes?.[0]?.rules[0]?.matches[0]?.path?.value;
    expect(pathOf(await firstSnapshot(web, 3000))).toBe('/api/.*');
    const invalid = async () => /wren_cp_invalid_objects_total\{source="dir"\} (\d+)/.exec(await cp.metrics.registry.metrics())?.[1] ?? '0';
    expect(await invalid()).toBe('0');

    // Host in a header filter: a valid HTTPHeaderName for the CRD and the control plane's object parser; the proxies refuse it.
    await replaceFile(join(dir, 'routes.yaml'), route(CASES[2][2]));
    await source.rescan();
    expect(source.errors()).toEqual([]);
    expect(source.routeProblems()).toEqual([
      expect.stringMatching(/^HTTPRoute\/shop\/reviews -> Service shop\/reviews: Accepted=False UnsupportedValue: the mesh's proxies cannot serve it: .*rules\[0\]\.filters\[0\]\.requestHeaderModifier\.set\[0\]\.name: host cannot be modified.*; its last accepted version stays in force$/),
    ]);
    expect(await invalid()).toBe('1');
    // An unrelated change recompiles the routes: the same refusal is not counted again, the last good route still pushed.
    await replaceFile(join(dir, 'more.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: extra, namespace: shop }\nspec: { clusterIP: 10.96.0.60, ports: [{ port: 80 }] }\n');
    await source.rescan();
    const deadline = Date.now() + 3000;
    while (!web.current()?.services.some((s) => s.name === 'extra') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect({ nacks, extra: web.current()?.services.some((s) => s.name === 'extra'), path: pathOf(web.current()), counted: await invalid() }).toEqual({ nacks: [], extra: true, path: '/api/.*', counted: '1' });
  });
});

describe('ADV5-1h: a GRPCRoute without rules', () => {
  let plane: DirControlPlane | undefined;
  let client: DiscoveryClient | undefined;

  afterEach(async () => {
    await client?.stop();
    await plane?.close(100);
  });

  test('ADV5-1h: a GRPCRoute with no rules (GRPCRoute.spec.rules has no minItems) must not make proxies NACK', async () => {
    // ADVERSARY: ADV5-1
    plane = await startNackControlPlane(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: reviews-grpc, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
`);
    expect(plane.source.errors()).toEqual([]);
    const nacks: string[] = [];
    client = subscriber(plane.cp, { namespace: 'web', serviceAccount: 'app', pod: 'app-web', logger: nackLogger(nacks) });
    const snap = await Promise.race([client.onFirstSnapshot(), new Promise<null>((r) => setTimeout(() => r(null), 3000).unref())]);
    // On main: "services[..].routes[0].rules: ..." NACKed, no snapshot.
    expect({ nacks, gotSnapshot: snap !== null }).toEqual({ nacks: [], gotSnapshot: true });
  });
});
