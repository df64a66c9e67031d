/**
 * `wren proxy-status`: one row per proxy connected to the control plane (every replica),
 * like `istioctl proxy-status`: its sync status (SYNCED / STALE / NACKED, with the NACK's
 * reason), the config version it ACKed vs the one last sent to it, its certificate's
 * expiry and the root it chains to (and whether that root is a current trust anchor),
 * its Wren release, how long its stream has been up (CONNECTED, an age as kubectl's AGE)
 * and when it was last heard from. Reads GET /debug/proxy-status
 * (control-plane/discovery/proxy-status.ts). Exit codes: 0 shown, 1 a replica
 * unreachable, 2 bad usage. docs/operations.md.
 */
import { printable, printableJson } from '../common/printable.js';
import { parseArgs } from 'node:util';
import { systemClock } from '../common/clock.js';
import { short } from '../contract/trust-anchors.js';
import type { ProxyStatusRow } from '../control-plane/discovery/proxy-status.js';
import { checkTargetArgs, replicaJson, replicasFrom, TARGET_OPTIONS, TARGET_USAGE } from './control-plane-admin.js';

type Out = (s: string) => void;

const USAGE = `Usage: wren proxy-status [options]

One row per proxy connected to the control plane: sync status, versions, certificate.

Options:
${TARGET_USAGE}
  -o, --output table|json    (default table)
  -h, --help                 show this help

STATUS: SYNCED (ACKed the last config sent), STALE (a config is sent and not ACKed yet,
or none sent yet), NACKED (rejected the last config; runs the one it ACKed before).
Exit codes: 0 shown, 1 a control-plane replica unreachable, 2 bad usage.
`;

export interface ProxyStatusDoc {
  readonly latestVersion: string;
  readonly ready: boolean;
  readonly proxies: readonly ProxyStatusRow[];
}

export interface ReplicaStatus {
  readonly controlPlane: string;
  readonly status: ProxyStatusDoc | null;
  readonly error: string | null;
}

/** GET /debug/proxy-status from every replica; an unreachable one is an error entry, not a throw. */
export async function fetchProxyStatus(replicas: readonly { name: string; get(p: string): Promise<{ status: number; body: string }> }[]): Promise<ReplicaStatus[]> {
  return Promise.all(
    replicas.map(async (r) => {
      try {
        return { controlPlane: r.name, status: await replicaJson<ProxyStatusDoc>(r, '/debug/proxy-status'), error: null };
      } catch (e) {
        return { controlPlane: r.name, status: null, error: (e as Error).message };
      }
    }),
  );
}

/** "3h12m", "45s", "expired 2m ago": how long until `iso`. */
export function untilText(iso: string | null, now: number): string {
  if (!iso) return '-';
  const ms = Date.parse(iso) - now;
  const t = durationText(Math.abs(ms));
  return ms < 0 ? `expired ${t} ago` : t;
}

export function durationText(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/**
 * An age as kubectl prints AGE (k8s.io/apimachinery pkg/util/duration HumanDuration): exact
 * seconds below 2 minutes, then coarser the older it is: "45s", "3m20s", "42m", "5h7m",
 * "20h", "3d4h", "30d", "2y10d". A little negative (clocks a second apart) is "0s".
 */
export function ageText(ms: number): string {
  const seconds = Math.trunc(ms / 1000); // Go's int(d.Seconds())
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

/** How long a proxy's stream has been up: the control plane's own count, or (a control plane older than that field) from connectedSince. */
const connectedFor = (p: ProxyStatusRow, now: number): number =>
  typeof (p.connectedForMs as number | undefined) === 'number' ? p.connectedForMs : now - Date.parse(p.connectedSince);

/** Rows as aligned columns; every cell printable (common/printable.ts): cells carry what proxies report. */
export function table(cells: readonly (readonly string[])[]): string {
  const rows = cells.map((r) => r.map(printable));
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('   ')).join('\n') + '\n';
}

export function formatProxyStatus(replicas: readonly ReplicaStatus[], now: number): string {
  const rows: string[][] = [['NAME', 'STATUS', 'ACKED', 'SENT', 'CERT EXPIRES', 'ROOT', 'VERSION', 'CONNECTED', 'LAST SEEN', 'CONTROL PLANE']];
  const notes: string[] = [];
  for (const r of replicas) {
    if (r.error) notes.push(`control plane ${r.controlPlane}: unreachable: ${r.error}`);
    for (const p of r.status?.proxies ?? []) {
      const root = p.cert ? (p.cert.chainRoot ? `${short(p.cert.chainRoot)}${p.cert.chainsToCurrentAnchor === false ? ' (not a current anchor)' : ''}` : 'none of its anchors') : 'not reported';
      rows.push([
        `${p.pod}.${p.namespace}`, p.status, p.ackedVersion ?? '-', p.sentVersion ?? '-', p.cert ? untilText(p.cert.notAfter, now) : 'not reported', root,
        p.proxyVersion ?? 'unknown', ageText(connectedFor(p, now)), `${durationText(p.lastSeenAgoMs)} ago`, r.controlPlane,
      ]);
      if (p.nack) notes.push(`${p.pod}.${p.namespace}: NACKED version ${p.nack.version}: ${p.nack.detail}`);
    }
  }
  const body = rows.length === 1 ? 'no proxies connected\n' : table(rows);
  return body + (notes.length ? `\n${notes.map(printable).join('\n')}\n` : '');
}

export async function proxyStatusCommand(argv: string[], out: Out, err: Out): Promise<number> {
  let v;
  try {
    v = parseArgs({ args: argv, options: { ...TARGET_OPTIONS, output: { type: 'string', short: 'o', default: 'table' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values;
    if (v.output !== 'table' && v.output !== 'json') throw new Error(`--output: '${v.output}' is not table or json`);
    checkTargetArgs(v);
  } catch (e) {
    err(`wren proxy-status: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    out(USAGE);
    return 0;
  }
  let replicas;
  try {
    replicas = await replicasFrom(v);
  } catch (e) {
    err(`wren proxy-status: ${(e as Error).message}\n`);
    return 1;
  }
  if (replicas.length === 0) {
    err('wren proxy-status: no running control-plane pod found\n');
    return 1;
  }
  const status = await fetchProxyStatus(replicas);
  out(v.output === 'json' ? printableJson({ controlPlanes: status }, 2) + '\n' : formatProxyStatus(status, systemClock.wallNow()));
  return status.some((s) => s.error) ? 1 : 0;
}
