/**
 * `wren iptables`: install (or remove) the nat rules that send a pod's TCP traffic
 * through the sidecar. Runs in the `wren-init` init container as root with
 * NET_ADMIN + NET_RAW. Exit codes: 0 ok, 1 iptables failed, 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { parseCidrList, parsePortList } from '../control-plane/injector/annotations.js';
import { applyIptables, binaries, cleanupIptables, createExec, podHasIpv6, type ApplyMethod, type IptablesMode } from '../proxy/intercept/iptables.js';
import { DEFAULT_INTERCEPT, parseNatSave, renderApply, renderCleanup, type Family, type InterceptOptions } from '../proxy/intercept/iptables-rules.js';

type Out = (s: string) => void;

const USAGE = `Usage: wren iptables [flags]

Redirects the pod's TCP traffic to the sidecar proxy (nat table, chains WREN_INBOUND
and WREN_OUTPUT). Inbound TCP goes to --inbound-port, outbound TCP to --outbound-port,
except traffic from --proxy-uid, loopback traffic, and the skipped ports and CIDRs.
Running it again replaces the rules (idempotent); --cleanup removes them.

Flags:
  --proxy-uid UID              UID the proxy runs as; its traffic is never redirected (default 2102)
  --inbound-port PORT          proxy inbound listener (default 15006)
  --outbound-port PORT         proxy outbound listener (default 15001)
  --admin-port PORT            proxy admin port, never redirected (default 15000)
  --metrics-port PORT          proxy metrics port (Prometheus), never redirected (default 15020)
  --skip-inbound-ports LIST    e.g. 22,4191,8000-8010: not redirected inbound
  --skip-outbound-ports LIST   e.g. 443,6443: not redirected outbound
  --skip-outbound-cidrs LIST   e.g. 10.0.0.0/8,169.254.169.254/32: not redirected outbound
  --iptables-mode MODE         auto (the image's iptables), nft or legacy (default auto)
  --method METHOD              restore (one iptables-restore --noflush transaction) or
                               commands (one iptables call per rule); default restore when available
  --ipv6                       also program ip6tables, the same rules, when the pod has an
                               IPv6 address (global or ULA, on an interface other than lo);
                               a pod without one is left IPv4-only (IPv6 CIDRs only go there)
  --netns NAME                 run inside network namespace NAME (ip netns exec), e.g. from a CNI plugin
  --dry-run                    print the rules (iptables-restore input) and change nothing;
                               with --cleanup, the input that removes them
  --cleanup                    remove the WREN_* chains and the jumps into them
  -h, --help                   show this help
`;

class UsageError extends Error {}

function portNum(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError(`--${name}: expected a port 1-65535, got ${JSON.stringify(v)}`);
  return Number(v);
}

function list<T>(name: string, v: string | undefined, parse: (s: string) => T[] | undefined): T[] {
  if (v === undefined) return [];
  const r = parse(v);
  if (r === undefined) throw new UsageError(`--${name}: malformed list ${JSON.stringify(v)}`);
  return r;
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'proxy-uid': { type: 'string' },
      'inbound-port': { type: 'string' },
      'outbound-port': { type: 'string' },
      'admin-port': { type: 'string' },
      'metrics-port': { type: 'string' },
      'skip-inbound-ports': { type: 'string' },
      'skip-outbound-ports': { type: 'string' },
      'skip-outbound-cidrs': { type: 'string' },
      'iptables-mode': { type: 'string' },
      method: { type: 'string' },
      ipv6: { type: 'boolean' },
      netns: { type: 'string' },
      'dry-run': { type: 'boolean' },
      cleanup: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const uid = values['proxy-uid'] ?? String(DEFAULT_INTERCEPT.proxyUid);
  if (!/^\d+$/.test(uid)) throw new UsageError(`--proxy-uid: expected a numeric UID, got ${JSON.stringify(uid)}`);
  const mode = (values['iptables-mode'] ?? 'auto') as IptablesMode;
  if (!['auto', 'nft', 'legacy'].includes(mode)) throw new UsageError(`--iptables-mode: expected auto, nft or legacy, got ${JSON.stringify(mode)}`);
  const method = values.method as ApplyMethod | undefined;
  if (method !== undefined && !['restore', 'commands'].includes(method)) throw new UsageError(`--method: expected restore or commands`);
  if (values.netns !== undefined && !/^[A-Za-z0-9_.-]+$/.test(values.netns)) throw new UsageError('--netns: invalid namespace name');
  const rules: InterceptOptions = {
    proxyUid: Number(uid),
    inboundPort: portNum('inbound-port', values['inbound-port'], DEFAULT_INTERCEPT.inboundPort),
    outboundPort: portNum('outbound-port', values['outbound-port'], DEFAULT_INTERCEPT.outboundPort),
    adminPort: portNum('admin-port', values['admin-port'], DEFAULT_INTERCEPT.adminPort),
    metricsPort: portNum('metrics-port', values['metrics-port'], DEFAULT_INTERCEPT.metricsPort),
    skipInboundPorts: list('skip-inbound-ports', values['skip-inbound-ports'], parsePortList),
    skipOutboundPorts: list('skip-outbound-ports', values['skip-outbound-ports'], parsePortList),
    skipOutboundCidrs: list('skip-outbound-cidrs', values['skip-outbound-cidrs'], parseCidrList),
  };
  return { values, rules, mode, method };
}

export async function iptablesCommand(argv: string[], out: Out, err: Out): Promise<number> {
  let p: ReturnType<typeof parse>;
  try {
    p = parse(argv);
  } catch (e) {
    err(`wren iptables: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, rules, mode, method } = p;
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const families: Family[] = values.ipv6 ? [4, 6] : [4];
  if (values['dry-run']) {
    // --cleanup's input depends on what is installed, which a dry run does not read (it
    // needs no privilege): it shows the removal of what this command installs.
    for (const f of families) out(`# ${binaries(mode, f).restore} --noflush\n${values.cleanup ? renderCleanup(parseNatSave(renderApply(rules, f))) : renderApply(rules, f)}`);
    return 0;
  }
  const exec = createExec(values.netns ? ['ip', 'netns', 'exec', values.netns] : []);
  try {
    for (const family of families) {
      const bin = binaries(mode, family).iptables;
      // The injector always asks for --ipv6; only a pod that has IPv6 gets (or needs) ip6tables rules.
      if (family === 6 && !(await podHasIpv6(exec))) {
        out(`${bin}: skipped, the pod has no IPv6 address\n`);
        continue;
      }
      if (values.cleanup) {
        await cleanupIptables({ exec, mode, method, family });
        out(`${bin}: removed WREN_INBOUND and WREN_OUTPUT\n`);
      } else {
        const s = await applyIptables(rules, { exec, mode, method, family });
        out(`${bin}: installed ${s.rules.length} rules in ${s.chains.join(', ')} (${s.jumps.length} jumps)\n`);
      }
    }
    return 0;
  } catch (e) {
    err(`wren iptables: ${(e as Error).message}\n`);
    return 1;
  }
}
