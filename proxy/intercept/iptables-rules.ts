/**
 * Pure generation of the nat-table rules that send a pod's TCP traffic through the
 * sidecar, modelled on linkerd2-proxy-init (PROXY_INIT_REDIRECT / PROXY_INIT_OUTPUT,
 * linkerd.io/2-edge/reference/iptables) and istio-iptables (ISTIO_INBOUND / ISTIO_OUTPUT):
 *
 *   PREROUTING -> WREN_INBOUND: TCP arriving at the pod, except skipped ports and the
 *     proxy's own ports (admin, outbound, inbound, metrics: Istio's 15020 is excluded
 *     too), is REDIRECTed to the inbound listener (15006).
 *   OUTPUT -> WREN_OUTPUT: TCP the pod sends is REDIRECTed to the outbound listener
 *     (15001), except (in this order, first match wins):
 *       - packets from the proxy's UID (2102), or the proxy would loop into itself;
 *       - packets leaving via lo (localhost, and the pod's own IP, which the kernel
 *         routes over lo): in-pod traffic is not meshed, as in Linkerd;
 *       - skipped destination ports and CIDRs.
 *
 * The proxy recovers the original destination with SO_ORIGINAL_DST (proxy/native).
 * Output is iptables-restore input, also what `wren iptables --dry-run` prints.
 */
export const INBOUND_CHAIN = 'WREN_INBOUND';
export const OUTPUT_CHAIN = 'WREN_OUTPUT';
export const WREN_CHAINS = [INBOUND_CHAIN, OUTPUT_CHAIN] as const;

export interface InterceptOptions {
  readonly proxyUid: number;
  readonly inboundPort: number;
  readonly outboundPort: number;
  readonly adminPort: number;
  /**
   * The proxy's metrics port (Istio's 15020): Prometheus scrapes it on the pod IP, so
   * inbound connections to it must reach the proxy, not be redirected to 15006.
   */
  readonly metricsPort: number;
  /** Ports or "lo:hi" ranges (iptables multiport syntax). */
  readonly skipInboundPorts: readonly string[];
  readonly skipOutboundPorts: readonly string[];
  readonly skipOutboundCidrs: readonly string[];
}

export const DEFAULT_INTERCEPT: InterceptOptions = Object.freeze({
  proxyUid: 2102,
  inboundPort: 15006,
  outboundPort: 15001,
  adminPort: 15000,
  metricsPort: 15020,
  skipInboundPorts: [],
  skipOutboundPorts: [],
  skipOutboundCidrs: [],
});

export type Family = 4 | 6;

/** The multiport match takes at most 15 ports, a range counting as two (iptables-extensions(8)). */
export function chunkPorts(ports: readonly string[]): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  let weight = 0;
  for (const p of ports) {
    const w = p.includes(':') ? 2 : 1;
    if (weight + w > 15) {
      out.push(cur);
      cur = [];
      weight = 0;
    }
    cur.push(p);
    weight += w;
  }
  if (cur.length) out.push(cur);
  return out;
}

const comment = (c: string): string => `-m comment --comment wren/${c}`;

