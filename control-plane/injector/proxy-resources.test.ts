import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { quantityValue } from './annotations.js';
import { injectPod } from './inject-pod.js';
import { applyPatch } from './json-patch.js';

/**
 * Proxy resource annotations (found by adversary4): a negative quantity, or a request
 * above its limit, is a quantity the API server refuses in a container (apis/core/validation:
 * "must be greater than or equal to 0", "must be less than or equal to ... limit"), and it
 * refuses the WHOLE pod, so a Deployment could create no pod for a sidecar-tuning typo.
 * annotations.ts promises a malformed value is ignored with a warning: the injector
 * validates them and the defaults apply.
 */
function proxyOf(annotations: Record<string, string>): { c: V1Container; warnings: string[] } {
  const pod: V1Pod = { metadata: { name: 'p', namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'a' }] } };
  const res = injectPod(pod, { namespaceLabels: { 'wren.io/inject': 'enabled' } });
  const out = applyPatch(pod, res.patch);
  const c = [...(out.spec!.initContainers ?? []), ...out.spec!.containers].find((x) => x.name === 'wren-proxy')!;
  return { c, warnings: res.warnings };
}

/** What the API server checks: every quantity >= 0, every request <= its limit. */
function problems(c: V1Container): string[] {
  const req = (c.resources?.requests ?? {}) as Record<string, string>;
  const lim = (c.resources?.limits ?? {}) as Record<string, string>;
  const out: string[] = [];
  for (const [k, v] of [...Object.entries(req), ...Object.entries(lim)]) if (!(quantityValue(v)! >= 0)) out.push(`${k} ${v} is negative or malformed`);
  for (const k of Object.keys(req)) if (lim[k] !== undefined && quantityValue(req[k])! > quantityValue(lim[k])!) out.push(`${k} request ${req[k]} > limit ${lim[k]}`);
  return out;
}

test.each([
  [{ 'wren.io/proxy-cpu-limit': '-1' }, { requests: { cpu: '10m', memory: '20Mi' } }, ['wren.io/proxy-cpu-limit: ignoring negative quantity "-1"']],
  [{ 'wren.io/proxy-memory-request': '-20Mi' }, { requests: { cpu: '10m', memory: '20Mi' } }, ['wren.io/proxy-memory-request: ignoring negative quantity "-20Mi"']],
  [
    { 'wren.io/proxy-memory-request': '256Mi', 'wren.io/proxy-memory-limit': '128Mi' },
    { requests: { cpu: '10m', memory: '20Mi' }, limits: { memory: '128Mi' } },
    ['wren.io/proxy-memory-request: ignoring "256Mi", above the memory limit "128Mi"'],
  ],
  [
    { 'wren.io/proxy-cpu-request': '500m', 'wren.io/proxy-cpu-limit': '100m' },
    { requests: { cpu: '10m', memory: '20Mi' }, limits: { cpu: '100m' } },
    ['wren.io/proxy-cpu-request: ignoring "500m", above the cpu limit "100m"'],
  ],
  // A limit below the default request (10m): the request becomes the limit, as Kubernetes defaults a missing request.
  [{ 'wren.io/proxy-cpu-limit': '5m' }, { requests: { cpu: '5m', memory: '20Mi' }, limits: { cpu: '5m' } }, ['wren.io/proxy-cpu-limit: "5m" is below the default cpu request "10m"; the request is set to the limit']],
  [{ 'wren.io/proxy-memory-limit': 'lots' }, { requests: { cpu: '10m', memory: '20Mi' } }, ['wren.io/proxy-memory-limit: ignoring malformed quantity "lots"']],
])('%j: ignored with a warning; the wren-proxy container stays one the API server accepts', (ann, resources, warnings) => {
  const { c, warnings: got } = proxyOf(ann);
  expect({ problems: problems(c), resources: c.resources, warnings: got }).toEqual({ problems: [], resources, warnings });
});

test('valid annotations are used as written, request equal to limit included', () => {
  const { c, warnings } = proxyOf({ 'wren.io/proxy-cpu-request': '0.5', 'wren.io/proxy-cpu-limit': '500m', 'wren.io/proxy-memory-request': '1Gi', 'wren.io/proxy-memory-limit': '2e9' });
  expect({ resources: c.resources, warnings }).toEqual({ resources: { requests: { cpu: '0.5', memory: '1Gi' }, limits: { cpu: '500m', memory: '2e9' } }, warnings: [] });
});

test('quantityValue reads resource.Quantity', () => {
  expect(['500m', '1', '+2', '-1', '64Mi', '1Gi', '2e3', '1.5k', '.5', '1n'].map(quantityValue)).toEqual([0.5, 1, 2, -1, 64 * 2 ** 20, 2 ** 30, 2000, 1500, 0.5, 1e-9]);
  for (const bad of ['lots', '10 m', 'Mi', '1MB', '']) expect(quantityValue(bad)).toBeUndefined();
});
