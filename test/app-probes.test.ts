import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { createServer as createNetServer, type Socket } from 'node:net';
import { injectPod } from '../control-plane/injector/inject-pod.js';
import { applyPatch } from '../control-plane/injector/json-patch.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { grpcHealthApp, healthApp, podRedirect, tcpHealthApp, type GrpcHealthApp, type HealthApp } from './helpers/health-app.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { closedPort } from './helpers/closed-port.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Kubelet's probes rewritten to the sidecar (Istio's app probe rewrite), end to end: a pod
 * is injected, and what the injector wrote drives a real sidecar in front of real apps.
 * The proxy gets the injector's WREN_APP_PROBES as its `appProbes`; "kubelet" asks the
 * sidecar's real metrics port for each rewritten probe's path. The app's own ports are
 * no longer skipped by the inbound redirect: standing in for it (podRedirect), a plaintext
 * client on the pod's address meets the sidecar's STRICT mTLS instead of the app.
 */
const pki = testPki();
const POD = '127.0.0.5';

let web: HealthApp, rpc: GrpcHealthApp, tcp: Awaited<ReturnType<typeof tcpHealthApp>>;
let silent: { port: number; close(): Promise<void> };
const held: Socket[] = [];
let sidecar: Proxy;
let pod: V1Pod;
let redirect: Awaited<ReturnType<typeof podRedirect>>;

const port = (p: number | string) => p as unknown as number;

beforeAll(async () => {
  [web, rpc, tcp] = await Promise.all([healthApp('web'), grpcHealthApp(), tcpHealthApp()]);
  silent = await listenOnLoopback(createNetServer((s) => void held.push(s)));
  const gone = await closedPort();
  const containers: V1Container[] = [
    {
      name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: web.port }],
      readinessProbe: { httpGet: { path: '/healthz', port: port('http'), httpHeaders: [{ name: 'Authorization', value: 'Bearer probe-secret' }] }, periodSeconds: 5, failureThreshold: 2 },
      livenessProbe: { tcpSocket: { port: port(tcp.port) } },
    },
    { name: 'rpc', image: 'rpc:1', startupProbe: { grpc: { port: rpc.port }, failureThreshold: 30 }, readinessProbe: { grpc: { port: rpc.port, service: 'shop.Cart' } } },
    { name: 'hung', image: 'hung:1', readinessProbe: { httpGet: { path: '/', port: port(silent.port) }, timeoutSeconds: 1 } },
    { name: 'gone', image: 'gone:1', livenessProbe: { tcpSocket: { port: port(gone) } }, readinessProbe: { exec: { command: ['true'] } } },
  ];
  const spec: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-0', namespace: 'default' }, spec: { serviceAccountName: 'web', containers } };
  const res = injectPod(spec, { namespaceLabels: { 'wren.io/inject': 'enabled' } });
  expect([res.injected, res.warnings]).toEqual([true, []]);
  pod = applyPatch(spec, res.patch);
  const env = pod.spec!.initContainers!.find((c) => c.name === 'wren-proxy')!.env!.find((e) => e.name === 'WREN_APP_PROBES')!.value!;
  sidecar = await startProxy({
    pki, serviceAccount: 'web',
    config: {
      appProbes: JSON.parse(env),
      listeners: { inbound: { address: POD, ipv6Address: '', port: 0 } },
    },
  });
  redirect = await podRedirect(POD, web.port, sidecar.inboundPort);
});

afterAll(async () => {
  await sidecar?.close();
  for (const s of held) s.destroy();
  await Promise.all([redirect?.close(), web?.close(), rpc?.close(), tcp?.close(), silent?.close()]);
});

const probeOf = (container: string, field: 'readinessProbe' | 'livenessProbe' | 'startupProbe'): V1Probe =>
  pod.spec!.containers.find((c) => c.name === container)![field]!;

/** What kubelet does with a rewritten probe: GET its path on the pod's metrics port (the test sidecar's is port 0, so the bound one). */
async function kubelet(container: string, field: 'readinessProbe' | 'livenessProbe' | 'startupProbe'): Promise<[number, string]> {
  const g = probeOf(container, field).httpGet!;
  expect([g.port, g.scheme]).toEqual([15020, 'HTTP']);
  const r = await fetch(`http://127.0.0.1:${sidecar.metricsPort}${g.path}`, { headers: { 'user-agent': 'kube-probe/1.31' } });
  return [r.status, await r.text()];
}

const probeCount = (probe: string, result: string) => metric(sidecar, new RegExp(`^wren_app_probes_total\\{probe="${probe}",result="${result}"\\} (\\d+)$`, 'm'));