/** The rule lines (`-A CHAIN ...`) for one address family, in order. */
export function buildRules(o: InterceptOptions, family: Family = 4): string[] {
  const r: string[] = [];
  const skipIn = [...new Set(o.skipInboundPorts)];
  for (const ports of chunkPorts(skipIn))
    r.push(`-A ${INBOUND_CHAIN} -p tcp -m multiport --dports ${ports.join(',')} ${comment('skip-inbound-ports')} -j RETURN`);
  const own = [...new Set([o.adminPort, o.outboundPort, o.inboundPort, o.metricsPort])].sort((a, b) => a - b).join(',');
  r.push(`-A ${INBOUND_CHAIN} -p tcp -m multiport --dports ${own} ${comment('proxy-ports')} -j RETURN`);
  r.push(`-A ${INBOUND_CHAIN} -p tcp ${comment('redirect-inbound')} -j REDIRECT --to-ports ${o.inboundPort}`);
  r.push(`-A PREROUTING ${comment('inbound')} -j ${INBOUND_CHAIN}`);

  r.push(`-A ${OUTPUT_CHAIN} -m owner --uid-owner ${o.proxyUid} ${comment('proxy-uid')} -j RETURN`);
  r.push(`-A ${OUTPUT_CHAIN} -o lo ${comment('loopback')} -j RETURN`);
  for (const ports of chunkPorts([...new Set(o.skipOutboundPorts)]))
    r.push(`-A ${OUTPUT_CHAIN} -p tcp -m multiport --dports ${ports.join(',')} ${comment('skip-outbound-ports')} -j RETURN`);
  for (const cidr of new Set(o.skipOutboundCidrs))
    if (cidr.includes(':') === (family === 6)) r.push(`-A ${OUTPUT_CHAIN} -d ${cidr} ${comment('skip-outbound-cidrs')} -j RETURN`);
  r.push(`-A ${OUTPUT_CHAIN} -p tcp ${comment('redirect-outbound')} -j REDIRECT --to-ports ${o.outboundPort}`);
  r.push(`-A OUTPUT ${comment('outbound')} -j ${OUTPUT_CHAIN}`);
  return r;
}

/** What `iptables-save -t nat` shows of us: our chains and the jumps into them. */
export interface NatState {
  readonly chains: readonly string[];
  /** Rules in any chain that jump to one of our chains, as printed (`-A OUTPUT ... -j WREN_OUTPUT`). */
  readonly jumps: readonly string[];
  /** All rules inside our chains. */
  readonly rules: readonly string[];
}

export function parseNatSave(save: string): NatState {
  const chains: string[] = [];
  const jumps: string[] = [];
  const rules: string[] = [];
  let inNat = false;
  for (const line of save.split('\n').map((l) => l.trim())) {
    if (line.startsWith('*')) inNat = line === '*nat';
    if (!inNat) continue;
    const chain = /^:(\S+)/.exec(line)?.[1];
    if (chain && (WREN_CHAINS as readonly string[]).includes(chain)) chains.push(chain);
    const m = /^-A (\S+) .*-j (\S+)/.exec(line);
    if (!m) continue;
    if ((WREN_CHAINS as readonly string[]).includes(m[2]) && !(WREN_CHAINS as readonly string[]).includes(m[1])) jumps.push(line);
    if ((WREN_CHAINS as readonly string[]).includes(m[1])) rules.push(line);
  }
  return { chains, jumps, rules };
}

/** Lines that remove the jumps into our chains found in `state` (each printed rule, -A → -D). */
const deleteJumps = (state: NatState): string[] => state.jumps.map((j) => j.replace(/^-A /, '-D '));

/**
 * iptables-restore --noflush input that (re)installs the rules atomically. Declaring a
 * chain (`:WREN_X - [0:0]`) creates it or flushes it, and the old jumps are deleted
 * first, so applying twice leaves exactly one set of rules.
 */
export function renderApply(o: InterceptOptions, family: Family = 4, current: NatState = { chains: [], jumps: [], rules: [] }): string {
  return ['*nat', ...WREN_CHAINS.map((c) => `:${c} - [0:0]`), ...deleteJumps(current), ...buildRules(o, family), 'COMMIT', ''].join('\n');
}

/** iptables-restore --noflush input that removes everything we installed; '' if nothing is there. */
export function renderCleanup(current: NatState): string {
  if (current.chains.length === 0 && current.jumps.length === 0) return '';
  const lines = [...deleteJumps(current), ...current.chains.map((c) => `-F ${c}`), ...current.chains.map((c) => `-X ${c}`)];
  return ['*nat', ...lines, 'COMMIT', ''].join('\n');
}

/** Split a rule line into argv for individual `iptables -t nat` calls (our rules never quote). */
export const ruleArgs = (line: string): string[] => line.split(/\s+/).filter(Boolean).map((s) => s.replace(/^"(.*)"$/, '$1'));
