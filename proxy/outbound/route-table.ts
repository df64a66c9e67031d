import { atOtherAddresses, type Endpoint, type MeshSnapshot, type Service, type ServicePort } from '../../contract/model.js';
import { compilePortRouting, type PortRouting } from '../routing/port-routing.js';

const AUTHORITY_CACHE_SIZE = 1024;

export interface Route {
  readonly service: Service;
  readonly port: ServicePort;
  /**
   * Set when the destination is one endpoint's own address (a pod IP, as headless
   * Services and StatefulSets hand out): the traffic goes to that endpoint only, never
   * balanced over the service (Linkerd and Istio do the same).
   */
  readonly endpoint?: Endpoint;
}

/**
 * Where a connection was going: its original destination (SO_ORIGINAL_DST), or, for an
 * upstream listener (proxy config `upstreams`), the service it is bound to as an
 * authority (`name.namespace:port`), which then decides the route whatever the Host.
 */
export interface Destination {
  readonly address: string;
  readonly port: number;
  readonly upstream?: string;
  /** Set on a connection to a destination outside the mesh that egress control lets through as HTTP (proxy/egress). */
  readonly egress?: boolean;
}

/**
 * Immutable lookup tables built once per snapshot: authority names (as Kubernetes DNS
 * spells them), ClusterIP:port and pod IP:port to a service port. Swapped whole on
 * every config change so lookups on the hot path never see a half-applied update.
 */
export class RouteTable {
  private readonly byName = new Map<string, Service>();
  private readonly byAddr = new Map<string, Route>();
  /** Endpoint addresses (pod IP:port) -> a route pinned to that endpoint. */
  private readonly byEndpoint = new Map<string, Route>();
  private readonly authorityCache = new Map<string, Route | null>();
  /** Per connection destination object (one per accepted socket): requests on it skip building the address key. */
  private readonly dstCache = new WeakMap<Destination, Route | null>();
  /** `name.namespace` -> service: backendRefs and mirrors resolve here. */
  private readonly byKey = new Map<string, Service>();
  /** Service ports with HTTPRoutes / GRPCRoutes, compiled once per table (proxy/routing). */
  private readonly routing = new Map<ServicePort, PortRouting>();
  /** Service ports every endpoint of which its pod declares opaque (Endpoint.opaque): opaqueByEndpoints(). */
  private readonly opaquePorts = new Set<ServicePort>();

  constructor(
    readonly snapshot: MeshSnapshot,
    localNamespace: string,
    clusterDomain = 'cluster.local',
  ) {
    for (const s of snapshot.services) {
      for (const n of [`${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}.svc.${clusterDomain}`])
        this.byName.set(n, s);
      // A bare name resolves in the proxy's own namespace, like the pod's DNS search path.
      if (s.namespace === localNamespace || !this.byName.has(s.name)) this.byName.set(s.name, s);
      for (const p of s.ports) {
        if (p.endpoints.length > 0 && p.endpoints.every((e) => e.opaque === true)) this.opaquePorts.add(p);
        for (const ip of s.clusterIPs) this.byAddr.set(addrKey(ip, p.port), { service: s, port: p });
        for (const e of p.endpoints) {
          const key = addrKey(e.address, e.port);
          // A pod behind two services on one port (a headless one for its pod DNS names and
          // a ClusterIP one for balancing, the StatefulSet pattern) is pinned through the
          // headless one, which is the one whose DNS hands out pod IPs.
          const old = this.byEndpoint.get(key);
          if (!old || (old.service.clusterIPs.length > 0 && s.clusterIPs.length === 0)) this.byEndpoint.set(key, Object.freeze({ service: s, port: p, endpoint: e }));
          // A dual-stack pod's address of the other family (contract/model.ts): the app dialled it,
          // so that pod at that address, as the same endpoint otherwise (identity, proxy port).
          for (const alt of atOtherAddresses(e)) {
            const k = addrKey(alt.address, alt.port);
            const o = this.byEndpoint.get(k);
            if (!o || (o.service.clusterIPs.length > 0 && s.clusterIPs.length === 0)) this.byEndpoint.set(k, Object.freeze({ service: s, port: p, endpoint: alt }));
          }
        }
      }
    }
    for (const s of snapshot.services) this.byKey.set(`${s.name}.${s.namespace}`, s);
    const lookup = (name: string, namespace: string): Service | undefined => this.byKey.get(`${name}.${namespace}`);
    for (const s of snapshot.services) {
      if (!s.routes || s.routes.length === 0) continue;
      for (const p of s.ports) {
        const pr = compilePortRouting(s, p, lookup);
        if (pr) this.routing.set(p, pr);
      }
    }
  }

