import { portPolicy, type Endpoint, type Service, type ServicePort, type TrafficPolicy } from '../../contract/model.js';
import type { ProxyError } from '../errors/proxy-error.js';
import type { PickContext } from '../balance/balancer.js';
import type { Outcome } from '../resilience/classify.js';
import type { Admission } from '../resilience/concurrency-limits.js';

/**
 * The per-service-port balancing unit (Envoy's "cluster") as the data path sees it. This
 * is the surface of the resilience `Cluster` (proxy/resilience/cluster.ts), which the
 * proxy uses by default; `RoundRobinCluster` is the minimal implementation (no limits,
 * no health state) kept as the benchmark's plain path.
 */
export interface ClusterHandle {
  readonly name: string;
  update(endpoints: readonly Endpoint[]): void;
  updatePolicy(policy: TrafficPolicy): void;
  /** 'request': once per downstream request; 'tunnel': once per opaque TCP connection (a connection slot); both pay into the retry budget; 'retry': once per retry (budget + max retries). */
  admit(kind: 'request' | 'tunnel' | 'retry'): Admission | ProxyError;
  /**
   * Connection-pool admission (docs/resilience.md, "Connection limits"): 'connections'
   * (Envoy max_connections) is held while a connection opened for this cluster is open (a
   * peer HTTP/2 session, an opaque TCP connection, an HTTP/1.1 connection to an unmeshed
   * endpoint); 'pending' (max_pending_requests) while a request waits for a peer session
   * to be established or for a busy HTTP/1.1 connection to be free.
   */
  admitConnection(kind: 'connections' | 'pending'): Admission | ProxyError;
  pick(ctx: PickContext): Endpoint | ProxyError;
  /**
   * The cluster's current entry for an endpoint the client addressed directly (a pod IP):
   * no balancing, and eligibility (ejection, breaker, health) does not turn it away;
   * NO_ENDPOINTS once it has left the cluster.
   */
  pinned(endpoint: Endpoint): Endpoint | ProxyError;
  /** Starts an attempt on an endpoint; the returned function records its outcome exactly once. */
  start(endpoint: Endpoint): (outcome: Outcome, latencyMs: number) => void;
  /** Delay before retry number `retry` (1-based). */
  backoff(retry: number): number;
  snapshot(): unknown;
  /** Another listener worker ejected or unejected `endpoint` (an endpointKey) for the sidecar (resilience Cluster only). */
  outlierChanged?(endpoint: string): void;
  close(): void;
}

export type ClusterFactory = (name: string, policy: TrafficPolicy) => ClusterHandle;

export const clusterName = (s: Service, p: ServicePort): string => `${s.name}.${s.namespace}:${p.port}`;

/**
 * All clusters of the current config. Applying a snapshot updates clusters in place
 * (keeping per-endpoint state such as latency estimates and ejections for endpoints
 * that remain), creates new ones and closes those that are gone.
 */
export class ClusterSet {
  private clusters = new Map<string, ClusterHandle>();
  /**
   * The same clusters by the applied ServicePort objects, which the routes of the same
   * snapshot carry: get() then builds and hashes no name per request (admission and
   * pick-endpoint ask for every request; the name's concatenation and hash showed in the
   * outbound's profile). A port object from elsewhere falls back to the name.
   */
  private byPort = new Map<ServicePort, ClusterHandle>();

  constructor(private readonly factory: ClusterFactory) {}

  apply(services: readonly Service[]): void {
    const next = new Map<string, ClusterHandle>();
    const byPort = new Map<ServicePort, ClusterHandle>();
    for (const s of services)
      for (const p of s.ports) {
        const name = clusterName(s, p);
        // Each port is its own cluster with its own policy (a TrafficPolicy naming the port).
        const policy = portPolicy(s, p);
        let c = this.clusters.get(name);
        if (c) c.updatePolicy(policy);
        else c = this.factory(name, policy);
        c.update(p.endpoints);
        next.set(name, c);
        byPort.set(p, c);
      }
    for (const [name, c] of this.clusters) if (!next.has(name)) c.close();
    this.clusters = next;
    this.byPort = byPort;
  }

  get(s: Service, p: ServicePort): ClusterHandle | undefined {
    return this.byPort.get(p) ?? this.clusters.get(clusterName(s, p));
  }

  byName(name: string): ClusterHandle | undefined {
    return this.clusters.get(name);
  }

  entries(): IterableIterator<[string, ClusterHandle]> {
    return this.clusters.entries();
  }

  close(): void {
    for (const c of this.clusters.values()) c.close();
    this.clusters.clear();
    this.byPort.clear();
  }
}
