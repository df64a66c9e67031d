import { ROOT_NAMESPACE } from '../../contract/defaults.js';
import type { PushedTelemetry } from '../../contract/model.js';
import { arr, bool, fail, literal, map, num, obj, optional, str, withDefault, type Parser } from '../../common/schema.js';
import { TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION } from './k8s-objects.js';
import { metadata, selector, type Labels } from './policy-objects.js';

/**
 * The Telemetry resource (manifests/crds/telemetry.yaml): Istio's telemetry.istio.io/v1
 * Telemetry for the fields Wren has, under policy.wren.io/v1alpha1 like Wren's other
 * Istio-shaped kinds. Per workload it sets trace sampling and access logging; the proxy's
 * own config (its file, or the pod annotations) wins over it (docs/observability.md).
 *
 * Scope (Istio, docs/reference/config/telemetry): in the root namespace (wren-system)
 * without a selector = mesh-wide; in another namespace without a selector = that
 * namespace; with spec.selector.matchLabels = the workloads of its namespace whose
 * labels include them. Resolution, field by field: workload over namespace over mesh.
 *
 * Istio allows one selector-less resource per namespace and one resource per workload;
 * pilot (model/telemetry.go) takes the first in creation order and ignores the rest.
 * Wren does the same (oldest creationTimestamp, then name) and reports every ignored
 * one, so the control plane can log it.
 *
 * Fields: `tracing[0].randomSamplingPercentage` (0-100); `accessLogging[0].disabled`
 * (an entry present without `disabled: true` turns logs on: Wren has one access-log
 * provider, stdout JSON, so the entry is that provider's switch, as in Istio with one
 * default provider); `accessLogging[0].randomSamplingPercentage` is a Wren extension
 * (Istio samples logs with a CEL `filter.expression`, which Wren does not evaluate).
 * Wren has one provider of each kind, so each list takes at most one entry; Istio's
 * `providers`, `match`, `filter`, `metrics`, `targetRefs` are not accepted (unknown
 * fields are errors: a setting that would be ignored must not pass silently).
 */
export interface KTelemetry {
  /** `namespace/name`. */
  readonly name: string;
  readonly namespace: string;
  /** matchLabels; null (or empty) = every workload of the namespace (or the mesh, in the root namespace). */
  readonly selector: Labels | null;
  readonly samplingPercent: number | undefined;
  readonly accessLogEnabled: boolean | undefined;
  readonly accessLogSamplingPercent: number | undefined;
  readonly createdAt: string;
}

const percent = optional(num({ min: 0, max: 100 }));
const tracing = obj({ randomSamplingPercentage: percent });
const accessLogging = obj({ disabled: optional(bool()), randomSamplingPercentage: percent });
const atMostOne = <T>(p: Parser<T>, what: string): Parser<readonly T[]> =>
  map(arr(p, { default: [] }), (l, path) => (l.length > 1 ? fail(path, `Wren has one ${what} provider: at most one entry, got ${l.length}`) : l));

const spec = withDefault(
  obj({ selector, tracing: atMostOne(tracing, 'tracing'), accessLogging: atMostOne(accessLogging, 'access-log') }),
  { selector: null, tracing: [], accessLogging: [] },
);
/** Common envelope; `status` and other top-level fields the API server adds are allowed. */
const resource = obj(
  { apiVersion: optional(literal([`${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}`] as const)), kind: optional(str()), metadata, spec },
  { allowUnknown: true },
);

export const parseTelemetryResource: Parser<KTelemetry> = (raw, path) => {
  const o = resource(raw, path);
  const t = o.spec.tracing[0];
  const a = o.spec.accessLogging[0];
  return Object.freeze({
    name: `${o.metadata.namespace}/${o.metadata.name}`,
    namespace: o.metadata.namespace,
    selector: o.spec.selector,
    samplingPercent: t?.randomSamplingPercentage,
    accessLogEnabled: a === undefined ? undefined : a.disabled !== true,
    accessLogSamplingPercent: a?.randomSamplingPercentage,
    createdAt: o.metadata.creationTimestamp,
  });
};

export interface TelemetryResolution {
  readonly telemetry: PushedTelemetry;
  /** Resources that also matched at a level and were ignored (the oldest applies), one line each. */
  readonly conflicts: readonly string[];
}

const older = (a: KTelemetry, b: KTelemetry): boolean => (a.createdAt !== b.createdAt ? a.createdAt < b.createdAt : a.name < b.name);

function oldest(level: string, list: readonly KTelemetry[], conflicts: string[]): KTelemetry | null {
  let best: KTelemetry | null = null;
  for (const t of list) if (!best || older(t, best)) best = t;
  const ignored = list.filter((t) => t !== best).map((t) => t.name).sort();
  if (best && ignored.length > 0)
    conflicts.push(`${level}: Telemetry ${best.name} applies (the oldest); ${ignored.join(', ')} ignored (only one Telemetry may apply per level)`);
  return best;
}

const selects = (sel: Labels, labels: Labels): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v);

/** One workload's telemetry from every Telemetry resource. Pure; deterministic for equal inputs. */
export function resolveWorkloadTelemetry(
  all: readonly KTelemetry[],
  w: { readonly namespace: string; readonly labels: Labels },
  rootNamespace: string = ROOT_NAMESPACE,
): TelemetryResolution {
  const conflicts: string[] = [];
  const mesh = oldest(`mesh-wide (namespace ${rootNamespace})`, all.filter((t) => t.selector === null && t.namespace === rootNamespace), conflicts);
  const ns = w.namespace === rootNamespace ? null
    : oldest(`namespace ${w.namespace}`, all.filter((t) => t.selector === null && t.namespace === w.namespace), conflicts);
  const workload = oldest(
    `workload ${w.namespace} ${JSON.stringify(w.labels)}`,
    all.filter((t) => t.selector !== null && t.namespace === w.namespace && selects(t.selector, w.labels)),
    conflicts,
  );
  const levels = [workload, ns, mesh];
  const first = <K extends 'samplingPercent' | 'accessLogEnabled' | 'accessLogSamplingPercent'>(k: K): KTelemetry[K] | undefined => {
    for (const l of levels) if (l && l[k] !== undefined) return l[k];
    return undefined;
  };
  return {
    telemetry: Object.freeze({
      tracing: Object.freeze({ samplingPercent: first('samplingPercent') }),
      accessLog: Object.freeze({ enabled: first('accessLogEnabled'), samplingPercent: first('accessLogSamplingPercent') }),
    }),
    conflicts,
  };
}
