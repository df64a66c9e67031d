/**
 * Data-path benchmark (issue: sidecar data path). Measured in one run on loopback:
 *  (a) client -> backend direct (the limit)
 *  (b) client -> outbound sidecar -> mTLS/HTTP2 -> inbound sidecar -> backend (Wren)
 *  (c) the same two hops through a naive node:http/https keep-alive pair (the peer to beat)
 * for HTTP/1.1 keep-alive and gRPC unary (h2c), at saturation, sequentially, and at a fixed
 * 1000 req/s (bursty from one h2load, and paced from several; see pacedH2load).
 * The load generator is h2load (nghttp2-client), not Node, so its cost stays out of the
 * figures; every process (backend, sidecars, naive pair) is separate so CPU and RSS are
 * per process (from /proc).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, writeFile, readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { writeDevMesh } from '../certs/index.js';
import { startNode } from './node-process.js';
import { haproxyInstalled, startHaproxyPair } from './haproxy-pair.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const execFileAsync = promisify(execFile);
const TICKS = 100; // USER_HZ on Linux

type Proc = { readonly pid: number };
const start = (args: string[], ready: RegExp, nodeArgs: string[] = []) => startNode(procs, args, ready, nodeArgs);
const procs: ChildProcess[] = [];

/** WREN_BENCH_PROFILE=DIR writes a V8 CPU profile of each sidecar there (they are stopped with SIGTERM so it gets written). */
const PROFILE_DIR = process.env.WREN_BENCH_PROFILE;
/** WREN_BENCH_ONLY=REGEX runs only the scenarios whose label matches. */
const ONLY = process.env.WREN_BENCH_ONLY ? new RegExp(process.env.WREN_BENCH_ONLY) : null;
/** WREN_BENCH_ROUNDS=N runs every load N times, interleaving the paths (default 3; rows are medians). */
const ROUNDS = Math.max(1, Number(process.env.WREN_BENCH_ROUNDS ?? 3));


function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]); // utime + stime
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * Private (anonymous) resident memory: RSS minus the file-backed pages, most of which are
 * the node binary's own code, shared by every process running the same binary (about
 * 30 MB for a bare node, 45-50 MB once http2/TLS code has run).
 */
function anonMb(pid: number): number {
  const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface LoadResult { rps: number; done: number; failed: number; p50: number; p99: number; lat: number[] }

async function h2load(url: string, opts: { h1: boolean; clients: number; streams: number; seconds: number; rps?: number; headers: string[]; data?: string }): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), 'wren-h2load-'));
  const log = join(dir, 'log.tsv');
  const args = [...(opts.h1 ? ['--h1'] : []), '-c', String(opts.clients), '-m', String(opts.streams), '-D', String(opts.seconds), '--warm-up-time=1', '--log-file', log];
  if (opts.rps) args.push(`--rps=${opts.rps}`);
  for (const h of opts.headers) args.push('-H', h);
  if (opts.data) args.push('-d', opts.data);
  args.push(url);
  const { stdout: out } = await execFileAsync('h2load', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(out);
  const lat = (await readFile(log, 'utf8')).trim().split('\n').map((l) => Number(l.split('\t')[2]) / 1000).filter((x) => x >= 0).sort((a, b) => a - b);
  return { rps, done: Number(req?.[3] ?? 0), failed: Number(req?.[5] ?? 0), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), lat };
}

const quantile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;

/**
 * A fixed rate without h2load's bursts: `--rps` with 10 connections in one h2load fires
 * all 10 connections' requests on the same 10 ms tick, so the sidecars see bursts of 10
 * simultaneous requests and p99 measures the burst's queue. Here `n` single-connection
 * h2load processes each send `rate / n` req/s, started a few ms apart, so arrivals
 * interleave instead.
 */
async function pacedH2load(url: string, opts: { h1: boolean; n: number; rate: number; seconds: number; headers: string[]; data?: string }): Promise<LoadResult> {
  const period = 1000 / opts.rate;
  const runs = await Promise.all(
    Array.from({ length: opts.n }, (_, i) =>
      new Promise((r) => setTimeout(r, i * period * 0.97)).then(() =>
        h2load(url, { h1: opts.h1, clients: 1, streams: 1, seconds: opts.seconds, rps: opts.rate / opts.n, headers: opts.headers, data: opts.data }),
      ),
    ),
  );
  const lat = runs.flatMap((r) => r.lat).sort((a, b) => a - b);
  const sum = (k: 'rps' | 'done' | 'failed') => runs.reduce((a, r) => a + r[k], 0);
  return { rps: sum('rps'), done: sum('done'), failed: sum('failed'), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), lat };
}

