/**
 * The data-path benchmark's output: one markdown table (pasteable into
 * docs/benchmarks.md) with the ratios to direct and to the HAProxy pair, then the
 * issue's aims as ratios with met / not met, and what they ask of one sidecar here.
 */

export interface MeasuredRow {
  readonly load: string;
  readonly path: string;
  readonly rps: number;
  readonly done: number;
  readonly failed: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  /** Per process: [outbound, inbound]. */
  readonly cpuUsPerReq: readonly number[];
  readonly rssMb: readonly number[];
  readonly anonMb: readonly number[];
}
export type Row = MeasuredRow | { readonly load: string; readonly path: string; readonly notMeasured: string };

const measured = (r: Row | undefined): r is MeasuredRow => r !== undefined && !('notMeasured' in r);
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const f = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
const signed = (x: number) => (x >= 0 ? `+${f(x)}` : f(x));

export function printRows(rows: readonly Row[]): void {
  const find = (load: string, path: string) => rows.find((r) => r.load === load && r.path === path);
  console.log('| scenario | req/s | × direct | × HAProxy | p50 ms | p90 ms | p99 ms | added p50 / p90 / p99 ms | failed | CPU µs/req out / in | pair CPU × HAProxy | RSS MB out / in |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---|');
  for (const r of rows) {
    const name = `${r.load}: ${r.path === 'wren pair' ? '**wren pair**' : r.path}`;
    if (!measured(r)) {
      console.log(`| ${name} | not measured: ${r.notMeasured} |||||||||||`);
      continue;
    }
    const direct = find(r.load, 'direct');
    const hap = find(r.load, 'haproxy pair');
    const d = measured(direct) ? direct : undefined;
    const h = measured(hap) ? hap : undefined;
    const proxied = r.cpuUsPerReq.length > 0;
    const added = proxied && d ? `${signed(r.p50 - d.p50)} / ${signed(r.p90 - d.p90)} / ${signed(r.p99 - d.p99)}` : '–';
    console.log(
      `| ${name} | ${f(r.rps, 0)} | ${d && proxied ? f(r.rps / d.rps) : '–'} | ${h && proxied ? f(r.rps / h.rps) : '–'} | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${added} | ${r.failed} | ` +
        `${proxied ? r.cpuUsPerReq.map((c) => f(c, 0)).join(' / ') : '–'} | ${h && proxied ? f(sum(r.cpuUsPerReq) / sum(h.cpuUsPerReq)) : '–'} | ${proxied ? r.rssMb.map((m) => f(m, 0)).join(' / ') : '–'} |`,
    );
  }
}

interface Aim {
  readonly aim: string;
  readonly value: number | null;
  readonly limit: number;
  readonly atMost: boolean;
  readonly unit: string;
  readonly why?: string;
}

/** The aims, each as a ratio (or MB) against its limit; returns them for bench-results.json. */
export function printAims(rows: readonly Row[]): Aim[] {
  const get = (load: string, path: string) => rows.find((r) => r.load === load && r.path === path);
  const needs = (...rs: (Row | undefined)[]): string | undefined => {
    for (const r of rs) if (!r) return 'not run (WREN_BENCH_ONLY)';
    for (const r of rs) if (!measured(r)) return `${r!.path}: ${(r as { notMeasured: string }).notMeasured}`;
    return undefined;
  };
  const aim = (text: string, limit: number, atMost: boolean, unit: string, rs: (Row | undefined)[], value: (m: MeasuredRow[]) => number): Aim => {
    const why = needs(...rs);
    return { aim: text, limit, atMost, unit, value: why ? null : value(rs as MeasuredRow[]), why };
  };
  const sat = 'http1 saturation (32 conns)';
  const fixed = 'http1 1000 rps (16 conns)';
  const wrenRows = rows.filter((r): r is MeasuredRow => measured(r) && r.path === 'wren pair');
  const aims: Aim[] = [
    aim('HTTP/1.1 throughput at saturation, Wren / HAProxy', 0.7, false, '×', [get(sat, 'wren pair'), get(sat, 'haproxy pair')], ([w, h]) => w.rps / h.rps),
    aim('pair CPU per request at saturation, Wren / HAProxy', 1.5, true, '×', [get(sat, 'wren pair'), get(sat, 'haproxy pair')], ([w, h]) => sum(w.cpuUsPerReq) / sum(h.cpuUsPerReq)),
    aim('added p99 at 1000 rps over 16 connections, Wren / HAProxy', 1.5, true, '×', [get(fixed, 'wren pair'), get(fixed, 'haproxy pair'), get(fixed, 'direct')], ([w, h, d]) => (w.p99 - d.p99) / (h.p99 - d.p99)),
    { aim: 'RSS after load, the largest Wren sidecar over every load', limit: 100, atMost: true, unit: 'MB', value: wrenRows.length ? Math.max(...wrenRows.flatMap((r) => r.rssMb)) : null, why: wrenRows.length ? undefined : 'no Wren row measured' },
    aim('gRPC unary throughput at saturation, Wren / direct', 0.5, false, '×', [get('grpc saturation', 'wren pair'), get('grpc saturation', 'direct')], ([w, d]) => w.rps / d.rps),
  ];
  console.log('\n| aim | measured | limit | |\n|---|---:|---:|---|');
  for (const a of aims) {
    const met = a.value === null ? `not measured: ${a.why}` : (a.atMost ? a.value <= a.limit : a.value >= a.limit) ? 'met' : '**not met**';
    console.log(`| ${a.aim} | ${a.value === null ? '–' : f(a.value)} ${a.unit} | ${a.atMost ? '≤' : '≥'} ${a.limit} ${a.unit} | ${met} |`);
  }
  return aims;
}

