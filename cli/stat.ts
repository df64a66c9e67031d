import { printable, printableJson } from '../common/printable.js';
import { parseArgs } from 'node:util';
import type { StatRow } from '../control-plane/stats/stats-store.js';
import { directReplica, hostPort, timeoutMsOf } from './control-plane-admin.js';
import { RetryAfterExhausted } from './retry-after.js';

type Out = (s: string) => void;

/** The local demo's control-plane admin address (wren demo / npm run mesh). */
export const DEMO_CONTROL_PLANE_ADMIN = '127.0.1.254:15014';

export const STAT_USAGE = `Usage: wren stat [svc[/NAME]|deploy[/NAME]|ns[/NAME]] [--from deploy/A] [--to svc/B] [options]

Traffic per service, workload, namespace or edge over the last 30 s or 1 min: request
rate, success rate, p50/p95/p99 latency, open TCP connections and the share of traffic
that was mutual TLS. The control plane aggregates what the proxies report about their
own traffic (StatsReport), so no Prometheus is needed (docs/operations.md, "wren stat").
  svc/NAME      what callers of the service saw (their outbound view); NAME or NAME.NAMESPACE
  deploy/NAME   what the workload's own proxies saw serving (inbound)
  ns/NAME       the namespace's workloads together
  (none)        every service and every workload

Options:
  --from deploy/A        one edge: traffic from workload A (with --to, to one service)
  --to svc/B             one edge: traffic to service B (B or B.NAMESPACE)
  -n, --namespace NS     only this namespace
  --window 30s|1m        the window (default 1m)
  -w, --watch            print again every --interval (default 2s) until interrupted
  --interval DURATION    with --watch: 1s, 500ms... (default 2s)
  -o, --output table|json   (default table)
  --control-plane ADDR   the control plane's admin address (default ${DEMO_CONTROL_PLANE_ADMIN}, the local demo's)
  --timeout SECONDS      per request: 5, or a duration (500ms, 5s, 1m); default 5
  -h, --help
`;

export class StatUsageError extends Error {}

interface Selection {
  readonly kinds: readonly ('service' | 'workload' | 'namespace' | 'edge')[];
  readonly name: string | null;
  readonly namespace: string | null;
  readonly from: string | null;
  readonly to: string | null;
}

const KIND_OF: Record<string, 'service' | 'workload' | 'namespace'> = { svc: 'service', service: 'service', deploy: 'workload', deployment: 'workload', workload: 'workload', ns: 'namespace', namespace: 'namespace' };

function resource(arg: string, allowed: readonly string[], what: string): { kind: 'service' | 'workload' | 'namespace'; name: string | null } {
  const [type, ...rest] = arg.split('/');
  const kind = KIND_OF[type];
  if (!kind || !allowed.includes(kind)) throw new StatUsageError(`${what}: expected ${allowed.map((k) => Object.keys(KIND_OF).find((t) => KIND_OF[t] === k)).join(', ')}[/NAME], got ${JSON.stringify(arg)}`);
  const name = rest.join('/');
  return { kind, name: name === '' ? null : name };
}

export function selection(positionals: readonly string[], v: { from?: string; to?: string; namespace?: string }): Selection {
  if (positionals.length > 1) throw new StatUsageError(`one resource at a time, got ${positionals.join(' ')}`);
  const namespace = v.namespace ?? null;
  if (v.from !== undefined || v.to !== undefined) {
    if (positionals.length > 0) throw new StatUsageError('--from/--to select one edge: give no resource with them');
    const from = v.from !== undefined ? resource(v.from, ['workload'], '--from') : null;
    const to = v.to !== undefined ? resource(v.to, ['service'], '--to') : null;
    if ((from && !from.name) || (to && !to.name)) throw new StatUsageError('--from and --to need a name (deploy/NAME, svc/NAME)');
    return { kinds: ['edge'], name: null, namespace, from: from?.name ?? null, to: to?.name ?? null };
  }
  if (positionals.length === 0) return { kinds: ['service', 'workload'], name: null, namespace, from: null, to: null };
  const r = resource(positionals[0], ['service', 'workload', 'namespace'], 'resource');
  return { kinds: [r.kind], name: r.name, namespace, from: null, to: null };
}

/** NAME matches a row named NAME, or NAME.NAMESPACE matches one in that namespace. */
const named = (want: string, name: string, namespace: string): boolean => want === name || want === `${name}.${namespace}`;

export function selectRows(rows: readonly StatRow[], s: Selection): StatRow[] {
  return rows.filter((r) => {
    if (r.kind === 'edge') {
      if (s.namespace !== null && r.from?.namespace !== s.namespace) return false;
      if (s.from !== null && r.from?.workload !== s.from && `${r.from?.workload}.${r.from?.namespace}` !== s.from) return false;
      const svc = r.to?.service ?? '';
      return s.to === null || svc === s.to || svc.split('.')[0] === s.to;
    }
    if (s.namespace !== null && (r.kind === 'namespace' ? r.name : r.namespace) !== s.namespace) return false;
    return s.name === null || named(s.name, r.name, r.namespace);
  });
}

const pct = (v: number | null): string => (v === null ? '-' : `${(v * 100).toFixed(2)}%`);
const msf = (v: number | undefined): string => (v === undefined ? '-' : `${v < 10 ? v.toFixed(1) : Math.round(v)}ms`);

