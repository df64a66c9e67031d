import type { Endpoint, TrafficPolicy } from '../../contract/model.js';
import { endpointKey, keyOfEndpoint } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { PickContext } from '../balance/balancer.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import type { ClusterHandle } from './cluster-set.js';

const FREE: Admission = Object.freeze({ release: () => undefined });

/**
 * The minimal cluster: round robin over ready endpoints, no health state, no limits, no
 * retry budget and no backoff. The proxy uses the resilience Cluster by default; this
 * one keeps the data path testable without it and is the benchmark's plain path.
 */
export class RoundRobinCluster implements ClusterHandle {
  private ready: readonly Endpoint[] = [];
  private all: readonly Endpoint[] = [];
  private next = 0;

  constructor(readonly name: string) {}

  update(endpoints: readonly Endpoint[]): void {
    this.all = endpoints;
    this.ready = endpoints.filter((e) => e.ready);
  }

  updatePolicy(_policy: TrafficPolicy): void {}

  admit(_kind: 'request' | 'tunnel' | 'retry'): Admission {
    return FREE;
  }

  admitConnection(_kind: 'connections' | 'pending'): Admission {
    return FREE;
  }

  pick(ctx: PickContext): Endpoint | ProxyError {
    const n = this.ready.length;
    for (let i = 0; i < n; i++) {
      const ep = this.ready[this.next++ % n];
      if (!ctx.exclude?.has(keyOfEndpoint(ep))) return ep;
    }
    // Every endpoint tried already: reuse one rather than fail (same as Cluster.pick).
    if (n > 0) return this.ready[this.next++ % n];
    return new ProxyError('NO_ENDPOINTS', this.name);
  }

  pinned(endpoint: Endpoint): Endpoint | ProxyError {
    const key = endpointKey(endpoint);
    return this.all.find((e) => endpointKey(e) === key) ?? new ProxyError('NO_ENDPOINTS', `${key} is not an endpoint of ${this.name}`);
  }

  start(_e: Endpoint): () => void {
    return () => undefined;
  }

  backoff(_retry: number): number {
    return 0;
  }

  snapshot(): unknown {
    return { name: this.name, endpoints: this.all.map((e) => ({ address: endpointKey(e), ready: e.ready, identity: e.identity })) };
  }

  close(): void {}
}
