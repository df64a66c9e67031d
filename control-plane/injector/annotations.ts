/**
 * The `wren.io/*` labels and annotations the injector reads, and strict parsers for
 * their values. A malformed value never breaks pod creation: it is ignored with a
 * warning (returned to kubectl as an AdmissionReview warning).
 */
export const A = {
  inject: 'wren.io/inject',
  injected: 'wren.io/injected',
  cpuRequest: 'wren.io/proxy-cpu-request',
  memoryRequest: 'wren.io/proxy-memory-request',
  cpuLimit: 'wren.io/proxy-cpu-limit',
  memoryLimit: 'wren.io/proxy-memory-limit',
  logLevel: 'wren.io/proxy-log-level',
  concurrency: 'wren.io/proxy-concurrency',
  meshHttp1: 'wren.io/mesh-http1',
  skipInboundPorts: 'wren.io/skip-inbound-ports',
  skipOutboundPorts: 'wren.io/skip-outbound-ports',
  skipOutboundCidrs: 'wren.io/skip-outbound-cidrs',
  /** The proxy's egress scope (its discovery.services): "name.namespace" keys, comma-separated. */
  egressServices: 'wren.io/egress-services',
  /** The proxy's telemetry section (docs/observability.md): trace sampling percent, access log on/off, log sampling percent. */
  tracingSampling: 'wren.io/tracing-sampling',
  accessLog: 'wren.io/access-log',
  accessLogSampling: 'wren.io/access-log-sampling',
} as const;

export const PROXY_CONTAINER = 'wren-proxy';
export const INIT_CONTAINER = 'wren-init';

/** Kubernetes resource.Quantity syntax (apimachinery/pkg/api/resource/quantity.go). */
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[kMGTPE]i?|[mun]|)$/;

export const isQuantity = (s: string): boolean => QUANTITY.test(s);

/**
 * "22,4191,8000-8010" → ["22", "4191", "8000:8010"] (iptables multiport syntax).
 * Returns undefined when any item is not a port or an ascending range of ports.
 */
export function parsePortList(raw: string): string[] | undefined {
  const out: string[] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d{1,5})(?:[-:](\d{1,5}))?$/.exec(item);
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 1 || hi > 65535 || hi < lo) return undefined;
    out.push(lo === hi ? String(lo) : `${lo}:${hi}`);
  }
  return out;
}

const SERVICE_KEY = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** "web.shop, redis.data" → keys; undefined when an item is not "name.namespace". */
export function parseServiceList(raw: string): string[] | undefined {
  const out = raw.split(',').map((s) => s.trim()).filter(Boolean);
  return out.every((k) => SERVICE_KEY.test(k)) ? out : undefined;
}

const V4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** "10.0.0.0/8, fd00::/8" → list; undefined when an item is not a CIDR (or bare address). */
export function parseCidrList(raw: string): string[] | undefined {
  const out: string[] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [addr, bits, extra] = item.split('/');
    if (extra !== undefined) return undefined;
    const v4 = V4.test(addr);
    const v6 = !v4 && /^[0-9a-fA-F:]+$/.test(addr) && addr.includes(':');
    if (!v4 && !v6) return undefined;
    if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > (v4 ? 32 : 128))) return undefined;
    out.push(bits === undefined ? `${addr}/${v4 ? 32 : 128}` : item);
  }
  return out;
}
