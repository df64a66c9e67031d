import { mkdtemp, rm, unlink, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger, silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { replaceFile } from './helpers/replace-file.js';
import { testPki } from './helpers/pki.js';
import { startProxy as startSidecar } from './helpers/proxy.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';

const web = (endpoints: string[], port: unknown = 80) => `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata:
  name: web
  namespace: shop
spec:
  ports:
    - name: http
      port: ${JSON.stringify(port)}
      protocol: http1
  endpoints:
${endpoints.map((a) => `    - address: ${a}\n      port: 8080`).join('\n')}
`;

const k8sManifests = `apiVersion: v1
kind: Service
metadata: { name: api, namespace: shop }
spec:
  clusterIP: 10.96.0.20
  ports: [{ name: grpc, port: 9090, targetPort: 9090 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  namespace: shop
  labels: { kubernetes.io/service-name: api }
addressType: IPv4
ports: [{ name: grpc, port: 9090 }]
endpoints:
  - addresses: [10.0.1.1]
    conditions: { ready: true }
    targetRef: { kind: Pod, name: api-0, namespace: shop }
  - addresses: [10.0.1.2]
    conditions: { ready: false }
    targetRef: { kind: Pod, name: api-1, namespace: shop }
---
${meshedPodYaml('api-0', 'shop', 'api-sa')}---
apiVersion: v1
kind: Pod
metadata: { name: api-1, namespace: shop }
spec: { serviceAccountName: api-sa, containers: [{ name: app, image: x }] }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: ignored, namespace: shop }
spec: {}
`;

describe('control plane with the directory source', () => {
  let root: string;
  let dir: string;
  let cp: ControlPlane;
  let source: DirSource;
  const proxies: TestProxy[] = [];

  const start = async (opts: { watch?: boolean; rescanMs?: number; logLines?: string[] } = {}): Promise<void> => {
    const logger = opts.logLines ? createLogger({ level: 'warn', sink: (l) => opts.logLines!.push(l) }) : silentLogger;
    cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'example.org', clock: systemClock, random: seededRandom(5), logger,
      source: (ctx) => (source = new DirSource({ ...ctx, dir, displayDir: 'mesh', watchDebounceMs: 10, rescanMs: opts.rescanMs ?? 5_000, watch: opts.watch })),
    });
    await cp.whenReady();
  };

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'wren-cp-dir-'));
    dir = join(root, 'mesh');
    await mkdir(dir);
    await replaceFile(join(dir, 'web.yaml'), web(['10.0.0.1']));
    await replaceFile(join(dir, 'api.yaml'), k8sManifests);
  });

  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.client.stop()));
    await cp.close(100);
    await rm(root, { recursive: true, force: true });
  });

  const proxy = (): TestProxy => {
    const p = startProxy(`127.0.0.1:${cp.grpcPort}`);
    proxies.push(p);
    return p;
  };

  test('reads MeshService and Kubernetes-shaped manifests; edits, additions and deletions are pushed', async () => {
    await start();
    const p = proxy();
    const snap = await p.client.onFirstSnapshot();
    expect(snap.services.map((s) => `${s.name}.${s.namespace}`).sort()).toEqual(['api.shop', 'web.shop']);
    expect(endpointsOf(snap, 'web.shop')).toEqual(['10.0.0.1:8080']);
    const api = snap.services.find((s) => s.name === 'api')!;
    // A bare pod (no owner reference) is its own workload, as Istio names it.
    expect(api.ports[0].endpoints).toEqual([{
      address: '10.0.1.1', port: 9090, proxyPort: 15006, identity: 'spiffe://example.org/ns/shop/sa/api-sa', weight: 1, zone: '', ready: true,
      workload: { name: 'api-0', namespace: 'shop', app: '', version: '' },
    }]);
    expect(api.clusterIPs).toEqual(['10.96.0.20']);

    await replaceFile(join(dir, 'web.yaml'), web(['10.0.0.1', '10.0.0.2']));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').length === 2, 'edit pushed');

    await replaceFile(join(dir, 'cache.yaml'), web(['10.0.2.1']).replace('name: web', 'name: cache'));
    await waitFor(() => p.client.current()?.services.some((s) => s.name === 'cache'), 'new file pushed');

    await unlink(join(dir, 'cache.yaml'));
    await waitFor(() => !p.client.current()?.services.some((s) => s.name === 'cache'), 'deleted file pushed');
  });

  test('a manifest with a bad field is rejected with file and field path; the last good version stays; others keep flowing', async () => {
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    await replaceFile(join(dir, 'web.yaml'), web(['10.0.0.9'], 'http'));
    await waitFor(() => source.errors().length > 0, 'rejection');
    expect(source.errors()).toEqual(['mesh/web.yaml: spec.ports[0].port: expected a number, got "http"']);
    // the rest keeps flowing
    await replaceFile(join(dir, 'api.yaml'), k8sManifests.replace('conditions: { ready: false }', 'conditions: { ready: true }'));
    await waitFor(() => endpointsOf(p.client.current(), 'api.shop').length === 2, 'other file still flows');
    // api-1 carries no inject label: unmeshed, so no identity and no proxy port
    expect(p.client.current()!.services.find((s) => s.name === 'api')!.ports[0].endpoints[1]).toMatchObject({ address: '10.0.1.2', identity: '', proxyPort: null });
    // the last good web is still in force, not the bad one, and not nothing
    expect(endpointsOf(p.client.current(), 'web.shop')).toEqual(['10.0.0.1:8080']);
    const view = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { errors: string[] };
    expect(view.errors).toEqual(['mesh/web.yaml: spec.ports[0].port: expected a number, got "http"']);
    // fixing it clears the error
    await replaceFile(join(dir, 'web.yaml'), web(['10.0.0.9']));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.9:8080', 'fixed version pushed');
    expect(source.errors()).toEqual([]);
  });

  test('a RateLimitPolicy file reaches the selected workload\'s inbound policy; a bad edit keeps the last good one', async () => {
    const rl = (rps: number) => `apiVersion: policy.wren.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: client-limits, namespace: default }
spec:
  total: { requestsPerSecond: ${rps}, burst: 7 }
`;
    await replaceFile(join(dir, 'rl.yaml'), rl(3));
    await start();
    const p = proxy();
    const snap = await p.client.onFirstSnapshot();
    expect(snap.inboundPolicy?.rateLimits).toEqual([{ name: 'default/client-limits', ports: [], total: { requestsPerSecond: 3, burst: 7 }, overrides: [], routes: [] }]);
    await replaceFile(join(dir, 'rl.yaml'), rl(0));
    await waitFor(() => source.errors().some((e) => e.includes('spec.total.requestsPerSecond')), 'rejected with its field path');
    expect(p.client.current()?.inboundPolicy?.rateLimits?.[0]?.total).toEqual({ requestsPerSecond: 3, burst: 7 });
    await replaceFile(join(dir, 'rl.yaml'), rl(5));
    await waitFor(() => p.client.current()?.inboundPolicy?.rateLimits?.[0]?.total?.requestsPerSecond === 5, 'fixed version pushed');
  });

  test('a file that is not even YAML keeps everything it had', async () => {
    await start();
    const p = proxy();
    await p.client.onFirstSnapshot();
    await replaceFile(join(dir, 'api.yaml'), 'kind: Service\nmetadata: { name: [unclosed\n');
    await waitFor(() => source.errors().some((e) => e.startsWith('mesh/api.yaml: YAML:')), 'syntax error reported');
    expect(endpointsOf(p.client.current(), 'api.shop')).toEqual(['10.0.1.1:9090']);
  });

  test('without fs.watch the periodic rescan still picks up changes', async () => {
    await start({ watch: false, rescanMs: 100 });
    const p = proxy();
    await p.client.onFirstSnapshot();
    await replaceFile(join(dir, 'web.yaml'), web(['10.0.0.7']));
    await waitFor(() => endpointsOf(p.client.current(), 'web.shop').join() === '10.0.0.7:8080', 'rescan pushed');
  });

  test('objects of kinds the source does not read are logged and counted once per file version and kind, and listed on /debug/view', async () => {
    const routes = (n: number) => `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: web-route, namespace: shop }
spec: { gatewayClassName: class-${n} }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: api-route, namespace: shop }
spec: {}
---
apiVersion: policy.wren.io/v1alpha1
kind: TraficPolicy
metadata: { name: web-policy, namespace: shop }
spec: { targetRef: { kind: Service, name: web } }
`;
    await replaceFile(join(dir, 'routes.yaml'), routes(1));
    const lines: string[] = [];
    await start({ rescanMs: 50, logLines: lines });
    const ignoredLines = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.msg).includes('not read by the directory source'));
    const metric = async (kind: string): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text();
      const m = new RegExp(`^wren_cp_ignored_kinds_total\\{source="dir",kind="${kind}"\\} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    const view = async () => ((await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { ignored: unknown[] }).ignored;

    expect(await view()).toEqual([
      { file: 'mesh/api.yaml', kind: 'Deployment', apiVersion: 'apps/v1', namespace: 'shop', name: 'ignored' },
      { file: 'mesh/routes.yaml', kind: 'Gateway', apiVersion: 'gateway.networking.k8s.io/v1', namespace: 'shop', name: 'web-route' },
      { file: 'mesh/routes.yaml', kind: 'Gateway', apiVersion: 'gateway.networking.k8s.io/v1', namespace: 'shop', name: 'api-route' },
      { file: 'mesh/routes.yaml', kind: 'TraficPolicy', apiVersion: 'policy.wren.io/v1alpha1', namespace: 'shop', name: 'web-policy' },
    ]);
    expect(ignoredLines().map((l) => [l.file, l.kind, l.objects])).toEqual([
      ['mesh/api.yaml', 'Deployment', ['shop/ignored']],
      ['mesh/routes.yaml', 'Gateway', ['shop/web-route', 'shop/api-route']],
      ['mesh/routes.yaml', 'TraficPolicy', ['shop/web-policy']],
    ]);
    expect(await metric('Gateway')).toBe(1);
    expect(await metric('TraficPolicy')).toBe(1);

    // Rescans of the same file version say nothing more.
    const scansBefore = lines.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(lines.length).toBe(scansBefore);
    expect(await metric('Gateway')).toBe(1);

    // A new version of the file is reported again; fixing the typo takes the policy off the list.
    await replaceFile(join(dir, 'routes.yaml'), routes(2).replace('kind: TraficPolicy', 'kind: TrafficPolicy'));
    await waitFor(async () => (await metric('Gateway')) === 2, 'new file version counted');
    expect(await metric('TraficPolicy')).toBe(1);
    // The metric is counted when the file is read; the view is published with the next snapshot.
    const names = async () => (await view()).map((o) => (o as { name: string }).name).join();
    await waitFor(async () => (await names()) === 'ignored,web-route,api-route', 'the fixed policy off the ignored list');
    expect(await names()).toBe('ignored,web-route,api-route');
  });

  test('a TrafficPolicy with spec.ports governs only the ports it names; moving it moves the limits on a real proxy', async () => {
    const shopfront = (ports: number[]) => `apiVersion: v1
kind: Service
metadata: { name: shopfront, namespace: shop }
spec:
  clusterIP: 10.96.0.30
  ports: [{ name: http, port: 80, targetPort: 8080 }, { name: grpc, port: 9090, targetPort: 9090 }]
---
apiVersion: policy.wren.io/v1alpha1
kind: TrafficPolicy
metadata: { name: shopfront-grpc, namespace: shop }
spec:
  targetRef: { kind: Service, name: shopfront }
  ports: ${JSON.stringify(ports)}
  policy: { circuitBreaker: { maxRequests: 5 }, timeouts: { connectMs: 2s } }
`;
    await replaceFile(join(dir, 'shopfront.yaml'), shopfront([9090]));
    await start();
    const sidecar = await startSidecar({ pki: testPki(), namespace: 'shop', serviceAccount: 'client', controlPlane: `127.0.0.1:${cp.grpcPort}` });
    try {
      const maxRequests = async (): Promise<Record<string, number>> => {
        const all = (await (await fetch(`http://127.0.0.1:${sidecar.adminPort}/clusters`)).json()) as Record<string, { limits: { requests: { max: number } } }>;
        return { 80: all['shopfront.shop:80']?.limits.requests.max, 9090: all['shopfront.shop:9090']?.limits.requests.max };
      };
      await waitFor(async () => (await maxRequests())[9090] === 5, 'port policy applied');
      expect(await maxRequests()).toEqual({ 80: 1024, 9090: 5 });
      await replaceFile(join(dir, 'shopfront.yaml'), shopfront([80]));
      await waitFor(async () => (await maxRequests())[80] === 5, 'policy moved to port 80');
      expect(await maxRequests()).toEqual({ 80: 5, 9090: 1024 });
    } finally {
      await sidecar.close();
    }
  });
});
