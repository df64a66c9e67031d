import type { V1Pod } from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { injectPod } from '../../control-plane/injector/inject-pod.js';
import { applyPatch } from '../../control-plane/injector/json-patch.js';

/**
 * A pod as the API server stores it after the injection webhook: the real injector's patch
 * applied (a native wren-proxy sidecar, wren-init, the wren.io/injected annotation). A fixture
 * pod that is meant to be meshed needs it: the control plane calls a pod meshed only when it
 * has the sidecar, never for the opt-in label alone (control-plane/translate/k8s-objects.ts parsePod).
 */
export function withSidecar<T extends object>(pod: T): T {
  const r = injectPod(pod as V1Pod);
  if (!r.injected) throw new Error(`the injector did not inject the fixture pod: ${r.reason}`);
  return applyPatch(pod as V1Pod, r.patch) as T;
}

/** The same for Pod manifests in YAML (directory-source fixtures): one document in, one out. */
function withSidecarYaml(podYaml: string): string {
  return stringify(withSidecar(parse(podYaml) as object), { lineWidth: 0 });
}

/**
 * A directory-source Pod manifest of a meshed workload: `name` in `namespace`, running as
 * `serviceAccount`, with `labels` and the opt-in label, the sidecar injected (withSidecarYaml).
 */
export function meshedPodYaml(name: string, namespace: string, serviceAccount: string, labels: Readonly<Record<string, string>> = {}): string {
  return withSidecarYaml(stringify({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, labels: { ...labels, 'wren.io/inject': 'enabled' } },
    spec: { serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'x' }] },
  }));
}
