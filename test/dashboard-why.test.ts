import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane } from './helpers/dir-control-plane.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { meshServiceYaml } from './helpers/mesh-service-yaml.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';
import { statusOf } from './helpers/status-of.js';
import { adminGet } from './helpers/admin-get.js';

/**
 * The dashboard's "why" view end to end (docs/operations.md, Dashboard): real sidecars on
 * loopback, subscribed to a real control plane (dir source), report what they decided.
 * `web` calls `api`; the app behind `api` answers 503 to the first request of each path,
 * and api's TrafficPolicy retries 5xx, so `web`'s sidecar retries it; api's sidecar denies
 * /admin by the second rule of a DENY policy and /secret because no ALLOW rule matches.
 * Both appear in /api/why with the policy and rule, and the retry with its attempts, cause
 * and what configured it; with `concurrency: 2` (listener workers decide) too.
 */
const pki = testPki();

interface Denial { policy: string; action: string; reason: string; path: string; workload: string; rule: number; effectivePolicyId: string; policiesConsidered: string[]; matchedRule: unknown; decidingPolicy: unknown; allowPoliciesNotMatched: { name: string }[] }
interface Retry { service: string; port: number; path: string; route: string; workload: string; attempts: number; causes: { outcome: string; retryOn: string }[]; result: string; stopped: string; configuredBy: { kind: string; name: string | null; rule: string | null; target: string; retry: { attempts: number; retryOn?: string[]; codes?: number[] } | null } }

async function startWhyMesh(concurrency: number) {
  const closers: (() => Promise<void>)[] = [];
  const seen = new Set<string>();
  const s: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      // 503 the first time a path is asked for (the retry then succeeds).
      const first = !seen.has(req.url ?? '');
      seen.add(req.url ?? '');
      res.statusCode = (req.url?.startsWith('/flaky') || req.url?.startsWith('/routed')) && first ? 503 : 200;
      res.end('ok');
    });
  });
  const app = await listenOnLoopback(s);
  closers.push(app.close);
  const plane = await startDirControlPlane({ prefix: 'wren-why-', trustDomain: pki.trustDomain, seed: 5, dirSource: { rescanMs: 5_000 }, ready: false });
  const { cp, dir } = plane;
  const config = (sa: string) => ({
    identity: { namespace: 'default', serviceAccount: sa, trustDomain: pki.trustDomain, workload: { name: sa, app: sa, version: 'v1' } },
    discovery: { statsReport: { intervalMs: 250 } }, shutdown: { gracePeriodMs: 200 }, concurrency,
  });
  const server = await startProxy({ pki, serviceAccount: 'api', controlPlane: `127.0.0.1:${cp.grpcPort}`, config: config('api') });
  const endpoint = { port: app.port, proxyPort: server.inboundPort, identity: server.tls.spiffeId, workload: { name: 'api', app: 'api', version: 'v1' } };
  await replaceFile(join(dir, 'api.yaml'), meshServiceYaml('api', [endpoint], { retry: { attempts: 2, retryOn: ['5xx'] } }));
  await replaceFile(join(dir, 'authz.yaml'), `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/never"] } }]
    - to: [{ operation: { paths: ["/admin"] } }]
---
apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: allow-app, namespace: default }
spec:
  action: ALLOW
  rules:
    - to: [{ operation: { paths: ["/flaky/*", "/routed/*", "/ok", "/admin"] } }]
`);
  // Requests under /routed take a rule with its own retry (HTTPRouteRetry): that rule, not the TrafficPolicy, configured it.
  await replaceFile(join(dir, 'route.yaml'), `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: api-route, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  parentRefs: [{ group: "", kind: Service, name: api, port: 80 }]
  rules:
    - name: routed
      matches: [{ path: { type: PathPrefix, value: /routed } }]
      retry: { attempts: 1, codes: [503] }
      backendRefs: [{ name: api, port: 80 }]
    - backendRefs: [{ name: api, port: 80 }]
`);
  await cp.whenReady();
  const client = await startProxy({ pki, serviceAccount: 'web', controlPlane: `127.0.0.1:${cp.grpcPort}`, config: config('web') });
  for (const p of [client, server])
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${p.adminPort}/ready`)).ok ? true : null), 'the sidecar configured by the control plane', 10_000);
  const call = (path: string) => statusOf(client.outboundPort, 'api.default.svc.cluster.local', path);
  // Ready once the caller routes to api and api's sidecar has the policies (a first snapshot may predate them).
  const routeInForce = async () => JSON.stringify(await (await fetch(`http://127.0.0.1:${client.adminPort}/debug/route?authority=api.default.svc.cluster.local&path=/routed/x`)).json()).includes('default.api-route.routed');
  await waitFor(async () => ((await routeInForce()) && (await call('/ok')) === 200 && (await call('/secret')) === 403 ? true : null), 'api routed and its policies in force', 10_000);
  const why = async () => (await (await adminGet(`http://127.0.0.1:${cp.adminPort}/api/why`)).json()) as { denials: Denial[]; retries: Retry[]; droppedRetries: number };
  return {
    client, server, call, why, cpAdminPort: cp.adminPort,
    async close() {
      await client.close();
      await server.close();
      await plane.close(100);
      await Promise.all(closers.map((c) => c()));
    },
  };
}

