/**
 * The workload a pod belongs to, derived as Istio derives it for its metrics' workload
 * labels and the injector's ISTIO_META_WORKLOAD_NAME (istio/istio pkg/kube
 * GetDeployMetaFromPod): the pod's controller owner reference, then
 * - a ReplicaSet whose name is `<deployment>-<pod-template-hash>` (the pod carries the
 *   hash label) belongs to that Deployment;
 * - a Job whose name is `<cronjob>-<scheduled time in minutes>` belongs to that CronJob;
 * - any other owner (StatefulSet, DaemonSet, a ReplicaSet without a Deployment, a Job) is
 *   the workload itself;
 * - a pod with no controller is its own workload (its name, or, at admission time before
 *   the API server names it, its generateName without the trailing dash).
 * app: label `app.kubernetes.io/name`, else `app`; version: `app.kubernetes.io/version`,
 * else `version` ('' when absent, which the metrics show as `unknown`).
 */
export interface PodMeta {
  readonly name?: string;
  readonly generateName?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly ownerReferences?: readonly { readonly kind?: string; readonly name?: string; readonly controller?: boolean }[];
}

export interface PodWorkload {
  readonly name: string;
  readonly app: string;
  readonly version: string;
}

/** CronJob-made Job names end in the scheduled time in minutes since the epoch (kubernetes cronjob controller getJobName). */
const CRONJOB_JOB = /^(.+)-\d{8,10}$/;

export function podWorkload(meta: PodMeta): PodWorkload {
  const labels = meta.labels ?? {};
  const owner = meta.ownerReferences?.find((r) => r.controller === true) ?? meta.ownerReferences?.[0];
  let name = meta.name || (meta.generateName ?? '').replace(/-$/, '');
  if (owner?.name) {
    name = owner.name;
    const hash = labels['pod-template-hash'];
    if (owner.kind === 'ReplicaSet' && hash && name.endsWith(`-${hash}`)) name = name.slice(0, -hash.length - 1);
    else if (owner.kind === 'Job') name = CRONJOB_JOB.exec(name)?.[1] ?? name;
  }
  return {
    name,
    app: labels['app.kubernetes.io/name'] ?? labels.app ?? '',
    version: labels['app.kubernetes.io/version'] ?? labels.version ?? '',
  };
}
