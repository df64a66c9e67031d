import type { Clock, Timer } from '../../common/clock.js';
import type { Ejection, EjectionKind } from '../../contract/discovery.js';
import type { ClusterState, EndpointHealth } from '../resilience/cluster-state.js';

/**
 * Builds the proxy's HealthReport (contract/discovery.proto): every endpoint it keeps out
 * of balancing for health reasons (ejected, failing active checks, breaker open), and every
 * endpoint its last `connectFailures` attempts or more could not connect to (refused, timed
 * out) that it has not ejected (yet), read from its clusters' states; it sends it when the
 * list changes. Connect failures are reported before the proxy's own outlier detection
 * acts (5 in a row, Envoy's consecutive_local_origin_failure) because the control plane
 * pools them across proxies (at least 2 distinct reporters, control-plane/health/): a
 * refused connection is the clearest sign of a dead pod, and each reporter needs only a
 * couple of them. The list changes on the failure that crosses the threshold and on the
 * next answer from the endpoint (its clearing). The first change goes out at once; further ones at most every
 * `minIntervalMs` (default 1 s), so a flapping endpoint costs the control plane one
 * message a second per proxy, not one per event. Each report is the complete list, so an
 * endpoint that recovered simply drops out of the next one (its clearing). A list equal to
 * the last one sent is not sent again.
 */
export interface HealthReporterOptions {
  readonly clock: Clock;
  /** Cluster name ("name.namespace:port") -> its state (Proxy.clusterStates()). */
  readonly clusters: () => Record<string, unknown>;
  readonly send: (ejected: readonly Ejection[]) => void;
  readonly minIntervalMs?: number;
  /** Report an endpoint after this many connect failures in a row (default 2; 0: never). */
  readonly connectFailures?: number;
}

const KIND: Partial<Record<EndpointHealth, EjectionKind>> = {
  ejected: 'outlier-ejection',
  'health-check-failed': 'health-check-failed',
  'breaker-open': 'breaker-open',
  'half-open': 'breaker-open',
};

export class HealthReporter {
  private timer: Timer | null = null;
  private lastSentAt = -Infinity;
  /** A new stream starts with nothing reported, so an empty list is not worth a message. */
  private lastKey = '[]';
  /** When each unhealthy endpoint was first seen so (for ejectedForMs). */
  private readonly since = new Map<string, number>();
  private closed = false;

  constructor(private readonly o: HealthReporterOptions) {}

  /** Something may have changed: report now, or at the end of the current interval. */
  changed(): void {
    if (this.closed) return;
    const wait = this.lastSentAt + (this.o.minIntervalMs ?? 1000) - this.o.clock.now();
    if (wait <= 0 && !this.timer) return this.report();
    this.current(); // note when new entries turned unhealthy, for ejectedForMs
    if (this.timer) return;
    this.timer = this.o.clock.setTimeout(() => {
      this.timer = null;
      this.report();
    }, wait);
    this.timer.unref?.();
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** The current list (what the next report would carry). */
  current(): Ejection[] {
    const now = this.o.clock.now();
    const out: Ejection[] = [];
    const seen = new Set<string>();
    for (const [name, raw] of Object.entries(this.o.clusters())) {
      const state = raw as Partial<ClusterState> | undefined;
      if (!Array.isArray(state?.endpoints)) continue; // a cluster without health state
      const colon = name.lastIndexOf(':');
      const service = name.slice(0, colon);
      const servicePort = Number(name.slice(colon + 1));
      const threshold = this.o.connectFailures ?? 2;
      for (const e of state.endpoints as ClusterState['endpoints']) {
        const kind = KIND[e.health] ?? (threshold > 0 && (e.consecutiveConnectFailures ?? 0) >= threshold ? 'connect-failure' : undefined);
        if (!kind) continue;
        const id = `${name}|${e.key}|${kind}`;
        seen.add(id);
        let since = this.since.get(id);
        if (since === undefined) this.since.set(id, (since = now));
        out.push({
          service, servicePort, address: e.address, port: e.port, kind,
          reason: kind === 'outlier-ejection' ? (e.lastEjectionReason ?? '') : '', ejectedForMs: Math.round(now - since),
        });
      }
    }
    for (const id of [...this.since.keys()]) if (!seen.has(id)) this.since.delete(id);
    return out;
  }

  private report(): void {
    const list = this.current();
    const key = JSON.stringify(list.map((e) => [e.service, e.servicePort, e.address, e.port, e.kind, e.reason]));
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.lastSentAt = this.o.clock.now();
    this.o.send(list);
  }
}
