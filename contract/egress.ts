import { isIP } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { arr, fail, literal, map, num, obj, optional, str, type Parser } from '../common/schema.js';

/**
 * Egress control (docs/traffic-management.md, Egress): what a sidecar does with outbound
 * traffic to a destination the mesh does not know. Istio's `outboundTrafficPolicy.mode`:
 * ALLOW_ANY (the default) passes it through as before, REGISTRY_ONLY refuses it unless an
 * ExternalService (Istio's ServiceEntry with `location: MESH_EXTERNAL`, Linkerd's
 * EgressNetwork) declares the host (HTTP: Host / :authority; TLS: the ClientHello's SNI)
 * or the address (TCP) and the port.
 */
export type EgressMode = 'ALLOW_ANY' | 'REGISTRY_ONLY';
export const EGRESS_MODES: readonly EgressMode[] = ['ALLOW_ANY', 'REGISTRY_ONLY'];

/** HTTP: matched by Host per request; HTTPS and TLS: by the SNI of the ClientHello; TCP: by destination address only. */
export type ExternalProtocol = 'HTTP' | 'HTTPS' | 'TLS' | 'TCP';

/**
 * TLS origination on an HTTP port (Istio DestinationRule `tls.mode: SIMPLE` for a
 * ServiceEntry host): the app speaks plain HTTP, the sidecar connects with TLS to `port`
 * on the same address and verifies the server's certificate for `sni`.
 */
export interface ExternalTls {
  readonly mode: 'SIMPLE';
  /** The SNI sent and the name the certificate must carry; '' = the request's host. */
  readonly sni: string;
  /** PEM roots that verify the server; '' = the system roots (Node's bundled Mozilla store). */
  readonly caCertificates: string;
  /** The TLS port the sidecar connects to (default 443). */
  readonly port: number;
}

export interface ExternalPort {
  readonly number: number;
  readonly protocol: ExternalProtocol;
  readonly name: string;
  /** HTTP ports only; absent: plain HTTP to the original destination. */
  readonly tls?: ExternalTls;
}

export interface ExternalService {
  /** `namespace/name` of the resource it came from (logs, /config_dump). */
  readonly name: string;
  /** DNS names, lower case; `*.example.com` matches every name under example.com (not example.com itself). */
  readonly hosts: readonly string[];
  /** IPs and CIDRs; TCP ports are matched by these. */
  readonly addresses: readonly string[];
  readonly ports: readonly ExternalPort[];
}

/** What a proxy has for egress: the mode (undefined: not set at this layer) and the declared external services. */
export interface EgressSettings {
  readonly mode: EgressMode | undefined;
  readonly externalServices: readonly ExternalService[];
}

export const NO_EGRESS: EgressSettings = Object.freeze({ mode: undefined, externalServices: Object.freeze([]) });

const HOST = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const host: Parser<string> = (raw, path) => {
  const h = str()(raw, path);
  if (h.length > 253 || !HOST.test(h)) fail(path, `expected a lower-case DNS name or a wildcard *.domain, got ${JSON.stringify(h)}`);
  return h;
};

const address: Parser<string> = (raw, path) => {
  const a = str()(raw, path);
  const [ip, bits, extra] = a.split('/');
  const family = isIP(ip);
  const max = family === 4 ? 32 : 128;
  if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max)))
    fail(path, `expected an IP address or a CIDR (10.0.0.0/8, 2001:db8::/32), got ${JSON.stringify(a)}`);
  return a;
};

const pem: Parser<string> = (raw, path) => {
  const p = str()(raw, path);
  try {
    new X509Certificate(p);
  } catch (e) {
    fail(path, `expected PEM certificates: ${(e as Error).message}`);
  }
  return p;
};

const tls = obj({
  mode: literal(['SIMPLE'] as const),
  sni: optional(host),
  caCertificates: optional(pem),
  port: num({ int: true, min: 1, max: 65535, default: 443 }),
});

const externalPort: Parser<ExternalPort> = map(
  obj({
    number: num({ int: true, min: 1, max: 65535 }),
    protocol: literal(['HTTP', 'HTTPS', 'TLS', 'TCP'] as const),
    name: str({ default: '' }),
    tls: optional(tls),
  }),
  (p, path) => {
    if (p.tls && p.protocol !== 'HTTP') fail(`${path}.tls`, `TLS origination needs protocol HTTP (the app speaks plain HTTP), got ${p.protocol}`);
    if (p.tls?.sni?.startsWith('*')) fail(`${path}.tls.sni`, 'a wildcard is not a server name');
    const base = { number: p.number, protocol: p.protocol, name: p.name };
    if (!p.tls) return Object.freeze(base);
    return Object.freeze({ ...base, tls: Object.freeze({ mode: p.tls.mode, sni: p.tls.sni ?? '', caCertificates: p.tls.caCertificates ?? '', port: p.tls.port }) });
  },
);

/** The fields of an ExternalService's `spec` (the CRD's schema, manifests/crds/externalservice.yaml). */
export const externalServiceSpec = map(
  obj({
    hosts: arr(host, { min: 1 }),
    addresses: arr(address, { default: [] }),
    ports: arr(externalPort, { min: 1 }),
  }),
  (s, path) => {
    const seen = new Set<number>();
    s.ports.forEach((p, i) => {
      if (seen.has(p.number)) fail(`${path ? `${path}.` : ''}ports[${i}].number`, `port ${p.number} is declared twice`);
      seen.add(p.number);
    });
    const tcp = s.ports.findIndex((p) => p.protocol === 'TCP');
    if (tcp >= 0 && s.addresses.length === 0)
      fail(`${path ? `${path}.` : ''}addresses`, `required with a TCP port (ports[${tcp}]): TCP carries no host name, only the destination address is matched`);
    return s;
  },
);

/** One ExternalService in the proxy config's and the discovery stream's spelling: its name and the spec fields. */
export const parseExternalService: Parser<ExternalService> = (raw, path) => {
  const o = (raw ?? {}) as Record<string, unknown>;
  const name = str({ pattern: /^[a-z0-9][-a-z0-9.]*\/[a-z0-9][-a-z0-9.]*$|^[a-z0-9][-a-z0-9.]*$/ })(o.name, path ? `${path}.name` : 'name');
  const { name: _n, ...spec } = o;
  const s = externalServiceSpec(spec, path);
  return Object.freeze({ name, hosts: s.hosts, addresses: s.addresses, ports: s.ports });
};

/** The proxy config's `egress` block and the pushed JSON (discovery `egress.egress_json`). */
export const parseEgressSettings: Parser<EgressSettings> = map(
  obj({ mode: optional(literal(EGRESS_MODES)), externalServices: arr(parseExternalService, { default: [] }) }),
  (e) => Object.freeze({ mode: e.mode, externalServices: e.externalServices }),
);

/** Compact JSON ('' when nothing is set), the spelling parseEgressSettings reads. */
export function egressToJson(e: EgressSettings): string {
  if (e.mode === undefined && e.externalServices.length === 0) return '';
  return JSON.stringify({ mode: e.mode, externalServices: e.externalServices.length ? e.externalServices : undefined });
}

/** Validates pushed egress settings ('' = none); throws naming `path`. */
export function egressFromJson(json: string, path: string): EgressSettings {
  if (!json) return NO_EGRESS;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`, { cause: e });
  }
  return parseEgressSettings(raw, path);
}
