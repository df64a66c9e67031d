/**
 * The little of kubelet the pod e2e test needs to run an injected container outside a
 * cluster: the downward API (`fieldRef` env values) and the container's volumes
 * (a projected service-account token, emptyDirs) as directories it mounts at their
 * `mountPath` (test/helpers/netns.ts `mounts`). Anything else in a spec is refused, so
 * the test cannot silently run a container differently from how it was injected.
 */
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { Mount } from './netns.js';

/** A container of the pod, init containers included (native sidecars are init containers). */
export function containerOf(pod: V1Pod, name: string): V1Container {
  const c = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((x) => x.name === name);
  if (!c) throw new Error(`pod ${pod.metadata?.name} has no container ${name}`);
  return c;
}

/** The pod as the API server holds it once scheduled and started: status.podIP(s) and phase set (dual-stack: IPv4 first). */
export function scheduled(pod: V1Pod, podIP: string, podIP6?: string): V1Pod {
  return { ...pod, status: { phase: 'Running', podIP, podIPs: [{ ip: podIP }, ...(podIP6 ? [{ ip: podIP6 }] : [])] } };
}

/** `metadata.name`, `status.podIP`, `metadata.labels['app']`: the downward API's field paths. */
function fieldValue(pod: V1Pod, path: string): string {
  const keys = path.match(/[^.[\]']+/g) ?? [];
  let v: unknown = pod;
  for (const k of keys) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  if (typeof v !== 'string' || v === '') throw new Error(`fieldRef ${path}: not set on pod ${pod.metadata?.name}`);
  return v;
}

/** The container's environment as kubelet sets it: literal values, and fieldRefs resolved against the pod. */
export function containerEnv(pod: V1Pod, c: V1Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef) env[e.name] = fieldValue(pod, e.valueFrom.fieldRef.fieldPath);
    else throw new Error(`${c.name}: env ${e.name}: only value and valueFrom.fieldRef are supported here`);
  }
  if (c.envFrom?.length) throw new Error(`${c.name}: envFrom is not supported here`);
  return env;
}

/**
 * kubelet's part for the container's volumes: one host directory per volume under
 * `hostRoot`, returned as mounts at the container's mountPaths. A projected
 * service-account token is written as the file the projection names (0600, owned by
 * `uid`, as kubelet does for a pod whose containers all run as that user); an emptyDir
 * is an empty directory owned by `uid`. The injector asks for a memory-backed emptyDir;
 * here it is on disk on purpose, so the test can show nothing secret was written to it.
 */
export function containerVolumes(pod: V1Pod, c: V1Container, hostRoot: string, o: { uid: number; serviceAccountToken: string }): Mount[] {
  return (c.volumeMounts ?? []).map((m) => {
    const vol = pod.spec?.volumes?.find((v) => v.name === m.name);
    if (!vol) throw new Error(`${c.name}: volumeMount ${m.name} has no volume`);
    if (m.subPath) throw new Error(`${c.name}: volumeMount ${m.name}: subPath is not supported here`);
    const host = join(hostRoot, m.name);
    mkdirSync(host, { recursive: true, mode: 0o755 });
    if (vol.projected) {
      for (const s of vol.projected.sources ?? []) {
        if (!s.serviceAccountToken) throw new Error(`volume ${m.name}: only serviceAccountToken projections are supported here`);
        const file = join(host, s.serviceAccountToken.path);
        writeFileSync(file, o.serviceAccountToken, { mode: 0o600 });
        chownSync(file, o.uid, o.uid);
      }
    } else if (vol.emptyDir) {
      chownSync(host, o.uid, o.uid);
      chmodSync(host, 0o755);
    } else throw new Error(`volume ${m.name}: only projected tokens and emptyDirs are supported here`);
    return { source: host, target: m.mountPath, readOnly: m.readOnly ?? false };
  });
}
