import { BlockList, isIP } from 'node:net';
import type { EgressMode, EgressSettings, ExternalPort, ExternalService } from '../../contract/egress.js';

/**
 * A declared destination, as the metrics and the access log name traffic to it: Istio labels
 * ServiceEntry traffic with the entry's host (destination_service and
 * destination_service_name) and namespace (destination_service_namespace), its Envoy cluster
 * being `outbound|PORT||HOST`; only traffic that matches no entry is PassthroughCluster (or
 * BlackHoleCluster when refused). The host is the one declared (a wildcard as written, as
 * Istio labels a `*.example.com` entry), never the name the request carried, so the label
 * values are the declarations' and not the app's to multiply. Made once per declared
 * (host, port) when the policy is compiled: a request allocates none.
 */
export interface ExternalDestination {
  readonly service: ExternalService;
  /** The declared host that matched (TCP, matched by address: the entry's first host). */
  readonly host: string;
  /** The namespace of the ExternalService's `namespace/name`; '' when its name has none (declared in the proxy's config). */
  readonly namespace: string;
  /** Istio's cluster name for it: `outbound|PORT||HOST` (the access log's upstream_cluster). */
  readonly cluster: string;
}

/** An HTTP port of an ExternalService that a request matched. */
export interface HttpEgressMatch extends ExternalDestination {
  readonly port: ExternalPort;
}

function destination(service: ExternalService, port: ExternalPort, host: string): HttpEgressMatch {
  const slash = service.name.indexOf('/');
  return Object.freeze({ service, port, host, namespace: slash < 0 ? '' : service.name.slice(0, slash), cluster: `outbound|${port.number}||${host}` });
}

interface HostTable {
  readonly exact: Map<string, HttpEgressMatch>;
  /** `.example.com` suffixes of `*.example.com` hosts, longest first (the most specific wins). */
  readonly wildcards: { readonly suffix: string; readonly match: HttpEgressMatch }[];
}

const newTable = (): HostTable => ({ exact: new Map(), wildcards: [] });

function addHost(t: HostTable, host: string, m: HttpEgressMatch): void {
  if (host.startsWith('*.')) t.wildcards.push({ suffix: host.slice(1), match: m });
  else if (!t.exact.has(host)) t.exact.set(host, m);
}

function lookup(t: HostTable | undefined, host: string): HttpEgressMatch | undefined {
  if (!t) return undefined;
  const hit = t.exact.get(host);
  if (hit) return hit;
  for (const w of t.wildcards) if (host.endsWith(w.suffix) && host.length > w.suffix.length) return w.match;
  return undefined;
}

/**
 * The egress decision tables, compiled once per config change (the proxy's own `egress`
 * block over what the control plane pushed): the mode, and per port the hosts of HTTP
 * ports (matched against Host / :authority), of HTTPS and TLS ports (against the SNI)
 * and the address blocks of every port (the destination IP; how TCP is matched).
 * Immutable; swapped whole like the route table.
 */
export class EgressPolicy {
  readonly mode: EgressMode;
  readonly services: readonly ExternalService[];
  /** Where the mode came from: the proxy's config, the control plane, or the default. */
  readonly modeSource: 'config' | 'control-plane' | 'default';
  private readonly http = new Map<number, HostTable>();
  private readonly tls = new Map<number, HostTable>();
  private readonly addresses = new Map<number, { readonly dest: ExternalDestination; readonly blocks: BlockList }[]>();

  constructor(local: EgressSettings, pushed: EgressSettings | undefined) {
    this.mode = local.mode ?? pushed?.mode ?? 'ALLOW_ANY';
    this.modeSource = local.mode !== undefined ? 'config' : pushed?.mode !== undefined ? 'control-plane' : 'default';
    this.services = Object.freeze([...local.externalServices, ...(pushed?.externalServices ?? [])]);
    for (const s of this.services) {
      const blocks = s.addresses.length ? blockList(s.addresses) : null;
      for (const p of s.ports) {
        if (p.protocol === 'HTTP' || p.protocol === 'HTTPS' || p.protocol === 'TLS') {
          const byPort = p.protocol === 'HTTP' ? this.http : this.tls;
          let t = byPort.get(p.number);
          if (!t) byPort.set(p.number, (t = newTable()));
          for (const h of s.hosts) addHost(t, h, destination(s, p, h));
        }
        if (blocks) {
          let l = this.addresses.get(p.number);
          if (!l) this.addresses.set(p.number, (l = []));
          // An address carries no name: the entry's first host names it, as Istio's cluster for a TCP ServiceEntry port.
          l.push({ dest: destination(s, p, s.hosts[0]), blocks });
        }
      }
    }
    for (const t of [...this.http.values(), ...this.tls.values()]) t.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /**
   * Whether a connection to an unknown destination on this port must be looked into
   * (protocol detection, then Host or SNI) before it is let through: always in
   * REGISTRY_ONLY (only what is declared passes); in ALLOW_ANY only on a declared HTTP
   * port, whose requests go through the sidecar (TLS origination) instead of being spliced.
   */
  inspects(port: number): boolean {
    return this.mode === 'REGISTRY_ONLY' || this.http.has(port);
  }

  /** The HTTP port an ExternalService declares for this host on this port. */
  httpTarget(host: string, port: number): HttpEgressMatch | undefined {
    return lookup(this.http.get(port), host);
  }

  /**
   * The ExternalService host whose HTTPS or TLS port on `port` declares the SNI's host.
   * One trailing dot is dropped first, as from a Host (egress-http.ts, route-table.ts):
   * RFC 6066 section 3 spells a HostName without it, but clients send what the app gave
   * them (node's tls.connect and OpenSSL pass `example.com.` through as it is), and the
   * fully qualified name is the same host, so it matches the same declaration.
   */
  bySni(sni: string, port: number): ExternalDestination | undefined {
    return lookup(this.tls.get(port), withoutTrailingDot(sni.toLowerCase()));
  }

  /** The ExternalService whose addresses hold the destination IP and that declares the port. */
  byAddress(address: string, port: number): ExternalDestination | undefined {
    const l = this.addresses.get(port);
    if (!l) return undefined;
    const ip = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    for (const e of l) if (e.blocks.check(ip, family)) return e.dest;
    return undefined;
  }

  /** For /config_dump. */
  toJSON(): unknown {
    return { mode: this.mode, modeSource: this.modeSource, externalServices: this.services };
  }
}

/** `example.com.` -> `example.com`: one dot, as the Host's is dropped; `example.com..` keeps one and matches nothing. */
function withoutTrailingDot(host: string): string {
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

function blockList(addresses: readonly string[]): BlockList {
  const b = new BlockList();
  for (const a of addresses) {
    const [ip, bits] = a.split('/');
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) b.addAddress(ip, family);
    else b.addSubnet(ip, Number(bits), family);
  }
  return b;
}
