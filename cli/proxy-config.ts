/**
 * `wren proxy-config <pod> clusters|routes|policy|certs`: what one proxy has, like
 * `istioctl proxy-config`. By default from the control plane (GET /debug/proxy-config:
 * the services, routes, inbound policy and telemetry that proxy ACKed, and the
 * certificate it reported); with `--admin HOST:PORT` from the proxy's own admin port
 * (/config_dump, /certs) instead, which also works when the proxy has lost the control
 * plane. Exit codes: 0 shown, 1 not found or unreachable, 2 bad usage. docs/operations.md.
 */
import { parseArgs } from 'node:util';
import { systemClock } from '../common/clock.js';
import { short } from '../contract/trust-anchors.js';
import { printable, printableJson } from '../common/printable.js';
import type { InboundPolicy, Service } from '../contract/model.js';
import type { ServiceRoute } from '../contract/routes.js';
import type { ProxyConfigDump } from '../control-plane/discovery/proxy-status.js';
import { checkTargetArgs, directReplica, hostPort, replicasFrom, replicaJson, TARGET_OPTIONS, TARGET_USAGE, timeoutMsOf } from './control-plane-admin.js';
import { table, untilText } from './proxy-status.js';

type Out = (s: string) => void;
const KINDS = ['clusters', 'routes', 'policy', 'certs'] as const;
type Kind = (typeof KINDS)[number];

const USAGE = `Usage: wren proxy-config POD clusters|routes|policy|certs [options]

POD is NAME.NAMESPACE, NAMESPACE/NAME, or NAME (namespace default).
  clusters   the services the proxy knows: ports, protocol, load balancer, endpoints
  routes     the HTTPRoutes / GRPCRoutes in force per service
  policy     its inbound policy (mTLS mode, authorization policies, JWT rules) and telemetry
  certs      its certificate: serial, expiry, the root it chains to, the anchors it trusts

Options:
  --admin HOST:PORT          read the proxy's own admin port (/config_dump, /certs)
                             instead of the control plane
${TARGET_USAGE}
  -o, --output table|json    (default table)
  -h, --help                 show this help

Exit codes: 0 shown, 1 the proxy not found or unreachable, 2 bad usage.
`;

/** What one proxy has, from either source. */
export interface ProxyView {
  readonly from: string;
  readonly version: string | null;
  readonly services: readonly Service[];
  readonly policy: unknown;
  readonly telemetry: unknown;
  readonly cert: {
    readonly identity: string | null; readonly serial: string; readonly notAfter: string | null;
    readonly chainRoot: string | null; readonly chainsToCurrentAnchor: boolean | null; readonly trusts: readonly string[];
  } | null;
}

export function parsePod(s: string): { namespace: string; name: string } {
  const slash = /^([a-z0-9.-]+)\/([a-z0-9.-]+)$/i.exec(s);
  if (slash) return { namespace: slash[1], name: slash[2] };
  const dot = s.lastIndexOf('.');
  if (!/^[a-z0-9.-]+$/i.test(s)) throw new Error(`'${s}' is not a pod (NAME.NAMESPACE, NAMESPACE/NAME or NAME)`);
  return dot > 0 ? { namespace: s.slice(dot + 1), name: s.slice(0, dot) } : { namespace: 'default', name: s };
}

export function fromControlPlane(d: ProxyConfigDump, replica: string): ProxyView {
  return {
    from: `control plane ${replica}`, version: d.ackedVersion, services: d.services, policy: d.policy, telemetry: d.telemetry,
    cert: d.cert ? { identity: d.identity, serial: d.cert.serial, notAfter: d.cert.notAfter, chainRoot: d.cert.chainRoot, chainsToCurrentAnchor: d.cert.chainsToCurrentAnchor, trusts: d.cert.trusts } : null,
  };
}

interface AdminDump { version?: string; services?: Service[]; inboundPolicy?: unknown; telemetry?: unknown }
interface AdminCerts { identity?: string; serial?: string; notAfter?: string; trustAnchors?: { fingerprint256: string }[] }