describe.each([1, 2])('concurrency %i', (concurrency) => {
  let mesh: Awaited<ReturnType<typeof startWhyMesh>>;
  beforeAll(async () => {
    mesh = await startWhyMesh(concurrency);
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
  });

  test('a denial shows with its policy and rule; a default deny with the ALLOW policies considered', async () => {
    expect(await mesh.call('/admin?token=secret')).toBe(403);
    expect(await mesh.call('/secret')).toBe(403);
    const denials = await waitFor(async () => {
      const d = (await mesh.why()).denials;
      return d.length >= 2 ? d : null;
    }, 'both denials at the control plane', 10_000);
    const admin = denials.find((d) => d.path === '/admin')!;
    expect(admin).toMatchObject({
      workload: 'api', policy: 'default/deny-admin', action: 'DENY', rule: 1, effectivePolicyId: 'ns[default]-policy[deny-admin]-rule[1]',
      matchedRule: { to: [{ operation: { paths: ['/admin'] } }] },
    });
    const secret = denials.find((d) => d.path === '/secret')!;
    expect(secret).toMatchObject({ workload: 'api', policy: '', reason: 'no-allow-policy-matched', rule: -1, effectivePolicyId: '', policiesConsidered: ['default/allow-app'], matchedRule: null });
    expect(secret.allowPoliciesNotMatched.map((p) => p.name)).toEqual(['default/allow-app']);
  });

  test('a retried request shows with the service, what configured the retry, its attempts and the cause', async () => {
    expect(await mesh.call('/flaky/1?x=1')).toBe(200);
    const retries = await waitFor(async () => {
      const r = (await mesh.why()).retries;
      return r.length > 0 ? r : null;
    }, 'the retry at the control plane', 10_000);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({
      workload: 'web', service: 'api.default', port: 80, path: '/flaky/1', attempts: 2, causes: [{ outcome: 'http-503', retryOn: '5xx' }], result: 'success', stopped: '',
      configuredBy: { kind: 'TrafficPolicy', name: null, target: 'api.default', retry: { attempts: 2, retryOn: ['5xx'] } },
    });
    expect(await mesh.call('/routed/1')).toBe(200);
    const routed = await waitFor(async () => (await mesh.why()).retries.find((r) => r.path === '/routed/1') ?? null, 'the routed retry at the control plane', 10_000);
    expect(routed).toMatchObject({
      route: 'default.api-route.routed', attempts: 2, causes: [{ outcome: 'http-503', retryOn: 'retriable-status-codes' }], result: 'success',
      configuredBy: { kind: 'HTTPRoute', name: 'default/api-route', rule: 'routed', retry: { attempts: 1, codes: [503] } },
    });
    // The client's proxy says how many of its retries it could not report: none here.
    expect((await mesh.why()).droppedRetries).toBe(0);
    // The service page lists the route that configured it.
    const page = (await (await adminGet(`http://127.0.0.1:${mesh.cpAdminPort}/api/services/api.default`)).json()) as { routes: { kind: string; name: string; appliesTo: string; rules: { name: string }[] }[] };
    expect(page.routes.map((r) => [r.kind, r.name, r.appliesTo, r.rules.map((x) => x.name)])).toEqual([['HTTPRoute', 'api-route', 'every caller (producer route)', ['routed', '']]]);
  });
});
