import type { MeshSnapshot, Service, ServicePort } from '../../contract/model.js';

const AUTHORITY_CACHE_SIZE = 1024;

export interface Route {
  readonly service: Service;
  readonly port: ServicePort;
}

/**
 * Immutable lookup tables built once per snapshot: authority names (as Kubernetes DNS
 * spells them), ClusterIP:port and pod IP:port to a service port. Swapped whole on
 * every config change so lookups on the hot path never see a half-applied update.
 */
export class RouteTable {
  private readonly byName = new Map<string, Service>();
  private readonly byAddr = new Map<string, Route>();
  private readonly authorityCache = new Map<string, Route | null>();

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
        for (const ip of s.clusterIPs) this.byAddr.set(addrKey(ip, p.port), { service: s, port: p });
        for (const e of p.endpoints) this.byAddr.set(addrKey(e.address, e.port), { service: s, port: p });
      }
    }
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

  byAddress(address: string, port: number): Route | undefined {
    return this.byAddr.get(addrKey(address, port));
  }
}

const addrKey = (ip: string, port: number): string => `${ip.replace(/^::ffff:/, '')}|${port}`;

export function splitAuthority(authority: string): { host: string; port: number | null } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: null };
  return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : null };
}