export function fromAdmin(dump: AdminDump, certs: AdminCerts | null, admin: string): ProxyView {
  return {
    from: `proxy admin ${admin}`, version: dump.version ?? null, services: dump.services ?? [], policy: dump.inboundPolicy ?? null, telemetry: dump.telemetry ?? null,
    cert: certs ? { identity: certs.identity ?? null, serial: certs.serial ?? '', notAfter: certs.notAfter ?? null, chainRoot: null, chainsToCurrentAnchor: null, trusts: (certs.trustAnchors ?? []).map((a) => a.fingerprint256) } : null,
  };
}

/**
 * The text of one view. Every value in it is the proxy's claim (read from its admin port,
 * or what it reported to the control plane), so text outside the table's cells goes through
 * printable() as the cells do: a compromised sidecar's escape sequences are shown, never
 * run by the operator's terminal.
 */
export function formatView(v: ProxyView, kind: Kind, now: number): string {
  const p = (s: unknown): string => printable(String(s));
  const head = `# from ${p(v.from)}, config version ${p(v.version ?? '-')}\n`;
  switch (kind) {
    case 'clusters': {
      const rows = [['SERVICE', 'PORT', 'PROTOCOL', 'LB', 'ENDPOINTS', 'READY', 'MTLS']];
      for (const s of v.services)
        for (const p of s.ports)
          rows.push([
            `${s.name}.${s.namespace}`, String(p.port), p.protocol, (p.policy ?? s.policy).loadBalancer.kind, String(p.endpoints.length),
            String(p.endpoints.filter((e) => e.ready).length), String(p.endpoints.filter((e) => e.proxyPort !== null).length),
          ]);
      return head + (rows.length === 1 ? 'no services\n' : table(rows));
    }
    case 'routes': {
      const rows = [['SERVICE', 'ROUTE', 'KIND', 'PORTS', 'RULES']];
      for (const s of v.services)
        for (const r of (s.routes ?? []) as readonly ServiceRoute[])
          rows.push([`${s.name}.${s.namespace}`, `${r.namespace}/${r.name}`, r.kind, r.ports.length ? r.ports.join(',') : 'all', String(r.rules.length)]);
      return head + (rows.length === 1 ? 'no routes (requests are routed by authority only)\n' : table(rows));
    }
    case 'policy': {
      const pol = v.policy;
      if (pol === null) return head + 'no inbound policy received yet\n';
      const telemetry = p(JSON.stringify(v.telemetry));
      if (typeof pol === 'string') return head + `inbound policy: ${p(pol)}\ntelemetry: ${telemetry}\n`;
      const ip = pol as InboundPolicy;
      const ports = Object.entries(ip.portLevelMtls ?? {}).map(([k, m]) => `${p(k)}=${p(m.mode)}`);
      const authz = (ip.authorizationPolicies ?? []).map((a) => `  ${p(a.action).padEnd(6)} ${p(a.name)} (${a.rules.length} rule${a.rules.length === 1 ? '' : 's'})`);
      return head + `mTLS: ${p(ip.mtls?.mode ?? '-')}${ports.length ? ` (ports: ${ports.join(', ')})` : ''}\nauthorization policies: ${authz.length || 'none'}\n${authz.map((l) => l + '\n').join('')}JWT rules: ${(ip.jwtRules ?? []).length}\ntelemetry: ${telemetry}\n`;
    }
    case 'certs': {
      const c = v.cert;
      if (!c) return head + 'no certificate reported\n';
      const root = c.chainRoot === null ? '' : `chains to: ${c.chainRoot ? p(short(c.chainRoot)) : 'none of its anchors'}${c.chainsToCurrentAnchor === null ? '' : c.chainsToCurrentAnchor ? ' (a current trust anchor)' : ' (NOT a current trust anchor)'}\n`;
      return head + `identity: ${p(c.identity ?? '-')}\nserial: ${p(c.serial)}\nnot after: ${p(c.notAfter ?? '-')} (${p(untilText(c.notAfter, now))})\n${root}trusts: ${c.trusts.map((t) => p(short(t))).join(', ') || 'nothing'}\n`;
    }
  }
}

