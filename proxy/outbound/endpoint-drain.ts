import { atOtherAddresses, type Endpoint, type Service } from '../../contract/model.js';
import type { H1Pool } from '../http/h1-pool.js';
import type { PeerPool } from './peer-pool.js';
import type { MeshPools } from './forward-to-endpoint.js';

/** The outbound pools that keep connections to cluster endpoints. */
export interface EndpointPools {
  /** HTTP/1.1 to unmeshed endpoints (the outbound agent's pool). */
  readonly h1: H1Pool;
  /** HTTP/2 sessions: to peer sidecars (mTLS) and to unmeshed endpoints (h2c). */
  readonly peers: PeerPool;
  /** HTTP/1.1 (and multiplexed HTTP/2) to peer sidecars, when configured. */
  readonly mesh: MeshPools;
}

/**
 * What the pools share connections by: a peer sidecar (address, inbound port, identity)
 * for a meshed endpoint, whatever its app port (every cluster with an endpoint behind that
 * sidecar uses the same session or connections); the app's address and port otherwise.
 */
function connectionKey(ep: Endpoint): string {
  return ep.proxyPort === null ? `app|${ep.address}|${ep.port}` : `peer|${ep.address}|${ep.proxyPort}|${ep.identity}`;
}

/**
 * Drains the pooled connections to endpoints that have left every cluster, after each
 * applied snapshot: Envoy does the same for a host removed from discovery (its connection
 * pools drain: idle connections close at once, busy ones when their request ends). Pools
 * are shared across clusters (keyed by connectionKey), so an endpoint that left one cluster
 * but is still another's keeps its connections. Without this, an idle keep-alive connection
 * to an app replaced in a rolling update held a cluster maxConnections slot until its
 * keep-alive ran out (up to 10 minutes), and sessions to a removed peer stayed open for good.
 */
export class EndpointDrain {
  private known = new Map<string, Endpoint>();

  constructor(private readonly pools: EndpointPools) {}

  /** The clusters now have these services' endpoints: drain the connections to those that are gone. */
  applied(services: readonly Service[]): void {
    const next = new Map<string, Endpoint>();
    for (const s of services)
      for (const p of s.ports)
        for (const ep of p.endpoints) {
          next.set(connectionKey(ep), ep);
          // A dual-stack pod's other address (pinned traffic dials it): drained with its pod.
          for (const alt of atOtherAddresses(ep)) next.set(connectionKey(alt), alt);
        }
    for (const [key, ep] of this.known) if (!next.has(key)) this.drain(ep);
    this.known = next;
  }

  private drain(ep: Endpoint): void {
    const { h1, peers, mesh } = this.pools;
    peers.drain(ep);
    if (ep.proxyPort === null) return h1.drain(ep.address, ep.port);
    mesh.h1?.drain(ep.address, ep.proxyPort, ep.identity);
    mesh.h2?.drain(ep.address, ep.proxyPort, ep.identity);
  }
}
