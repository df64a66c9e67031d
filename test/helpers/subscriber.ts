import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import type { ControlPlane } from '../../control-plane/server.js';
import { DiscoveryClient } from '../../proxy/discovery/discovery-client.js';

/**
 * A started discovery client (the proxy's own, without a proxy behind it) subscribed to `cp`
 * as the pod `pod` of `namespace/serviceAccount` in cluster.local: what the control-plane
 * suites read pushes from (current(), onFirstSnapshot()). Fast reconnects (20-200 ms).
 */
export function subscriber(
  cp: ControlPlane,
  o: { readonly namespace: string; readonly serviceAccount: string; readonly pod: string; readonly labels?: Readonly<Record<string, string>>; readonly logger?: Logger },
): DiscoveryClient {
  const c = new DiscoveryClient({
    address: `127.0.0.1:${cp.grpcPort}`,
    identity: { spiffeId: `spiffe://cluster.local/ns/${o.namespace}/sa/${o.serviceAccount}`, namespace: o.namespace, pod: o.pod, ...(o.labels ? { labels: o.labels } : {}) },
    clock: systemClock, random: seededRandom(1), logger: o.logger ?? silentLogger, backoff: { initialMs: 20, maxMs: 200 },
    apply: () => undefined,
  });
  c.start();
  return c;
}