test('the injector rewrote every network probe to the metrics port, kept their timing, left exec alone and skipped no port', () => {
  expect(probeOf('web', 'readinessProbe')).toEqual({ periodSeconds: 5, failureThreshold: 2, httpGet: { path: '/app-health/web/readyz', port: 15020, scheme: 'HTTP' } });
  expect(probeOf('rpc', 'startupProbe')).toEqual({ failureThreshold: 30, httpGet: { path: '/app-health/rpc/startupz', port: 15020, scheme: 'HTTP' } });
  expect(probeOf('gone', 'readinessProbe')).toEqual({ exec: { command: ['true'] } });
  expect(pod.spec!.initContainers!.find((c) => c.name === 'wren-init')!.args).not.toContain('--skip-inbound-ports');
});

test('HTTP probe: the app\'s /healthz through the sidecar, 200 while it is healthy and 503 with its status when not', async () => {
  expect(await kubelet('web', 'readinessProbe')).toEqual([200, 'ok\n']);
  expect(web.probes.at(-1)).toMatchObject({ 'user-agent': 'kube-probe/wren', connection: 'close', authorization: 'Bearer probe-secret' });
  web.healthy = false;
  expect(await kubelet('web', 'readinessProbe')).toEqual([503, 'HTTP 503\n']);
  web.healthy = true;
  expect(await kubelet('web', 'readinessProbe')).toEqual([200, 'ok\n']);
  expect(web.userHits).toBe(0);
  expect([await probeCount('web/readyz', 'success'), await probeCount('web/readyz', 'failure')]).toEqual([2, 1]);
});

test('TCP probe: passes while the port listens, fails on a closed port', async () => {
  const before = tcp.accepted;
  expect(await kubelet('web', 'livenessProbe')).toEqual([200, 'ok\n']);
  expect(tcp.accepted).toBe(before + 1);
  const [status, reason] = await kubelet('gone', 'livenessProbe');
  expect([status, reason]).toEqual([503, expect.stringMatching(/ECONNREFUSED/)]);
  expect(await probeCount('gone/livez', 'failure')).toBe(1);
});

test('gRPC probe: grpc.health.v1 Check against a real grpc-js server, SERVING passes, NOT_SERVING fails; the probe\'s service is asked for', async () => {
  expect(await kubelet('rpc', 'startupProbe')).toEqual([200, 'ok\n']);
  expect(await kubelet('rpc', 'readinessProbe')).toEqual([200, 'ok\n']);
  expect(rpc.checks.map((c) => c.service)).toEqual(['', 'shop.Cart']);
  rpc.status = 'NOT_SERVING';
  expect(await kubelet('rpc', 'readinessProbe')).toEqual([503, 'NOT_SERVING\n']);
  rpc.status = 'SERVING';
  expect([await probeCount('rpc/readyz', 'success'), await probeCount('rpc/readyz', 'failure')]).toEqual([1, 1]);
});

test('an app that accepts and never answers fails at the probe\'s timeoutSeconds (1 s), not before', async () => {
  const t0 = Date.now();
  expect(await kubelet('hung', 'readinessProbe')).toEqual([503, 'timed out after 1s\n']);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(await probeCount('hung/readyz', 'timeout')).toBe(1);
});

test('the probed port is behind the sidecar: plaintext to the pod\'s address meets STRICT mTLS, not the app; unknown probe paths are 404', async () => {
  const hits = web.userHits + web.probes.length;
  const plain = await fetch(`http://${POD}:${web.port}/healthz`).then((r) => r.status, () => 'refused');
  expect(plain).not.toBe(200);
  expect(web.userHits + web.probes.length).toBe(hits);
  expect(redirect.accepted).toBeGreaterThan(0);
  expect((await fetch(`http://127.0.0.1:${sidecar.metricsPort}/app-health/web/livez-not`)).status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${sidecar.metricsPort}/app-health/gone/readyz`)).status).toBe(404);
});

test('the admin /config_dump shows the probes with header values redacted (a probe header may be a credential)', async () => {
  const dump = (await (await fetch(`http://127.0.0.1:${sidecar.adminPort}/config_dump`)).json()) as { bootstrap: { appProbes: Record<string, unknown> } };
  expect(dump.bootstrap.appProbes['/app-health/web/readyz']).toEqual({ kind: 'http', port: web.port, path: '/healthz', scheme: 'HTTP', headers: [{ name: 'Authorization', value: '(redacted)' }], timeoutMs: 1000 });
  expect(Object.keys(dump.bootstrap.appProbes)).toHaveLength(6);
  expect(JSON.stringify(dump)).not.toContain('probe-secret');
});