/** The median of a row's rounds, field by field (so each figure is a value some round measured). */
function medianRow<T extends { rps: number; p50: number; p99: number; done: number; failed: number; cpuUsPerReq: number[]; rssMb: number[]; anonMb: number[] }>(runs: T[]): T & { rounds: number } {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const each = (pick: (r: T) => number[]) => pick(runs[0]).map((_, i) => med(runs.map((r) => pick(r)[i])));
  return {
    ...runs[0],
    rps: med(runs.map((r) => r.rps)),
    p50: med(runs.map((r) => r.p50)),
    p99: med(runs.map((r) => r.p99)),
    done: runs.reduce((a, r) => a + r.done, 0),
    failed: runs.reduce((a, r) => a + r.failed, 0),
    cpuUsPerReq: each((r) => r.cpuUsPerReq),
    rssMb: each((r) => r.rssMb),
    anonMb: each((r) => r.anonMb),
    rounds: runs.length,
  };
}

async function measure(label: string, run: () => Promise<LoadResult>, sidecars: Proc[]): Promise<Omit<LoadResult, 'lat'> & { label: string; cpuUsPerReq: number[]; rssMb: number[]; anonMb: number[] }> {
  const before = sidecars.map((p) => cpuTicks(p.pid));
  const { lat: _lat, ...r } = await run();
  const cpu = sidecars.map((p, i) => ((cpuTicks(p.pid) - before[i]) / TICKS) * 1e6 / Math.max(1, r.done));
  return { label, ...r, cpuUsPerReq: cpu, rssMb: sidecars.map((p) => rssMb(p.pid)), anonMb: sidecars.map((p) => anonMb(p.pid)) };
}