export function formatTable(rows: readonly StatRow[], window: string): string {
  if (rows.length === 0) return `No traffic reported in the last ${window}.\n`;
  const head = rows[0].kind === 'edge' ? ['FROM', 'TO'] : rows[0].kind === 'namespace' ? ['NAMESPACE'] : ['NAMESPACE', rows[0].kind === 'service' ? 'SERVICE' : 'WORKLOAD'];
  const lines = [[...head, 'MESHED', 'SUCCESS', 'RPS', 'LATENCY_P50', 'LATENCY_P95', 'LATENCY_P99', 'TCP_CONN', 'MTLS']];
  for (const r of rows) {
    const id = r.kind === 'edge' ? [`${r.from!.namespace}/${r.from!.workload}`, r.to!.service || 'unknown'] : r.kind === 'namespace' ? [r.name] : [r.namespace, r.name];
    lines.push([...id, String(r.reporters), pct(r.successRate), r.requestRate.toFixed(2), msf(r.latencyMs?.p50), msf(r.latencyMs?.p95), msf(r.latencyMs?.p99), String(r.tcp.open), pct(r.mtlsShare)]);
  }
  // Names are what proxies report (printable: a proxy's claim could carry terminal escapes).
  const cells = lines.map((l) => l.map(printable));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((l) => l[i].length)));
  return cells.map((l) => l.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}

async function fetchRows(admin: string, kind: string, window: string, timeoutMs: number): Promise<StatRow[]> {
  const path = `/api/stat?kind=${kind}&window=${window}`;
  let res: { status: number; body: string };
  try {
    // directReplica: the address resolved and sent as Host, --timeout over the whole answer,
    // and a 429/503 with Retry-After (the render budget) waited out within bounds.
    res = await directReplica(admin, timeoutMs).get(path);
  } catch (e) {
    if (e instanceof RetryAfterExhausted) throw e;
    throw new Error(`cannot reach the control plane at ${admin} (${(e as Error).message}); is it running? (--control-plane ADDR)`, { cause: e });
  }
  const body = parsed<{ rows?: StatRow[]; error?: string }>(res.body);
  if (res.status !== 200 || !body?.rows) throw new Error(`http://${admin}${path}: ${res.status} ${body?.error ?? 'unexpected answer'}`);
  return body.rows;
}

function parsed<T>(text: string): T | null {
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

function parseInterval(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(s);
  if (!m) throw new StatUsageError(`--interval: expected a duration like 2s or 500ms, got ${JSON.stringify(s)}`);
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  if (ms < 100) throw new StatUsageError('--interval: at least 100ms');
  return ms;
}

/** `wren stat`. `signal` ends --watch (tests; the CLI ends on Ctrl-C). */
export async function statCommand(argv: string[], out: Out, err: Out, o: { signal?: AbortSignal } = {}): Promise<number> {
  let values, positionals;
  let sel: Selection;
  let intervalMs: number;
  let timeoutMs: number;
  try {
    ({ values, positionals } = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        from: { type: 'string' }, to: { type: 'string' }, namespace: { type: 'string', short: 'n' }, window: { type: 'string', default: '1m' },
        watch: { type: 'boolean', short: 'w' }, interval: { type: 'string' }, output: { type: 'string', short: 'o', default: 'table' },
        'control-plane': { type: 'string', default: DEMO_CONTROL_PLANE_ADMIN }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }));
    if (values.help) {
      out(STAT_USAGE);
      return 0;
    }
    if (values.window !== '30s' && values.window !== '1m') throw new StatUsageError(`--window: 30s or 1m, got ${JSON.stringify(values.window)}`);
    if (values.output !== 'table' && values.output !== 'json') throw new StatUsageError(`--output: table or json, got ${JSON.stringify(values.output)}`);
    // Without --watch nothing repeats: an --interval there would be ignored, so it is refused.
    if (values.interval !== undefined && !values.watch) throw new StatUsageError('--interval: only with --watch (-w)');
    intervalMs = parseInterval(values.interval ?? '2s');
    hostPort(values['control-plane'], '--control-plane');
    // As proxy-status, proxy-config and check take it (control-plane-admin.ts).
    timeoutMs = timeoutMsOf(values.timeout);
    sel = selection(positionals, values);
  } catch (e) {
    err(`wren stat: ${(e as Error).message}\n\n${STAT_USAGE}`);
    return 2;
  }
  const once = async (): Promise<void> => {
    const tables = await Promise.all(sel.kinds.map(async (k) => selectRows(await fetchRows(values['control-plane'], k, values.window, timeoutMs), sel)));
    if (values.output === 'json') out(printableJson({ window: values.window, rows: tables.flat() }) + '\n');
    else out(tables.map((t) => formatTable(t, values.window)).join('\n'));
  };
  try {
    await once();
    while (values.watch && !o.signal?.aborted) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs);
        o.signal?.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
      if (o.signal?.aborted) break;
      if (values.output === 'table') out(`\n${new Date().toISOString()}\n`);
      await once();
    }
    return 0;
  } catch (e) {
    // The message may quote the control plane's answer (its `error`): printable, as the cells are.
    err(`wren stat: ${printable((e as Error).message)}\n`);
    return 1;
  }
}
