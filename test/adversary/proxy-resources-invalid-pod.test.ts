import { injectPod } from '../../control-plane/injector/inject-pod.js';
import { applyPatch } from '../../control-plane/injector/json-patch.js';
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/**
 * ADVERSARY: proxy-resources-invalid-pod
 *
 * What a user does: annotates a pod with proxy resources that are Kubernetes quantities
 * but not valid container resources: `wren.io/proxy-cpu-limit: "-1"` (negative), or a
 * request above its limit (`wren.io/proxy-memory-request: 256Mi` with
 * `wren.io/proxy-memory-limit: 128Mi`, e.g. raising the request and forgetting the limit).
 *
 * What happens: isQuantity accepts the sign and nothing compares request to limit, so the
 * injector writes them into the wren-proxy container. The API server then refuses the WHOLE
 * pod (apis/core/validation: "must be greater than or equal to 0", "must be less than or
 * equal to memory limit"): the Deployment's ReplicaSet cannot create any pod, for a
 * mistake in a sidecar-tuning annotation. annotations.ts promises: "A malformed value never
 * breaks pod creation: it is ignored with a warning".
 *
 * What should happen: a negative quantity, or a request above its limit, is ignored with an
 * AdmissionReview warning (the default applies), and the injected pod is valid.
 */
const parse = (q: string): number => {
  const m = /^([+-]?[\d.]+)([a-zA-Z]*)$/.exec(q)!;
  const mult: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };
  return Number(m[1]) * mult[m[2]];
};

function proxyOf(annotations: Record<string, string>): { c: V1Container; warnings: string[] } {
  const pod: V1Pod = { metadata: { name: 'p', namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'a' }] } };
  const res = injectPod(pod, { namespaceLabels: { 'wren.io/inject': 'enabled' } });
  const out = applyPatch(pod, res.patch);
  const c = [...(out.spec!.initContainers ?? []), ...out.spec!.containers].find((x) => x.name === 'wren-proxy')!;
  return { c, warnings: res.warnings };
}

test.each([
  [{ 'wren.io/proxy-cpu-limit': '-1' }],
  [{ 'wren.io/proxy-memory-request': '-20Mi' }],
  [{ 'wren.io/proxy-memory-request': '256Mi', 'wren.io/proxy-memory-limit': '128Mi' }],
  [{ 'wren.io/proxy-cpu-request': '500m', 'wren.io/proxy-cpu-limit': '100m' }],
])('%j is ignored with a warning; the wren-proxy container stays valid (no pod the API server refuses)', (ann) => {
  const { c, warnings } = proxyOf(ann);
  const req = (c.resources?.requests ?? {}) as Record<string, string>;
  const lim = (c.resources?.limits ?? {}) as Record<string, string>;
  const problems: string[] = [];
  for (const [k, v] of [...Object.entries(req), ...Object.entries(lim)]) if (parse(v) < 0) problems.push(`${k} ${v} is negative`);
  for (const k of Object.keys(req)) if (lim[k] !== undefined && parse(req[k]) > parse(lim[k])) problems.push(`${k} request ${req[k]} > limit ${lim[k]}`);
  expect({ problems, warned: warnings.length > 0 }).toEqual({ problems: [], warned: true });
});