export async function runDataPathBench(opts: { seconds?: number } = {}): Promise<Record<string, unknown>> {
  const seconds = opts.seconds ?? 5;
  const wren = here('../cli/wren.js');
  const dir = await mkdtemp(join(tmpdir(), 'wren-bench-'));
  const pki = await writeDevMesh(join(dir, 'pki'), { trustDomain: 'cluster.local', workloads: [{ namespace: 'default', serviceAccount: 'client', name: 'client' }, { namespace: 'default', serviceAccount: 'web', name: 'web' }] });
  const files = Object.fromEntries(pki.workloads.map((w) => [w.name, w]));
  try {
    const backend = await start([here('./backend.js')], /ready (\d+) (\d+)/);
    const [h1Port, grpcPort] = [Number(backend.match[1]), Number(backend.match[2])];
    const proxyCfg = async (name: string, services: unknown[]) => {
      const file = join(dir, `${name}.yaml`);
      await writeFile(file, stringify({
        identity: { namespace: 'default', serviceAccount: name },
        tls: { certFile: files[name].certFile, keyFile: files[name].keyFile, trustBundleFile: pki.caCertFile },
        listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 } },
        log: { level: 'info' },
        shutdown: { gracePeriodMs: 200 },
        mesh: { services },
      }));
      return file;
    };
    const started = /"msg":"proxy started".*?"outbound":(\d+),"inbound":(\d+),"admin":(\d+)/;
    // WREN_BENCH_NODE_ARGS adds Node flags to the sidecars (e.g. --trace-gc, --max-semi-space-size=...).
    const prof = [...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []), ...(process.env.WREN_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])];
    const server = await start([wren, 'proxy', '--config', await proxyCfg('web', [])], started, prof);
    const inboundPort = Number(server.match[2]);
    const ep = (port: number) => [{ address: '127.0.0.1', port, proxyPort: inboundPort, identity: files.web.spiffeId }];
    const client = await start([wren, 'proxy', '--config', await proxyCfg('client', [
      { name: 'web', ports: [{ port: 80, protocol: 'http1', endpoints: ep(h1Port) }] },
      { name: 'echo', ports: [{ port: 50051, protocol: 'grpc', endpoints: ep(grpcPort) }] },
    ])], started, prof);
    const outboundPort = Number(client.match[1]);
    const naiveIn = await start([here('./naive-pair.js'), 'inbound', String(h1Port), files.web.certFile, files.web.keyFile, pki.caCertFile], /ready (\d+)/);
    const naiveOut = await start([here('./naive-pair.js'), 'outbound', naiveIn.match[1], files.client.certFile, files.client.keyFile, pki.caCertFile], /ready (\d+)/);
    const sidecars = [client, server];
    const naive = [naiveOut, naiveIn];
    // The non-Node reference (skipped when haproxy is not installed).
    const hap = haproxyInstalled()
      ? await startHaproxyPair(procs, dir, { backendPort: h1Port, caFile: pki.caCertFile, client: files.client, server: files.web })
      : null;
    if (!hap) console.log('(haproxy not installed: the haproxy reference rows are skipped; apt-get install haproxy)');
    const haproxy = hap ? hap.pids.map((pid) => ({ pid })) : [];
    const idle: Record<string, Proc> = { wrenClient: client, wrenServer: server, naiveOut: naiveOut, naiveIn: naiveIn, ...(hap ? { haproxyOut: haproxy[0], haproxyIn: haproxy[1] } : {}) };
    const idleRss = Object.fromEntries(Object.entries(idle).map(([k, p]) => [k, rssMb(p.pid)]));
    const idleAnon = Object.fromEntries(Object.entries(idle).map(([k, p]) => [k, anonMb(p.pid)]));
    const grpcFrame = join(dir, 'grpc.bin');
    // gRPC length-prefixed message: flag 0, length 4, then EchoRequest{message:"ping"}.
    await writeFile(grpcFrame, Buffer.from([0, 0, 0, 0, 6, 0x0a, 4, 0x70, 0x69, 0x6e, 0x67]));
    const grpcHeaders = (authority: string) => ['content-type: application/grpc', 'te: trailers', `:authority: ${authority}`];
    const sat = { clients: 32, streams: 1, seconds };
    const fixed = { clients: 10, streams: 1, seconds, rps: 100 };
    const h1 = (port: number, authority: string, o: typeof sat | typeof fixed) => () => h2load(`http://127.0.0.1:${port}/`, { h1: true, headers: [`:authority: ${authority}`], ...o });
    const g = (port: number, authority: string, o: { clients: number; streams: number; seconds: number; rps?: number }) => () =>
      h2load(`http://127.0.0.1:${port}/wren.test.Echo/Unary`, { h1: false, headers: grpcHeaders(authority), data: grpcFrame, ...o });
    type Row = Awaited<ReturnType<typeof measure>>;
    const rows: Row[] = [];
    /**
     * One group of paths under the same load, run ROUNDS times with the paths interleaved
     * (direct, wren, naive, haproxy, direct, wren, ...), so a stall of the machine lands in
     * one round of one path rather than deciding a row; each row is the median round.
     */
    const group = async (load: string, paths: [string, () => Promise<LoadResult>, Proc[]][]) => {
      const picked = paths.filter(([name]) => !ONLY || ONLY.test(`${load}: ${name}`));
      const runs = new Map<string, Row[]>(picked.map(([name]) => [name, []]));
      for (let round = 0; round < ROUNDS; round++)
        for (const [name, run, ps] of picked) runs.get(name)!.push(await measure(`${load}: ${name}`, run, ps));
      for (const [name] of picked) rows.push(medianRow(runs.get(name)!));
    };
    const naivePort = Number(naiveOut.match[1]);
    const http1Paths = (load: (port: number) => () => Promise<LoadResult>): [string, () => Promise<LoadResult>, Proc[]][] => [
      ['direct', load(h1Port), []],
      ['wren pair', load(outboundPort), sidecars],
      ['naive pair', load(naivePort), naive],
      ...(hap ? [['haproxy pair', load(hap.outboundPort), haproxy] as [string, () => Promise<LoadResult>, Proc[]]] : []),
    ];
    const seq = { clients: 1, streams: 1, seconds };
    const paced = (port: number, authority: string) => () => pacedH2load(`http://127.0.0.1:${port}/`, { h1: true, n: 4, rate: 1000, seconds, headers: [`:authority: ${authority}`] });
    await group('http1 saturation', http1Paths((port) => h1(port, 'web', sat)));
    await group('http1 sequential', http1Paths((port) => h1(port, 'web', seq)));
    await group('http1 1000 rps', http1Paths((port) => h1(port, 'web', fixed)));
    await group('http1 1000 rps paced', http1Paths((port) => paced(port, 'web')));
    const gsat = { clients: 4, streams: 16, seconds };
    await group('grpc saturation', [['direct', g(grpcPort, 'echo', gsat), []], ['wren pair', g(outboundPort, 'echo:50051', gsat), sidecars]]);
    await group('grpc 1000 rps', [['direct', g(grpcPort, 'echo', fixed), []], ['wren pair', g(outboundPort, 'echo:50051', fixed), sidecars]]);
    const by = (l: string) => rows.find((r) => r.label === l) ?? { rps: NaN, p99: NaN };
    const ratios = {
      http1SatThroughputWrenOverDirect: by('http1 saturation: wren pair').rps / by('http1 saturation: direct').rps,
      http1SatThroughputWrenOverNaive: by('http1 saturation: wren pair').rps / by('http1 saturation: naive pair').rps,
      http1FixedP99AddedMsWren: by('http1 1000 rps: wren pair').p99 - by('http1 1000 rps: direct').p99,
      http1FixedP99AddedMsNaive: by('http1 1000 rps: naive pair').p99 - by('http1 1000 rps: direct').p99,
      http1FixedP99WrenOverNaive: by('http1 1000 rps: wren pair').p99 / by('http1 1000 rps: naive pair').p99,
      http1PacedP99AddedMsWren: by('http1 1000 rps paced: wren pair').p99 - by('http1 1000 rps paced: direct').p99,
      http1PacedP99AddedMsNaive: by('http1 1000 rps paced: naive pair').p99 - by('http1 1000 rps paced: direct').p99,
      http1SatThroughputWrenOverHaproxy: by('http1 saturation: wren pair').rps / by('http1 saturation: haproxy pair').rps,
      http1FixedP99AddedMsHaproxy: by('http1 1000 rps: haproxy pair').p99 - by('http1 1000 rps: direct').p99,
      http1PacedP99AddedMsHaproxy: by('http1 1000 rps paced: haproxy pair').p99 - by('http1 1000 rps paced: direct').p99,
      grpcSatThroughputWrenOverDirect: by('grpc saturation: wren pair').rps / by('grpc saturation: direct').rps,
      grpcFixedP99AddedMsWren: by('grpc 1000 rps: wren pair').p99 - by('grpc 1000 rps: direct').p99,
    };
    console.log(`\n== data path (h2load on loopback; each row the median of ${ROUNDS} interleaved rounds; latency in ms; CPU µs per request per sidecar [outbound, inbound]; RSS MB) ==`);
    console.log('scenario'.padEnd(36), 'req/s'.padStart(9), 'p50'.padStart(8), 'p99'.padStart(8), 'failed'.padStart(7), '  cpu µs/req', '  rss MB', '  anon MB');
    for (const r of rows)
      console.log(
        r.label.padEnd(36), r.rps.toFixed(0).padStart(9), r.p50.toFixed(2).padStart(8), r.p99.toFixed(2).padStart(8), String(r.failed).padStart(7),
        '  ' + (r.cpuUsPerReq.map((c) => c.toFixed(0)).join('/') || '-'), '  ' + (r.rssMb.map((m) => m.toFixed(0)).join('/') || '-'), '  ' + (r.anonMb.map((m) => m.toFixed(0)).join('/') || '-'),
      );
    const mb = (o: Record<string, number>) => JSON.stringify(Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number(v.toFixed(1))])));
    console.log('idle RSS MB:', mb(idleRss));
    console.log('idle private (anonymous) MB:', mb(idleAnon));
    console.log('ratios:', JSON.stringify(Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, Number(v.toFixed(3))])), null, 1));
    return { rows, idleRss, idleAnon, ratios };
  } finally {
    // SIGTERM lets a profiled sidecar drain and write its profile; the rest is killed outright.
    for (const p of procs) p.kill(PROFILE_DIR ? 'SIGTERM' : 'SIGKILL');
    if (PROFILE_DIR) await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDataPathBench().then(() => process.exit(0), (e) => {
    console.error(e);
    process.exit(1);
  });
}
