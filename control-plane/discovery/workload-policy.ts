import { ROOT_NAMESPACE } from '../../contract/defaults.js';
import { inboundPolicyToJson, loadDiscoveryProto, type WorkloadIdentity } from '../../contract/discovery.js';
import type { PolicyView } from '../store/mesh-store.js';
import { resolveInboundPolicy } from '../translate/inbound-policy.js';

/**
 * Each subscriber's inbound policy as wire JSON, resolved from the store's PolicyView
 * for the subscriber's workload: its namespace (from its SPIFFE ID, else the one it
 * declared) and its labels (the Pod's when the source knows the Pod, else those sent in
 * Subscribe). Memoized per view and (namespace, labels), so a push to 1000 replicas of
 * one Deployment resolves once.
 */
export class WorkloadPolicies {
  private readonly memo = new WeakMap<PolicyView, Map<string, string>>();

  constructor(private readonly rootNamespace: string = ROOT_NAMESPACE) {}

  jsonFor(view: PolicyView, id: WorkloadIdentity): string {
    const namespace = /\/ns\/([^/]+)\//.exec(id.spiffeId)?.[1] ?? id.namespace;
    const labels = view.podLabels.get(`${namespace}/${id.pod}`) ?? id.labels ?? {};
    const key = `${namespace}\n${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))}`;
    let byWorkload = this.memo.get(view);
    if (!byWorkload) this.memo.set(view, (byWorkload = new Map()));
    let json = byWorkload.get(key);
    if (json === undefined) {
      json = inboundPolicyToJson(resolveInboundPolicy(view, { namespace, labels }, this.rootNamespace));
      byWorkload.set(key, json);
    }
    return json;
  }

  /**
   * The subscriber's pod's target ports its Services declare opaque (PolicyView.podOpaquePorts,
   * translate/opaque-ports.ts), sent beside its policy; none when the source does not know the pod.
   */
  opaquePortsFor(view: PolicyView, id: WorkloadIdentity): readonly number[] {
    const namespace = /\/ns\/([^/]+)\//.exec(id.spiffeId)?.[1] ?? id.namespace;
    return view.podOpaquePorts?.get(`${namespace}/${id.pod}`) ?? NO_PORTS;
  }
}

const NO_PORTS: readonly number[] = Object.freeze([]);

/**
 * The inbound policy (with the opaque ports beside it) as an encoded DiscoveryResponse holding only field 8. Appended to a
 * response's shared bytes it sets that field: a protobuf parser merges concatenated
 * messages, a later singular field winning (protobuf encoding guide, "Last One Wins";
 * here the shared part never sets field 8). So the per-subscriber policy rides on the
 * very bytes every subscriber shares, without re-encoding the services.
 */
export function encodePolicySuffix(policyJson: string, opaquePorts: readonly number[]): Buffer {
  return loadDiscoveryProto().encodeResponse({ inboundPolicy: { policyJson, opaquePorts: [...opaquePorts] } } as Parameters<ReturnType<typeof loadDiscoveryProto>['encodeResponse']>[0]);
}
