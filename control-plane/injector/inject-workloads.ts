import type { V1Pod } from '@kubernetes/client-node';
import { injectPod } from './inject-pod.js';
import { podShapeProblem } from './pod-shape.js';
import { applyPatch } from './json-patch.js';
import type { InjectOptions } from './options.js';

/**
 * Offline injection for `wren inject`: find the pod (template) inside a workload and
 * apply exactly the patch the webhook would return. Like `linkerd inject`, kinds
 * without a pod template pass through unchanged.
 */
const TEMPLATE_PATHS: Record<string, readonly string[]> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export function podTemplatePath(obj: unknown): readonly string[] | undefined {
  if (typeof obj !== 'object' || obj === null) return undefined;
  const kind = (obj as { kind?: unknown }).kind;
  return typeof kind === 'string' && Object.hasOwn(TEMPLATE_PATHS, kind) ? TEMPLATE_PATHS[kind] : undefined;
}

export interface InjectWorkloadsResult {
  /** The object, injected where applicable (a new object; the input is not modified). */
  readonly object: unknown;
  /** One line per pod template seen: `Deployment/web: injected (pod has wren.io/inject: enabled)`. */
  readonly report: string[];
  readonly injected: number;
}

const getIn = (o: unknown, path: readonly string[]): unknown =>
  path.reduce<unknown>((acc, k) => (acc && typeof acc === 'object' ? (acc as Record<string, unknown>)[k] : undefined), o);

/** Inject one object (a workload, a Pod, or a v1 List of them). */
export function injectWorkloads(obj: unknown, opts: Partial<InjectOptions> = {}): InjectWorkloadsResult {
  const o = obj as { kind?: string; items?: unknown[]; metadata?: { name?: string; namespace?: string } } | null;
  if (o && o.kind === 'List' && Array.isArray(o.items)) {
    const parts = o.items.map((it) => injectWorkloads(it, opts));
    return {
      object: { ...o, items: parts.map((p) => p.object) },
      report: parts.flatMap((p) => p.report),
      injected: parts.reduce((n, p) => n + p.injected, 0),
    };
  }
  const path = podTemplatePath(obj);
  if (path === undefined) return { object: obj, report: [], injected: 0 };
  const id = `${o!.kind}/${o!.metadata?.name ?? '<unnamed>'}`;
  const template = getIn(obj, path) as V1Pod | undefined;
  if (!template || typeof template !== 'object') return { object: obj, report: [`${id}: skipped (no pod template)`], injected: 0 };
  const shape = podShapeProblem(template);
  if (shape !== null) throw new Error(`${id}: ${[...path, shape].join('.')}`);
  const namespace = o!.metadata?.namespace;
  const res = injectPod(template, namespace ? { ...opts, namespace } : opts);
  const lines = [`${id}: ${res.injected ? 'injected' : 'skipped'} (${res.reason})`, ...res.warnings.map((w) => `${id}: warning: ${w}`)];
  if (!res.injected) return { object: obj, report: lines, injected: 0 };
  const patched = applyPatch(template, res.patch);
  const copy = structuredClone(obj) as Record<string, unknown>;
  if (path.length === 0) return { object: patched, report: lines, injected: 1 };
  const parent = getIn(copy, path.slice(0, -1)) as Record<string, unknown>;
  parent[path[path.length - 1]] = patched;
  return { object: copy, report: lines, injected: 1 };
}