export async function proxyConfigCommand(argv: string[], out: Out, err: Out): Promise<number> {
  let v;
  let pod;
  let kind: Kind;
  try {
    const a = parseArgs({ args: argv, allowPositionals: true, options: { ...TARGET_OPTIONS, admin: { type: 'string' }, output: { type: 'string', short: 'o', default: 'table' }, help: { type: 'boolean', short: 'h' } }, strict: true });
    v = a.values;
    if (v.help) {
      out(USAGE);
      return 0;
    }
    if (a.positionals.length !== 2) throw new Error('expects POD and one of clusters|routes|policy|certs');
    pod = parsePod(a.positionals[0]);
    if (!(KINDS as readonly string[]).includes(a.positionals[1])) throw new Error(`'${a.positionals[1]}' is not one of ${KINDS.join('|')}`);
    kind = a.positionals[1] as Kind;
    if (v.output !== 'table' && v.output !== 'json') throw new Error(`--output: '${v.output}' is not table or json`);
    if (v.admin && (v['control-plane']?.length || v.kubernetes || v.kubeconfig)) throw new Error('--admin reads the proxy itself: not with --control-plane / --kubernetes');
    if (v.admin) hostPort(v.admin, '--admin');
    checkTargetArgs(v);
  } catch (e) {
    err(`wren proxy-config: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const views: ProxyView[] = [];
  try {
    if (v.admin) {
      const proxy = directReplica(v.admin, timeoutMsOf(v.timeout));
      views.push(fromAdmin(await replicaJson<AdminDump>(proxy, '/config_dump'), kind === 'certs' ? await replicaJson<AdminCerts>(proxy, '/certs') : null, v.admin));
    } else {
      const errors: string[] = [];
      for (const r of await replicasFrom(v)) {
        const res = await r.get(`/debug/proxy-config?pod=${encodeURIComponent(`${pod.namespace}/${pod.name}`)}`).catch((e: Error) => ({ status: 0, body: e.message }));
        if (res.status === 200) views.push(...(JSON.parse(res.body) as { proxies: ProxyConfigDump[] }).proxies.map((d) => fromControlPlane(d, r.name)));
        else if (res.status !== 404) errors.push(`${r.name}: ${res.status ? `HTTP ${res.status} ` : ''}${printable(res.body.trim().slice(0, 200))}`);
      }
      if (views.length === 0) {
        err(`wren proxy-config: no proxy of pod ${pod.namespace}/${pod.name} is connected to the control plane${errors.length ? ` (${errors.join('; ')})` : ''}\n`);
        return 1;
      }
    }
  } catch (e) {
    // The message may quote what the proxy answered (replicaJson: its status and body).
    err(`wren proxy-config: ${printable((e as Error).message)}\n`);
    return 1;
  }
  let text: string;
  try {
    if (v.output === 'json') {
      const pick = (x: ProxyView) => ({ from: x.from, version: x.version, ...(kind === 'clusters' ? { services: x.services } : kind === 'routes' ? { routes: Object.fromEntries(x.services.filter((s) => s.routes?.length).map((s) => [`${s.name}.${s.namespace}`, s.routes])) } : kind === 'policy' ? { policy: x.policy, telemetry: x.telemetry } : { cert: x.cert }) });
      text = printableJson(views.map(pick), 2) + '\n';
    } else text = views.map((x) => formatView(x, kind, systemClock.wallNow())).join('\n');
  } catch (e) {
    // The answer parsed as JSON but is not the shape of a config dump (another server on
    // that port, another version, a proxy that lies): said so, not a stack trace.
    err(`wren proxy-config: cannot show what ${printable(views.map((x) => x.from).join(', '))} answered: not a ${kind} view this CLI reads (${printable((e as Error).message)})\n`);
    return 1;
  }
  out(text);
  return 0;
}
