import { ROOT_NAMESPACE } from '../../contract/defaults.js';
import { loadDiscoveryProto, telemetryToJson, type WorkloadIdentity } from '../../contract/discovery.js';
import type { Logger } from '../../common/logger.js';
import type { PolicyView } from '../store/mesh-store.js';
import { resolveWorkloadTelemetry } from '../translate/telemetry-objects.js';

/**
 * Each subscriber's telemetry settings as wire JSON, resolved from the Telemetry
 * resources in the store's PolicyView for the subscriber's workload (namespace from its
 * SPIFFE ID, labels from its Pod, as WorkloadPolicies does). Memoized per view and
 * workload; conflicting resources (two at one level) are logged once per view and workload.
 */
export class WorkloadTelemetries {
  private readonly memo = new WeakMap<PolicyView, Map<string, string>>();

  constructor(
    private readonly logger: Logger,
    private readonly rootNamespace: string = ROOT_NAMESPACE,
  ) {}

  jsonFor(view: PolicyView, id: WorkloadIdentity): string {
    const namespace = /\/ns\/([^/]+)\//.exec(id.spiffeId)?.[1] ?? id.namespace;
    const labels = view.podLabels.get(`${namespace}/${id.pod}`) ?? id.labels ?? {};
    const key = `${namespace}\n${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))}`;
    let byWorkload = this.memo.get(view);
    if (!byWorkload) this.memo.set(view, (byWorkload = new Map()));
    let json = byWorkload.get(key);
    if (json === undefined) {
      const r = resolveWorkloadTelemetry(view.telemetries ?? [], { namespace, labels }, this.rootNamespace);
      for (const c of r.conflicts) this.logger.warn('conflicting Telemetry resources', { detail: c });
      json = telemetryToJson(r.telemetry);
      byWorkload.set(key, json);
    }
    return json;
  }
}

/** The telemetry settings as an encoded DiscoveryResponse holding only field 10, appended to shared bytes (see encodePolicySuffix). */
export function encodeTelemetrySuffix(overridesJson: string): Buffer {
  return loadDiscoveryProto().encodeResponse({ telemetry: { overridesJson } } as Parameters<ReturnType<typeof loadDiscoveryProto>['encodeResponse']>[0]);
}
