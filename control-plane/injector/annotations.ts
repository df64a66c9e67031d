import { isIPv4, isIPv6 } from 'node:net';

/**
 * The `wren.io/*` labels and annotations the injector reads, and strict parsers for
 * their values. A malformed value never breaks pod creation: it is ignored with a
 * warning (returned to kubectl as an AdmissionReview warning).
 */
export const A = {
  inject: 'wren.io/inject',
  injected: 'wren.io/injected',
  /** Set by the webhook: its admission warnings, one a line, where a controller's pod keeps them (admission.ts). */
  injectWarnings: 'wren.io/inject-warnings',
  cpuRequest: 'wren.io/proxy-cpu-request',
  memoryRequest: 'wren.io/proxy-memory-request',
  cpuLimit: 'wren.io/proxy-cpu-limit',
  memoryLimit: 'wren.io/proxy-memory-limit',
  logLevel: 'wren.io/proxy-log-level',
  concurrency: 'wren.io/proxy-concurrency',
  /**
   * "native" or "classic": this pod's sidecar mode, over the injector's (--sidecar-mode;
   * Istio's sidecar.istio.io/nativeSidecar). Native sidecars need Kubernetes 1.29+.
   */
  sidecarMode: 'wren.io/sidecar-mode',
  /** The classic sidecar's minimum drain after SIGTERM (the proxy's shutdown.minDrainMs; Istio's terminationDrainDuration, Linkerd's proxy-wait-before-exit-seconds). */
  minDrain: 'wren.io/proxy-min-drain',
  meshHttp1: 'wren.io/mesh-http1',
  meshHttp2: 'wren.io/mesh-http2',
  skipInboundPorts: 'wren.io/skip-inbound-ports',
  skipOutboundPorts: 'wren.io/skip-outbound-ports',
  skipOutboundCidrs: 'wren.io/skip-outbound-cidrs',
  /** "false": kubelet probes are not rewritten to the sidecar (Istio's sidecar.istio.io/rewriteAppHTTPProbers); their ports skip the inbound redirect. */
  rewriteAppProbes: 'wren.io/rewrite-app-probes',
  /** The proxy's egress scope (its discovery.services): "name.namespace" keys, comma-separated. */
  egressServices: 'wren.io/egress-services',
  /**
   * Server-speaks-first ports of this pod, spliced by its inbound without sniffing: the
   * proxy's protocol.opaquePorts, replacing its default list (Linkerd's
   * config.linkerd.io/opaque-ports; parseOpaquePorts).
   */
  opaquePorts: 'wren.io/opaque-ports',
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

const SUFFIX: Readonly<Record<string, number>> = {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/**
 * The value of a resource.Quantity ("500m" → 0.5, "128Mi" → 134217728), to compare a
 * request with its limit as the API server does; undefined when `s` is not a quantity.
 */
export function quantityValue(s: string): number | undefined {
  const m = QUANTITY.exec(s);
  if (!m) return undefined;
  const [, num, , suffix] = m;
  // An exponent has digits; a bare E or Ei is the exa suffix (1E = 1e18, 1Ei = 2^60), not an exponent of 0 or NaN.
  if (/^[eE][+-]?\d+$/.test(suffix)) return Number(num) * 10 ** Number(suffix.slice(1)) * (s.startsWith('-') ? -1 : 1);
  return Number(num) * SUFFIX[suffix] * (s.startsWith('-') ? -1 : 1);
}

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

/**
 * At most this many ports in wren.io/opaque-ports once its ranges are expanded: the list
 * becomes an environment variable of the proxy and a set it holds, so `1-65535` would be a
 * 380 KB variable (the API server's limit on all of a pod's annotations is 256 KiB, and
 * containers' environments are not free). A pod with that many server-first ports skips
 * them inbound (wren.io/skip-inbound-ports) instead.
 */
const MAX_OPAQUE_PORTS = 1024;

/**
 * wren.io/opaque-ports: "3306,5432,8000-8010" → [3306, 5432, 8000, ..., 8010], sorted and
 * without repeats, as Linkerd reads config.linkerd.io/opaque-ports (ports and `a-b`
 * ranges, comma-separated). "" → []: no opaque ports of the pod's own. A string saying
 * what is wrong when an item is not a port 1-65535 or an ascending range, or when the
 * items add up to more than MAX_OPAQUE_PORTS ports.
 */
export function parseOpaquePorts(raw: string): number[] | string {
  const ports = new Set<number>();
  // Every item counted in full, repeats too, before it is expanded: the work is bounded
  // by MAX_OPAQUE_PORTS whatever the value (`1-1024` ten thousand times is refused at once).
  let total = 0;
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
    if (!m) return `${JSON.stringify(item)} is not a port or a range like 8000-8010`;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 1 || hi > 65535) return `${JSON.stringify(item)}: ports are 1 to 65535`;
    if (hi < lo) return `${JSON.stringify(item)}: a range goes from the lower port to the higher`;
    total += hi - lo + 1;
    if (total > MAX_OPAQUE_PORTS) return `more than ${MAX_OPAQUE_PORTS} ports`;
    for (let p = lo; p <= hi; p++) ports.add(p);
  }
  return [...ports].sort((a, b) => a - b);
}

const SERVICE_KEY = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** "web.shop, redis.data" → keys; undefined when an item is not "name.namespace". */
export function parseServiceList(raw: string): string[] | undefined {
  const out = raw.split(',').map((s) => s.trim()).filter(Boolean);
  return out.every((k) => SERVICE_KEY.test(k)) ? out : undefined;
}

/**
 * "10.0.0.0/8, fd00::/8" → list; undefined when an item is not a CIDR (or bare address).
 * The address must be what node:net calls IPv4 or IPv6 (RFC 4291 section 2.2 text forms,
 * no zone id: ip6tables takes none) and the prefix 0-32 / 0-128, so everything accepted
 * here is accepted by iptables-restore / ip6tables-restore in the init container.
 */
export function parseCidrList(raw: string): string[] | undefined {
  const out: string[] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [addr, bits, extra] = item.split('/');
    if (extra !== undefined) return undefined;
    const v4 = isIPv4(addr);
    if (!v4 && (!isIPv6(addr) || addr.includes('%'))) return undefined;
    if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > (v4 ? 32 : 128))) return undefined;
    out.push(bits === undefined ? `${addr}/${v4 ? 32 : 128}` : item);
  }
  return out;
}