/**
 * What each aim asks of one sidecar on this machine, from this run's own figures, next to
 * Node's floor here (the bytes mux pair: HTTP/1.1 forwarded as bytes, no features) and
 * Wren. The throughput aims are read with a saturated machine: at saturation every CPU is
 * busy, so the machine spends `cpus` s per s, `cpus` × 1e6 / rps µs per request, of which
 * the load generator and the app take what they take on the direct path (gRPC) or beside
 * HAProxy (HTTP/1.1: the HAProxy pair's own CPU off); the rest, at the aimed rate, is what
 * the two sidecars may spend. An estimate (a machine is never quite saturated: Wren's
 * measured rate is below what its CPU alone predicts), so a budget is an upper bound.
 */
export function printBudgets(rows: readonly Row[], cpus: number): void {
  const get = (load: string, path: string) => {
    const r = rows.find((x) => x.load === load && x.path === path);
    return measured(r) ? r : undefined;
  };
  const perSidecar = (r: MeasuredRow | undefined) => (r ? f(sum(r.cpuUsPerReq) / 2, 0) : '–');
  const sat = 'http1 saturation (32 conns)';
  const [hap, wren, floor] = [get(sat, 'haproxy pair'), get(sat, 'wren pair'), get(sat, 'bytes mux pair')];
  const lines: string[] = [];
  if (hap) {
    const machine = (cpus * 1e6) / hap.rps;
    const others = machine - sum(hap.cpuUsPerReq);
    const forThroughput = (machine / 0.7 - others) / 2;
    lines.push(`| HTTP/1.1 pair CPU ≤ 1.5× HAProxy's | ${f((1.5 * sum(hap.cpuUsPerReq)) / 2, 0)} | ${perSidecar(floor)} | ${perSidecar(wren)} |`);
    lines.push(`| HTTP/1.1 throughput ≥ 0.7× HAProxy's (wrk and the app: ${f(others, 0)} µs/request beside HAProxy) | ${f(forThroughput, 0)} | ${perSidecar(floor)} | ${perSidecar(wren)} |`);
  }
  const [direct, wrenGrpc] = [get('grpc saturation', 'direct'), get('grpc saturation', 'wren pair')];
  if (direct) {
    // h2load and the gRPC app take cpus × 1e6 / direct rps per call; at half that rate the machine has twice that per call.
    const clientAndApp = (cpus * 1e6) / direct.rps;
    lines.push(`| gRPC throughput ≥ 0.5× direct (h2load and the app: ${f(clientAndApp, 0)} µs/call direct) | ${f(clientAndApp / 2, 0)} | – | ${perSidecar(wrenGrpc)} |`);
  }
  if (lines.length === 0) return;
  console.log(`
What the aims ask of one sidecar here (${cpus} CPUs; CPU µs per request per sidecar, at saturation):`);
  console.log('| aim | budget per sidecar | bytes mux pair (Node floor) | Wren |\n|---|---:|---:|---:|');
  for (const l of lines) console.log(l);
}
