import type { V1Pod } from '@kubernetes/client-node';
import { injectPod } from './inject-pod.js';
import { podShapeProblem } from './pod-shape.js';
import type { InjectOptions } from './options.js';

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
  if (!res.injected || res.patch.length === 0) return reply(warnings, false, res.reason);
  const patch = Buffer.from(JSON.stringify(res.patch)).toString('base64');
  return reply({ patchType: 'JSONPatch', patch, ...warnings }, true, res.reason);
}

export function mutate(review: unknown, opts: Partial<InjectOptions> = {}): AdmissionReview {
  return mutateWithReason(review, opts).review;
}
