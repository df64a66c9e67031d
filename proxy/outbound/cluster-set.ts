import type { Endpoint, Service, ServicePort, TrafficPolicy } from '../../contract/model.js';
import type { ProxyError } from '../errors/proxy-error.js';

/** What a request's result looks like to the balancing/health machinery. */
export type Attempt = { readonly type: 'response'; readonly status: number; readonly grpcStatus?: number } | { readonly type: 'error'; readonly error: ProxyError };

/** The per-service-port balancing unit (Envoy's "cluster"). */
export interface ClusterHandle {
  update(endpoints: readonly Endpoint[]): void;
  updatePolicy(policy: TrafficPolicy): void;
  pick(ctx: { hashKey?: string; exclude?: ReadonlySet<string> }): Endpoint | ProxyError;
  /** Starts a request on an endpoint; the returned function records its result exactly once. */
  start(endpoint: Endpoint): (attempt: Attempt, latencyMs: number) => void;
  snapshot(): unknown;
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

  constructor(private readonly factory: ClusterFactory) {}

  apply(services: readonly Service[]): void {
    const next = new Map<string, ClusterHandle>();
    for (const s of services)
      for (const p of s.ports) {
        const name = clusterName(s, p);
        let c = this.clusters.get(name);
        if (c) c.updatePolicy(s.policy);
        else c = this.factory(name, s.policy);
        c.update(p.endpoints);
        next.set(name, c);
      }
    for (const [name, c] of this.clusters) if (!next.has(name)) c.close();
    this.clusters = next;
  }

  get(s: Service, p: ServicePort): ClusterHandle | undefined {
    return this.clusters.get(clusterName(s, p));
  }

  entries(): IterableIterator<[string, ClusterHandle]> {
    return this.clusters.entries();
  }

  close(): void {
    for (const c of this.clusters.values()) c.close();
    this.clusters.clear();
  }
}
