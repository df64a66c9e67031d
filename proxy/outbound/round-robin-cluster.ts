import type { Endpoint, TrafficPolicy } from '../../contract/model.js';
import { endpointKey } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { ClusterHandle } from './cluster-set.js';

/**
 * The minimal cluster: round robin over ready endpoints, no health state. The proxy
 * uses the resilience Cluster (balancers, ejection, breakers) when available; this one
 * keeps the data path independent of it and serves as the benchmark's plain path.
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

  pick(ctx: { exclude?: ReadonlySet<string> }): Endpoint | ProxyError {
    const n = this.ready.length;
    for (let i = 0; i < n; i++) {
      const ep = this.ready[this.next++ % n];
      if (!ctx.exclude?.has(endpointKey(ep))) return ep;
    }
    return new ProxyError('NO_ENDPOINTS', this.name);
  }

  start(_e: Endpoint): () => void {
    return () => undefined;
  }

  snapshot(): unknown {
    return { name: this.name, endpoints: this.all.map((e) => ({ address: endpointKey(e), ready: e.ready, identity: e.identity })) };
  }

  close(): void {}
}
