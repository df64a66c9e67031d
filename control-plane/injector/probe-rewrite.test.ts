import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { parseAppProbes } from '../../contract/app-probes.js';
import { injectPod } from './inject-pod.js';
import { injectWorkloads } from './inject-workloads.js';
import type { JsonPatchOp } from './json-patch.js';

/**
 * Kubelet probes rewritten to the sidecar's metrics port (Istio's probe rewrite): what each
 * kind of probe becomes, what the proxy is handed in WREN_APP_PROBES, what is left alone,
 * and the opt-out that brings back the old inbound skip with its warning.
 */
const apply = (pod: V1Pod, patch: JsonPatchOp[]): V1Pod => fjp.applyPatch(structuredClone(pod), patch as fjp.Operation[], true, false).newDocument;

const podWith = (containers: V1Container[], annotations?: Record<string, string>): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web-1', namespace: 'demo', ...(annotations ? { annotations } : {}) },
  spec: { containers },
});

/** The injected pod, its proxy's WREN_APP_PROBES (raw and as the proxy parses it), wren-init's args and the warnings. */
function injected(pod: V1Pod) {
  const r = injectPod(pod);
  expect(r.injected).toBe(true);
  const out = apply(pod, r.patch);
  const proxy = out.spec!.initContainers!.find((c) => c.name === 'wren-proxy')!;
  const raw = proxy.env?.find((e) => e.name === 'WREN_APP_PROBES')?.value;
  const init = out.spec!.initContainers!.find((c) => c.name === 'wren-init')!;
  const skip = init.args!.includes('--skip-inbound-ports') ? init.args![init.args!.indexOf('--skip-inbound-ports') + 1] : undefined;
  return { out, env: raw === undefined ? undefined : JSON.parse(raw), parsed: raw === undefined ? undefined : parseAppProbes(JSON.parse(raw), 'WREN_APP_PROBES'), skip, warnings: r.warnings };
}

const port = (p: number | string) => p as unknown as number;

test('httpGet: the probe asks the metrics port; every timing field is kept; headers, scheme and the resolved port go to the proxy', () => {
  const timing = { initialDelaySeconds: 5, periodSeconds: 7, timeoutSeconds: 3, successThreshold: 1, failureThreshold: 4, terminationGracePeriodSeconds: 30 };
  const readiness: V1Probe = {
    ...timing,
    httpGet: { path: '/healthz?full=1', port: port('api'), scheme: 'HTTPS', httpHeaders: [{ name: 'Host', value: 'web.local' }, { name: 'X-Probe', value: 'a' }, { name: 'X-Probe', value: 'b' }] },
  };
  const { out, env, parsed, skip, warnings } = injected(podWith([{ name: 'web', image: 'w', ports: [{ name: 'api', containerPort: 8443 }], readinessProbe: readiness }]));
  expect(out.spec!.containers[0].readinessProbe).toEqual({ ...timing, httpGet: { path: '/app-health/web/readyz', port: 15020, scheme: 'HTTP' } });
  expect(env).toEqual({
    '/app-health/web/readyz': {
      kind: 'http', port: 8443, path: '/healthz?full=1', scheme: 'HTTPS', timeoutSeconds: 3,
      httpHeaders: [{ name: 'Host', value: 'web.local' }, { name: 'X-Probe', value: 'a' }, { name: 'X-Probe', value: 'b' }],
    },
  });
  expect(parsed!.get('/app-health/web/readyz')).toEqual({
    kind: 'http', port: 8443, path: '/healthz?full=1', scheme: 'HTTPS', timeoutMs: 3000,
    headers: [{ name: 'Host', value: 'web.local' }, { name: 'X-Probe', value: 'a' }, { name: 'X-Probe', value: 'b' }],
  });
  expect([skip, warnings]).toEqual([undefined, []]);
});

test('paths as kubelet sends them: a leading / added, the fragment dropped, other bytes percent-encoded; no path is /', () => {
  const probe = (path: string | undefined): V1Probe => ({ httpGet: { ...(path === undefined ? {} : { path }), port: port(80) } });
  const { env } = injected(podWith([
    { name: 'a', image: 'a', readinessProbe: probe('healthz'), livenessProbe: probe('/live ness#frag'), startupProbe: probe(undefined) },
    { name: 'b', image: 'b', readinessProbe: probe('/é') },
  ]));
  const paths = Object.fromEntries(Object.entries(env as Record<string, { path: string }>).map(([k, v]) => [k, v.path]));
  expect(paths).toEqual({ '/app-health/a/livez': '/live%20ness', '/app-health/a/readyz': '/healthz', '/app-health/a/startupz': '/', '/app-health/b/readyz': '/%C3%A9' });
});

