import type { V1Pod } from '@kubernetes/client-node';
import { injectPod } from './inject-pod.js';
import { podShapeProblem } from './pod-shape.js';
import type { InjectOptions } from './options.js';
import { A } from './annotations.js';
import { escapePointer, type JsonPatchOp } from './json-patch.js';

/**
 * AdmissionReview v1 for the mutating webhook
 * (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response):
 * the response echoes request.uid, always allows (the injector never blocks a pod), and
 * carries the patch as base64 JSON with patchType JSONPatch.
 */
export interface AdmissionReview {
  apiVersion: string;
  kind: 'AdmissionReview';
  request?: {
    uid: string;
    kind?: { group: string; version: string; kind: string };
    operation?: string;
    namespace?: string;
    dryRun?: boolean;
    object?: unknown;
  };
  response?: {
    uid: string;
    allowed: boolean;
    patchType?: 'JSONPatch';
    patch?: string;
    warnings?: string[];
    status?: { code?: number; message?: string };
  };
}

export interface MutateOutcome {
  readonly review: AdmissionReview;
  readonly injected: boolean;
  readonly reason: string;
}

export class AdmissionError extends Error {
  readonly code = 'ADMISSION_INVALID';
}

/** Answer one AdmissionReview request. Throws AdmissionError if it is not one. */
export function mutateWithReason(review: unknown, opts: Partial<InjectOptions> = {}): MutateOutcome {
  const r = review as AdmissionReview | null;
  if (typeof r !== 'object' || r === null || r.kind !== 'AdmissionReview' || !r.request || typeof r.request.uid !== 'string')
    throw new AdmissionError('expected an AdmissionReview with request.uid');
  if (r.apiVersion !== 'admission.k8s.io/v1') throw new AdmissionError(`unsupported apiVersion ${String(r.apiVersion)}; only admission.k8s.io/v1`);
  const req = r.request;
  const reply = (response: Omit<NonNullable<AdmissionReview['response']>, 'uid' | 'allowed'>, injected: boolean, reason: string): MutateOutcome => ({
    review: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: req.uid, allowed: true, ...response } },
    injected,
    reason,
  });
  const k = req.kind;
  if (k && (k.kind !== 'Pod' || k.group !== '')) return reply({}, false, `not a pod (${k.kind})`);
  if (req.operation !== undefined && req.operation !== 'CREATE') return reply({}, false, `operation ${req.operation}`);
  const pod = req.object as V1Pod | undefined;
  if (typeof pod !== 'object' || pod === null) return reply({}, false, 'request has no object');
  // A clear 400 naming the field, not a TypeError's 500 (injector-server.ts).
  const shape = podShapeProblem(pod);
  if (shape !== null) throw new AdmissionError(`request.object.${shape}`);
  const res = injectPod(pod, req.namespace ? { ...opts, namespace: req.namespace } : opts);
  const warnings = res.warnings.length ? { warnings: res.warnings } : {};
  const ops = [...res.patch, ...warningsAnnotation(pod, res.injected, res.warnings)];
  if (ops.length === 0) return reply(warnings, res.injected, res.reason);
  const patch = Buffer.from(JSON.stringify(ops)).toString('base64');
  return reply({ patchType: 'JSONPatch', patch, ...warnings }, res.injected, res.reason);
}

/** What the warnings annotation holds at most; the rest is in the control plane's `injected` / `not injected` log line. */
const MAX_WARNINGS_CHARS = 4000;
/** One warning's share: a malformed annotation is quoted in its warning, and may be long. */
const MAX_WARNING_CHARS = 500;
/** apimachinery ValidateAnnotationsSize: all of an object's keys and values together (TotalAnnotationSizeLimitB). */
const ANNOTATIONS_LIMIT_BYTES = 256 * 1024;

/**
 * The admission warnings as a pod annotation (wren.io/inject-warnings, one a line). The API
 * server returns a webhook's warnings to whoever made the request, and for a pod a
 * Deployment, a Job or a StatefulSet creates that is the controller, which drops them: the
 * user who wrote the bad annotation never sees them (Linkerd records an Event on the
 * workload instead; an annotation needs no RBAC and no write outside the admission, so
 * the webhook keeps sideEffects: None). Kept within the API server's limit on a pod's
 * annotations, which would otherwise refuse the pod the warnings are about.
 */
function warningsAnnotation(pod: V1Pod, injected: boolean, warnings: readonly string[]): JsonPatchOp[] {
  if (warnings.length === 0) return [];
  const lines: string[] = [];
  let size = 0;
  for (const w of warnings) {
    const line = w.length > MAX_WARNING_CHARS ? `${w.slice(0, MAX_WARNING_CHARS - 1)}…` : w;
    if (size + line.length + 1 > MAX_WARNINGS_CHARS) break;
    lines.push(line);
    size += line.length + 1;
  }
  if (lines.length < warnings.length) lines.push(`(${warnings.length - lines.length} more in the control plane's log)`);
  const value = lines.join('\n');
  const existing = Object.entries(pod.metadata?.annotations ?? {}).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  // 1 KiB for the injector's own marks (wren.io/injected, prometheus.io/*, the default container).
  if (existing + Buffer.byteLength(A.injectWarnings) + Buffer.byteLength(value) + 1024 > ANNOTATIONS_LIMIT_BYTES) return [];
  // An injected pod's patch has made metadata.annotations already (inject-pod.ts marks).
  if (injected || pod.metadata?.annotations) return [{ op: 'add', path: `/metadata/annotations/${escapePointer(A.injectWarnings)}`, value }];
  return [...(pod.metadata ? [] : [{ op: 'add' as const, path: '/metadata', value: {} }]), { op: 'add', path: '/metadata/annotations', value: { [A.injectWarnings]: value } }];
}

export function mutate(review: unknown, opts: Partial<InjectOptions> = {}): AdmissionReview {
  return mutateWithReason(review, opts).review;
}
