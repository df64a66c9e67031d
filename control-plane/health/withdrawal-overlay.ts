import type { Service } from '../../contract/model.js';
import type { MeshStore } from '../store/mesh-store.js';
import type { EndpointWithdrawal } from './endpoint-withdrawal.js';

/**
 * Puts the withdrawal decisions into what proxies are sent. The source writes the mesh as
 * it is (Kubernetes, files) into `source`; the discovery server serves `served`, which is
 * `source` with every withdrawn endpoint marked not ready. Not ready, rather than removed:
 * the proxies keep the endpoint and its outlier / breaker state (so they go on reporting
 * it, and the reports can clear), balance nothing to it, and pod-IP (pinned) traffic still
 * reaches it, as for a pod Kubernetes marks unready. A served commit happens only for
 * services whose source or withdrawn set changed, so versions and deltas stay minimal.
 */
export function overlayWithdrawals(source: MeshStore, served: MeshStore, withdrawal: EndpointWithdrawal): () => void {
  const effective = (s: Service, key: string): Service => {
    const out = withdrawal.withdrawnIn(key);
    if (out.size === 0) return s;
    return Object.freeze({
      ...s,
      ports: Object.freeze(
        s.ports.map((p) =>
          p.endpoints.some((e) => e.ready && out.has(`${p.port}|${e.address}:${e.port}`))
            ? Object.freeze({ ...p, endpoints: Object.freeze(p.endpoints.map((e) => (e.ready && out.has(`${p.port}|${e.address}:${e.port}`) ? Object.freeze({ ...e, ready: false }) : e))) })
            : p,
        ),
      ),
    });
  };
  const sync = (keys: readonly string[] | null): void => {
    const view = source.view;
    const upserts: Service[] = [];
    const removes: string[] = [];
    for (const key of keys ?? view.services.keys()) {
      const s = view.services.get(key);
      if (s) upserts.push(effective(s, key));
      else removes.push(key);
    }
    if (keys === null) served.replaceAll(upserts, view.policy, view.routes);
    else served.apply(upserts, removes, view.policy, view.routes);
  };
  let synced = false;
  const offSource = source.onChange((view, changed) => {
    withdrawal.setSource(view.services, synced ? changed : null);
    // The first notification is the source's initial sync (markReady): copy everything.
    sync(synced ? changed : null);
    if (!synced) {
      synced = true;
      served.markReady();
    }
  });
  const offWithdrawal = withdrawal.onChange((services) => {
    if (synced) sync(services);
  });
  return () => {
    offSource();
    offWithdrawal();
  };
}
