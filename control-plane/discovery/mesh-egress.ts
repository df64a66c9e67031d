import { egressToJson, type EgressMode } from '../../contract/egress.js';
import { loadDiscoveryProto } from '../../contract/discovery.js';
import type { PolicyView } from '../store/mesh-store.js';

/**
 * The egress settings every subscriber gets (discovery `egress.egress_json`): the mesh-wide
 * mode (`wren control-plane --egress-mode`, Istio's meshConfig.outboundTrafficPolicy.mode;
 * undefined: not set, the proxies' own config or ALLOW_ANY) and every ExternalService in the
 * view (like a ServiceEntry with the default exportTo "*", each applies to the whole mesh).
 * The same for all subscribers, so memoized per view.
 */
export class MeshEgress {
  private readonly memo = new WeakMap<PolicyView, string>();

  constructor(private readonly mode: EgressMode | undefined) {}

  jsonFor(view: PolicyView): string {
    let json = this.memo.get(view);
    if (json === undefined) {
      const externalServices = [...(view.externalServices ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      json = egressToJson({ mode: this.mode, externalServices });
      this.memo.set(view, json);
    }
    return json;
  }
}

/** The egress settings as an encoded DiscoveryResponse holding only field 11, appended to shared bytes (see encodePolicySuffix). */
export function encodeEgressSuffix(egressJson: string): Buffer {
  return loadDiscoveryProto().encodeResponse({ egress: { egressJson } } as Parameters<ReturnType<typeof loadDiscoveryProto>['encodeResponse']>[0]);
}