test('tcpSocket and grpc become httpGet probes on the metrics port (kubelet cannot speak mTLS to the port itself)', () => {
  const { out, env, parsed } = injected(podWith([
    { name: 'db', image: 'd', livenessProbe: { tcpSocket: { port: port(5432) }, periodSeconds: 20 } },
    { name: 'rpc', image: 'r', ports: [{ name: 'grpc', containerPort: 9090 }], startupProbe: { grpc: { port: 9090, service: 'shop.Cart' }, failureThreshold: 30 }, readinessProbe: { grpc: { port: 9090 } } },
  ]));
  expect(out.spec!.containers[0].livenessProbe).toEqual({ periodSeconds: 20, httpGet: { path: '/app-health/db/livez', port: 15020, scheme: 'HTTP' } });
  expect(out.spec!.containers[1].startupProbe).toEqual({ failureThreshold: 30, httpGet: { path: '/app-health/rpc/startupz', port: 15020, scheme: 'HTTP' } });
  expect(env).toEqual({
    '/app-health/db/livez': { kind: 'tcp', port: 5432, timeoutSeconds: 1 },
    '/app-health/rpc/readyz': { kind: 'grpc', port: 9090, timeoutSeconds: 1 },
    '/app-health/rpc/startupz': { kind: 'grpc', port: 9090, service: 'shop.Cart', timeoutSeconds: 1 },
  });
  expect(parsed!.get('/app-health/rpc/readyz')).toEqual({ kind: 'grpc', port: 9090, service: '', timeoutMs: 1000 });
});

test('left alone: exec probes, probes with a host (kubelet connects there, not through this pod), and a named port the container lacks (warned)', () => {
  const exec: V1Probe = { exec: { command: ['true'] }, periodSeconds: 3 };
  const elsewhere: V1Probe = { httpGet: { host: '10.9.9.9', path: '/', port: port(80) } };
  const tcpElsewhere: V1Probe = { tcpSocket: { host: 'db.example', port: port(5432) } };
  const unnamed: V1Probe = { httpGet: { path: '/', port: port('nope') } };
  const pod = podWith([{ name: 'app', image: 'a', livenessProbe: exec, readinessProbe: elsewhere, startupProbe: tcpElsewhere }, { name: 'b', image: 'b', readinessProbe: unnamed }]);
  const { out, env, skip, warnings } = injected(pod);
  expect(out.spec!.containers).toEqual(pod.spec!.containers);
  expect([env, skip]).toEqual([undefined, undefined]);
  expect(warnings).toEqual(['container b readinessProbe: port "nope" is not one of the container\'s ports; the probe is left as is (kubelet fails it)']);
});

test('wren.io/rewrite-app-probes: "false" keeps the probes and skips their ports inbound, warning that they bypass mTLS and authorization', () => {
  const pod = podWith([{ name: 'web', image: 'w', ports: [{ name: 'http', containerPort: 8080 }], readinessProbe: { httpGet: { path: '/ready', port: port('http') } }, livenessProbe: { tcpSocket: { port: port(8081) } } }], { 'wren.io/rewrite-app-probes': 'false' });
  const { out, env, skip, warnings } = injected(pod);
  expect(out.spec!.containers).toEqual(pod.spec!.containers);
  expect([env, skip]).toEqual([undefined, '8080,8081']);
  expect(warnings).toEqual(['wren.io/rewrite-app-probes "false": probe ports 8080,8081 skip the sidecar, open to plaintext from the cluster without mTLS or authorization']);
  // With the operator's own skips, each port once.
  const both = injected(podWith(pod.spec!.containers, { 'wren.io/rewrite-app-probes': 'false', 'wren.io/skip-inbound-ports': '22,8080' }));
  expect(both.skip).toBe('22,8080,8081');
});

test('a malformed wren.io/rewrite-app-probes is ignored with a warning: probes are rewritten', () => {
  const { env, skip, warnings } = injected(podWith([{ name: 'web', image: 'w', readinessProbe: { tcpSocket: { port: port(80) } } }], { 'wren.io/rewrite-app-probes': 'no' }));
  expect(Object.keys(env)).toEqual(['/app-health/web/readyz']);
  expect(skip).toBeUndefined();
  expect(warnings).toEqual(['wren.io/rewrite-app-probes: ignoring "no" (expected true or false); probes are rewritten']);
});

test('a probe the proxy could not send as written (a header with a line break) falls back to the inbound skip, warned', () => {
  const { out, env, skip, warnings } = injected(podWith([{
    name: 'web', image: 'w',
    readinessProbe: { httpGet: { path: '/', port: port(8080), httpHeaders: [{ name: 'X-A', value: 'a\r\nInjected: 1' }] } },
    livenessProbe: { tcpSocket: { port: port(8081) } },
  }]));
  expect(out.spec!.containers[0].readinessProbe?.httpGet?.port).toBe(8080);
  expect(Object.keys(env)).toEqual(['/app-health/web/livez']);
  expect(skip).toBe('8080');
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/^container web readinessProbe: cannot be run by the proxy \(.*httpHeaders\[0\]\.value.*\); its port 8080 is left out of the inbound redirect instead, open to plaintext past mTLS and authorization$/);
});

test('wren inject rewrites the pod template\'s probes with the same patch; injecting its output again changes nothing', () => {
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'demo' },
    spec: { template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'w', readinessProbe: { httpGet: { path: '/healthz', port: 8080 } } }] } } },
  };
  const once = injectWorkloads(deployment);
  expect(once.injected).toBe(1);
  const template = (once.object as typeof deployment).spec.template as V1Pod;
  expect(template.spec!.containers[0].readinessProbe).toEqual({ httpGet: { path: '/app-health/web/readyz', port: 15020, scheme: 'HTTP' } });
  expect(template.spec!.initContainers!.find((c) => c.name === 'wren-init')!.args).not.toContain('--skip-inbound-ports');
  const twice = injectWorkloads(once.object);
  expect([twice.injected, twice.object]).toEqual([0, once.object]);
});