  /**
   * Whether a connection to this route is opaque TCP by its destination pods' own declaration
   * (wren.io/opaque-ports, pushed as Endpoint.opaque): the endpoint's, when the route is pinned
   * to one (its pod IP:port); for a service port, when every endpoint is (a port some pods
   * serve HTTP on stays detected: taking their HTTP as bytes would lose routing and retries,
   * while the opaque pods' inbound splices whatever comes). Linkerd's destination service
   * likewise hints a pod's opaque ports with its endpoints.
   */
  opaqueByEndpoints(route: Route): boolean {
    return route.endpoint !== undefined ? route.endpoint.opaque === true : this.opaquePorts.has(route.port);
  }

  /** The compiled routes of a service port (routing/port-routing.ts); undefined: it routes by authority alone. */
  routingOf(port: ServicePort): PortRouting | undefined {
    return this.routing.size === 0 ? undefined : this.routing.get(port);
  }

  /** A service by name and namespace. */
  service(name: string, namespace: string): Service | undefined {
    return this.byKey.get(`${name}.${namespace}`);
  }

  /** `web`, `web:8080`, `web.ns`, `web.ns.svc.cluster.local:80`; default port 80. */
  byAuthority(authority: string): Route | undefined {
    // Memoised per table (the table is immutable): the same few authorities come back on
    // every request. Bounded, since authorities come from clients.
    const hit = this.authorityCache.get(authority);
    if (hit !== undefined) return hit ?? undefined;
    const route = this.resolveAuthority(authority);
    if (this.authorityCache.size < AUTHORITY_CACHE_SIZE) this.authorityCache.set(authority, route ?? null);
    return route;
  }

  private resolveAuthority(authority: string): Route | undefined {
    const { host, port } = splitAuthority(authority);
    const svc = this.byName.get(host.toLowerCase().replace(/\.$/, ''));
    if (svc) {
      const p = port === null ? (svc.ports.length === 1 ? svc.ports[0] : svc.ports.find((x) => x.port === 80)) : svc.ports.find((x) => x.port === port);
      return p ? { service: svc, port: p } : undefined;
    }
    return port === null ? undefined : this.byAddress(host, port);
  }

  /** A ClusterIP:port (the service port, balanced) or an endpoint's IP:port (pinned to it). */
  byAddress(address: string, port: number): Route | undefined {
    const key = addrKey(address, port);
    return this.byAddr.get(key) ?? this.byEndpoint.get(key);
  }

  /**
   * The route of an HTTP request. The connection's destination decides first when it is
   * specific: an endpoint's own address (a pod IP: that pod, whatever the Host says, as
   * Linkerd and Istio route by the original destination) or an upstream listener's
   * service. Otherwise the authority names the service, and the destination's
   * ClusterIP:port is the fallback.
   */
  forRequest(authority: string, dst: Destination | undefined): Route | undefined {
    const byDst = dst ? this.byDestination(dst) : undefined;
    if (byDst?.endpoint || dst?.upstream !== undefined) return byDst;
    return this.byAuthority(authority) ?? byDst;
  }

  /** The route a connection's destination names: its upstream service, else its address. */
  byDestination(dst: Destination): Route | undefined {
    const hit = this.dstCache.get(dst);
    if (hit !== undefined) return hit ?? undefined;
    const route = dst.upstream !== undefined ? this.byAuthority(dst.upstream) : this.byAddress(dst.address, dst.port);
    this.dstCache.set(dst, route ?? null);
    return route;
  }
}

const addrKey = (ip: string, port: number): string => `${ip.startsWith('::ffff:') ? ip.slice(7) : ip}|${port}`;

export function splitAuthority(authority: string): { host: string; port: number | null } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: null };
  return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : null };
}
