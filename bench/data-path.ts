/**
 * Data-path benchmark (issue "Lean data path"). Measured in one run on loopback, with the
 * paths interleaved round by round (bench/interleave.ts):
 *  - direct: client -> backend (the limit)
 *  - Wren: client -> outbound sidecar -> mTLS/HTTP2 -> inbound sidecar -> backend
 *  - the naive pair: the same two hops through node:http/https keep-alive agents
 *  - the bytes pair: the floor of a Node pair, HTTP/1.1 forwarded as bytes over pooled mTLS
 *    keep-alive connections with no features (bench/bytes-pair.ts, the issue's probe), and the
 *    bytes mux pair: the same with the mesh hop multiplexed on one connection (bench/bytes-mux-pair.ts)
 *  - the HAProxy pair: the same two hops through two single-threaded HAProxy processes
 *  - telemetry (issue 13): Wren pairs with tracing at 1 % and 100 % (exporting to an OTLP
 *    sink in its own process, bench/otlp-sink.ts) and with access logs on, next to the plain
 *    pair of the same run (WREN_BENCH_TELEMETRY=0 leaves them out)
 *  - routing (issue 15): a Wren pair whose client has a 10-rule HTTPRoute (and a 10-rule
 *    GRPCRoute) with a 90/10 split between two services on the same backend, the requests
 *    matching the last rule (WREN_BENCH_ROUTES=0 leaves it out)
 * for HTTP/1.1 keep-alive and gRPC unary (h2c), at saturation and at 1000 requests/s, and
 * HTTP/1.1 with a new connection per request.
 * Load generators are C programs (wrk, h2load: bench/load.ts); every proxy and the backend
 * run in their own process so CPU and RSS are per process (from /proc). A path or a load
 * that cannot run here is printed as "not measured: <why>", never left out.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { writeDevMesh } from '../certs/index.js';
import { startNode } from './node-process.js';
import { startHaproxyPair } from './haproxy-pair.js';
import { H2LOAD_WARM_UP_SECONDS, h2load, pacedH2load, wrk, type LoadResult } from './load.js';
import { interleave, medianOf } from './interleave.js';
import { ensureTools } from './tools.js';
import { printAims, printBudgets, printRows, type Row } from './data-path-report.js';
import { SIDECAR_NODE_FLAGS } from '../cli/heap-flags.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const TICKS = 100; // USER_HZ on Linux

type Proc = { readonly pid: number };
const procs: ChildProcess[] = [];

/** WREN_BENCH_PROFILE=DIR writes a V8 CPU profile of each sidecar there (they are stopped with SIGTERM so it gets written). */
const PROFILE_DIR = process.env.WREN_BENCH_PROFILE;
/** WREN_BENCH_ONLY=REGEX runs only the scenarios whose label ("load: path") matches. */
const ONLY = process.env.WREN_BENCH_ONLY ? new RegExp(process.env.WREN_BENCH_ONLY) : null;
/** WREN_BENCH_ROUNDS=N runs every load N times, interleaving the paths (default 3; rows are medians). */
const ROUNDS = Math.max(1, Number(process.env.WREN_BENCH_ROUNDS ?? 3));
/** WREN_BENCH_SECONDS=N: the length of one load (default 5). */
const SECONDS = Math.max(1, Number(process.env.WREN_BENCH_SECONDS ?? 5));
/**
 * WREN_BENCH_WARM_UP_SECONDS=N (default: one round's length, WREN_BENCH_SECONDS; 0 for
 * none): before a load's measured rounds, every path carries that load once for N s, unmeasured. A load's first round on a Node
 * path compiles the code for its shape (h2load's header maps are not wrk's: 77 compile and
 * deopt events in the first paced round after a saturated one, none by the fifth;
 * docs/benchmarks.md, "Where the tail at 1000 requests/s comes from"), a start-up cost a
 * sidecar that has served the shape before does not pay and HAProxy, with no JIT, never
 * does. Every path gets the same pass, direct and HAProxy included.
 */
const WARM_UP_SECONDS = Math.max(0, Number(process.env.WREN_BENCH_WARM_UP_SECONDS ?? SECONDS));
/** WREN_BENCH_CONCURRENCY=N (N > 1): a second Wren pair whose sidecars run N listener workers (config `concurrency`), measured in the same run. */
const CONCURRENCY = Number(process.env.WREN_BENCH_CONCURRENCY ?? 1);
/** WREN_BENCH_TELEMETRY=0 skips the tracing and access-log pairs. */
const TELEMETRY = process.env.WREN_BENCH_TELEMETRY !== '0';
/** WREN_BENCH_ROUTES=0 skips the 10-rule HTTPRoute pair. */
const ROUTES = process.env.WREN_BENCH_ROUTES !== '0';

/**
 * The routed pair's client services (issue 15): `web` and `echo` each carry a route of 10
 * rules; 9 match other paths (methods), the last one everything, with a 90/10 split
 * between two services (`-a`, `-b`) whose endpoints are the same backend server. A request
 * is matched against the 9 rules of higher precedence first, then split: the worst case of
 * a 10-rule route.
 */
function routedServices(ep: (port: number) => unknown[], h1Port: number, grpcPort: number): unknown[] {
  const split = (name: string, port: number) => [{ name: `${name}-a`, namespace: 'default', port, weight: 90 }, { name: `${name}-b`, namespace: 'default', port, weight: 10 }];
  const httpRules = [
    ...Array.from({ length: 9 }, (_, i) => ({ matches: [{ path: { type: 'PathPrefix', value: `/rule-${i}` }, headers: [{ name: 'x-rule', value: String(i) }] }], backends: [{ name: 'web-a', namespace: 'default', port: 80 }] })),
    { name: 'split', matches: [{ path: { type: 'PathPrefix', value: '/' } }], backends: split('web', 80) },
  ];
  const grpcRules = [
    ...Array.from({ length: 9 }, (_, i) => ({ matches: [{ grpc: { type: 'Exact', service: `wren.test.Other${i}` } }], backends: [{ name: 'echo-a', namespace: 'default', port: 50051 }] })),
    { name: 'split', matches: [{ grpc: { type: 'Exact', service: 'wren.test.Echo' } }], backends: split('echo', 50051) },
  ];
  const h1 = (name: string) => ({ name, ports: [{ port: 80, protocol: 'http1', endpoints: ep(h1Port) }] });
  const g = (name: string) => ({ name, ports: [{ port: 50051, protocol: 'grpc', endpoints: ep(grpcPort) }] });
  return [
    { ...h1('web'), routes: [{ kind: 'HTTPRoute', name: 'bench', rules: httpRules }] },
    { ...g('echo'), routes: [{ kind: 'GRPCRoute', name: 'bench', rules: grpcRules }] },
    h1('web-a'), h1('web-b'), g('echo-a'), g('echo-b'),
  ];
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]); // utime + stime
}

/** What one load through one path measured: the load's figures and each process's CPU per request, RSS and private memory (RssAnon) after it. */
type Measured = LoadResult & { cpuUsPerReq: number[]; rssMb: number[]; anonMb: number[] };

/**
 * `warmUpMs`: the load's first part is a warm-up whose requests are not in its figures
 * (h2load's `--warm-up-time`), so the CPU is counted from its end. Counted from the start,
 * every gRPC-saturation row charged the warm-up second's CPU to the 5 measured seconds'
 * calls: about 20 % more per call than the processes spent (24 µs per call per sidecar by
 * hand against 28-45 in the rows). The timer starts with the load, a few ms before h2load's
 * warm-up clock (which starts once it has connected): those ms are still counted.
 */
async function measure(run: () => Promise<LoadResult>, ps: readonly Proc[], warmUpMs = 0): Promise<Measured> {
  let before = ps.map((p) => cpuTicks(p.pid));
  const warmedUp = warmUpMs > 0 ? setTimeout(() => (before = ps.map((p) => cpuTicks(p.pid))), warmUpMs) : undefined;
  const r = await run();
  clearTimeout(warmedUp);
  const cpu = ps.map((p, i) => (((cpuTicks(p.pid) - before[i]) / TICKS) * 1e6) / Math.max(1, r.done));
  return { rps: r.rps, done: r.done, failed: r.failed, p50: r.p50, p90: r.p90, p99: r.p99, cpuUsPerReq: cpu, rssMb: ps.map((p) => statusKb(p.pid, 'VmRSS')), anonMb: ps.map((p) => statusKb(p.pid, 'RssAnon')) };
}

/** A proxy path (or direct): its processes, its HTTP/1.1 and gRPC ports, or why it is not measured. */
interface Path {
  readonly name: string;
  readonly procs: readonly Proc[];
  readonly h1Port?: number;
  readonly grpcPort?: number;
  /** Why this path cannot carry gRPC / run at all. */
  readonly noGrpc?: string;
  readonly missing?: string;
  /** Why this path cannot answer `Connection: close` requests (the closing loads). */
  readonly noClose?: string;
}

/** A load: what program drives it, and how, against a port. */
interface Load {
  readonly name: string;
  readonly grpc: boolean;
  readonly tool: 'wrk' | 'h2load';
  /** One run of the load against `port` for `seconds` (SECONDS when measured, WARM_UP_SECONDS to warm up). */
  readonly run: (port: number, seconds: number) => Promise<LoadResult>;
  /** Every request asks the server to close its connection after the response. */
  readonly closes?: boolean;
  /** The load starts with this long of warm-up whose requests it does not report (measure). */
  readonly warmUpMs?: number;
}

export async function runDataPathBench(): Promise<Record<string, unknown>> {
  const missingTools = ensureTools(['h2load', 'wrk', 'haproxy']);
  const wren = here('../cli/wren.js');
  const dir = await mkdtemp(join(tmpdir(), 'wren-bench-'));
  const pki = await writeDevMesh(join(dir, 'pki'), { trustDomain: 'cluster.local', workloads: [{ namespace: 'default', serviceAccount: 'client', name: 'client' }, { namespace: 'default', serviceAccount: 'web', name: 'web' }] });
  const files = Object.fromEntries(pki.workloads.map((w) => [w.name, w]));
  const start = (args: string[], ready: RegExp, nodeArgs: string[] = [], env?: Record<string, string>) => startNode(procs, args, ready, nodeArgs, env);
  try {
    const backend = await start([here('./backend.js')], /ready (\d+) (\d+)/);
    const [h1Port, grpcPort] = [Number(backend.match[1]), Number(backend.match[2])];
    const proxyCfg = async (name: string, services: unknown[], fileName = name, over: Record<string, unknown> = {}) => {
      const file = join(dir, `${fileName}.yaml`);
      await writeFile(file, stringify({
        identity: { namespace: 'default', serviceAccount: name },
        tls: { certFile: files[name].certFile, keyFile: files[name].keyFile, trustBundleFile: pki.caCertFile },
        listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
        log: { level: 'info' },
        shutdown: { gracePeriodMs: 200 },
        mesh: { services },
        ...over,
      }));
      return file;
    };
    const started = /"msg":"proxy started".*?"outbound":(\d+),"inbound":(\d+),"admin":(\d+)/;
    // WREN_BENCH_NODE_ARGS adds Node flags to the sidecars (e.g. --trace-gc), WREN_BENCH_OUTBOUND_NODE_ARGS to the outbound ones only.
    const flags = (v: string | undefined) => v?.split(' ').filter(Boolean) ?? [];
    // The sidecars' own launcher flags first (as the image gives them), so WREN_BENCH_NODE_ARGS can override them.
    const common = [...SIDECAR_NODE_FLAGS, ...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []), ...flags(process.env.WREN_BENCH_NODE_ARGS)];
    /** A Wren pair (inbound first: the outbound's endpoints name its port); `extra` adds node flags to both sidecars, `over` config to both. */
    const wrenPair = async (tag: string, extra: string[], over: Record<string, unknown> = {}, routed = false, bin = wren, env?: Record<string, string>) => {
      const server = await start([bin, 'proxy', '--config', await proxyCfg('web', [], `web${tag}`, over)], started, [...common, ...extra], env);
      const ep = (port: number) => [{ address: '127.0.0.1', port, proxyPort: Number(server.match[2]), identity: files.web.spiffeId }];
      const services = routed
        ? routedServices(ep, h1Port, grpcPort)
        : [
            { name: 'web', ports: [{ port: 80, protocol: 'http1', endpoints: ep(h1Port) }] },
            { name: 'echo', ports: [{ port: 50051, protocol: 'grpc', endpoints: ep(grpcPort) }] },
          ];
      const client = await start([bin, 'proxy', '--config', await proxyCfg('client', services, `client${tag}`, over)], started, [...common, ...extra, ...flags(process.env.WREN_BENCH_OUTBOUND_NODE_ARGS)], env);
      console.log(`wren sidecars${extra.length ? ` (${extra.join(' ')})` : ''}: outbound pid ${client.pid}, inbound pid ${server.pid}`);
      return { procs: [client, server], port: Number(client.match[1]) };
    };
    /** The telemetry rows' pairs (issue 13): the same pair with tracing or access logs configured on both sidecars. */
    const telemetryPairs = async (): Promise<Path[]> => {
      const sink = await start([here('./otlp-sink.js')], /ready (\d+)/);
      const collector = { address: `127.0.0.1:${sink.match[1]}`, plaintext: true };
      const out: Path[] = [];
      for (const pct of [1, 100]) {
        const p = await wrenPair(`-trace${pct}`, [], { telemetry: { tracing: { samplingPercent: pct } }, tracing: { collector } });
        await warmTracing(p.port);
        out.push({ name: `wren pair tracing ${pct}%`, procs: p.procs, h1Port: p.port, grpcPort: p.port });
      }
      out.push(await accessLogPair());
      return out;
    };
    /**
     * Access logs on (`telemetry.accessLog.enabled`), written to the sidecars' stdout, which is
     * read and discarded here. Measured only once a probe request has produced a line (within
     * 3 s: lines go out in batches, config accessLogFlush): a build that accepts the setting
     * but logs nothing would show the plain pair's figure.
     */
    const accessLogPair = async (): Promise<Path> => {
      const name = 'wren pair access log';
      let p: Awaited<ReturnType<typeof wrenPair>>;
      try {
        p = await wrenPair('-accesslog', [], { telemetry: { accessLog: { enabled: true, samplingPercent: 100 } } });
      } catch (e) {
        return { name, procs: [], missing: `the sidecar refused telemetry.accessLog: ${String((e as Error).message).split('\n').slice(-3).join(' ').slice(0, 200)}` };
      }
      let wrote = false;
      for (const np of p.procs) {
        // Stop accumulating stdout for the ready pattern: an access log is megabytes per load.
        np.child.stdout!.removeAllListeners('data');
        np.child.stdout!.on('data', () => (wrote = true));
      }
      await probe(p.port, 'web');
      // Lines are written in batches, at the latest accessLogFlush.intervalMs (1 s by default) after the first.
      for (let waited = 0; !wrote && waited < 3000; waited += 100) await new Promise((r) => setTimeout(r, 100));
      return wrote
        ? { name, procs: p.procs, h1Port: p.port, grpcPort: p.port }
        : { name, procs: [], missing: 'telemetry.accessLog.enabled is accepted but no access-log line reached stdout after a probe request (no access log in this build)' };
    };
    const main = await wrenPair('', []);
    // WREN_BENCH_COMPARE_NODE_ARGS="--max-semi-space-size=4 ...": a second Wren pair with those node flags, measured in the same run.
    const variantArgs = flags(process.env.WREN_BENCH_COMPARE_NODE_ARGS);
    // WREN_BENCH_COMPARE_CONFIG='{"protocol":{"meshHttp1":"h1"}}': the second pair with that proxy config (top-level keys replace the defaults').
    const variantCfg = process.env.WREN_BENCH_COMPARE_CONFIG ? (JSON.parse(process.env.WREN_BENCH_COMPARE_CONFIG) as Record<string, unknown>) : undefined;
    // WREN_BENCH_COMPARE_WREN=/other/checkout/dist/cli/wren.js: the second pair runs that build (a before/after A/B in one interleaved run).
    const variantBin = process.env.WREN_BENCH_COMPARE_WREN;
    // WREN_BENCH_COMPARE_ENV="MALLOC_ARENA_MAX=2 ...": the second pair with those environment variables.
    const envVars = flags(process.env.WREN_BENCH_COMPARE_ENV);
    const variantEnv = envVars.length > 0 ? Object.fromEntries(envVars.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) : undefined;
    const variantName = [...variantArgs, ...(variantCfg ? [JSON.stringify(variantCfg)] : []), ...(variantBin ? [`build ${variantBin}`] : []), ...(envVars.length > 0 ? [`env ${envVars.join(' ')}`] : [])].join(' ');
    const variant = variantName ? await wrenPair('-variant', variantArgs, variantCfg, false, variantBin ?? wren, variantEnv) : null;
    // A variant that writes access logs: its stdout is read and dropped, not kept (megabytes per load).
    if (variant && JSON.stringify(variantCfg ?? {}).includes('"accessLog"')) for (const np of variant.procs) np.child.stdout!.removeAllListeners('data').on('data', () => undefined);
    const telemetry = TELEMETRY ? await telemetryPairs() : [];
    const routedPair = ROUTES ? await wrenPair('-routes', [], {}, true) : null;
    const workers = CONCURRENCY > 1 ? await wrenPair(`-c${CONCURRENCY}`, [], { concurrency: CONCURRENCY }) : null;
    const naiveIn = await start([here('./naive-pair.js'), 'inbound', String(h1Port), files.web.certFile, files.web.keyFile, pki.caCertFile], /ready (\d+)/);
    const naiveOut = await start([here('./naive-pair.js'), 'outbound', naiveIn.match[1], files.client.certFile, files.client.keyFile, pki.caCertFile], /ready (\d+)/);
    // The floor of a Node pair: bytes forwarded over pooled mTLS keep-alive connections (bench/bytes-pair.ts).
    const bytesIn = await start([here('./bytes-pair.js'), 'inbound', String(h1Port), files.web.certFile, files.web.keyFile, pki.caCertFile], /ready (\d+)/, common);
    const bytesOut = await start([here('./bytes-pair.js'), 'outbound', bytesIn.match[1], files.client.certFile, files.client.keyFile, pki.caCertFile], /ready (\d+)/, common);
    // The same with the mesh hop multiplexed on one mTLS connection, frames of a turn in one write (bench/bytes-mux-pair.ts).
    const muxIn = await start([here('./bytes-mux-pair.js'), 'inbound', String(h1Port), files.web.certFile, files.web.keyFile, pki.caCertFile], /ready (\d+)/, common);
    const muxOut = await start([here('./bytes-mux-pair.js'), 'outbound', muxIn.match[1], files.client.certFile, files.client.keyFile, pki.caCertFile], /ready (\d+)/, common);
    const haproxyMissing = missingTools.get('haproxy');
    const hap = haproxyMissing ? null : await startHaproxyPair(procs, dir, { backendPort: h1Port, grpcBackendPort: grpcPort, caFile: pki.caCertFile, client: files.client, server: files.web });
    const paths: Path[] = [
      { name: 'direct', procs: [], h1Port, grpcPort },
      { name: 'wren pair', procs: main.procs, h1Port: main.port, grpcPort: main.port },
      ...telemetry,
      ...(routedPair ? [{ name: 'wren pair 10-rule HTTPRoute', procs: routedPair.procs, h1Port: routedPair.port, grpcPort: routedPair.port }] : []),
      ...(variant ? [{ name: `wren pair ${variantName}`, procs: variant.procs, h1Port: variant.port, grpcPort: variant.port }] : []),
      ...(workers ? [{ name: `wren pair concurrency ${CONCURRENCY}`, procs: workers.procs, h1Port: workers.port, grpcPort: workers.port }] : []),
      { name: 'naive pair', procs: [naiveOut, naiveIn], h1Port: Number(naiveOut.match[1]), noGrpc: 'the naive pair is node:http/https, HTTP/1.1 only' },
      { name: 'bytes pair', procs: [bytesOut, bytesIn], h1Port: Number(bytesOut.match[1]), noGrpc: 'the bytes pair forwards HTTP/1.1 with Content-Length only', noClose: 'the bytes pair pools keep-alive connections and does not handle Connection: close' },
      { name: 'bytes mux pair', procs: [muxOut, muxIn], h1Port: Number(muxOut.match[1]), noGrpc: 'the bytes mux pair forwards HTTP/1.1 with Content-Length only', noClose: 'the bytes mux pair pools keep-alive connections and does not handle Connection: close' },
      hap ? { name: 'haproxy pair', procs: hap.pids.map((pid) => ({ pid })), h1Port: hap.outboundPort, grpcPort: hap.grpcPort } : { name: 'haproxy pair', procs: [], missing: haproxyMissing },
    ];
    const idleRss = Object.fromEntries(paths.filter((p) => p.procs.length).map((p) => [p.name, p.procs.map((x) => statusKb(x.pid, 'VmRSS'))]));
    const idleAnon = Object.fromEntries(paths.filter((p) => p.procs.length).map((p) => [p.name, p.procs.map((x) => statusKb(x.pid, 'RssAnon'))]));

    const grpcFrame = join(dir, 'grpc.bin');
    // gRPC length-prefixed message: flag 0, length 4, then EchoRequest{message:"ping"}.
    await writeFile(grpcFrame, Buffer.from([0, 0, 0, 0, 6, 0x0a, 4, 0x70, 0x69, 0x6e, 0x67]));
    const h1Url = (port: number) => `http://127.0.0.1:${port}/`;
    const h1Headers = [':authority: web'];
    const grpcUrl = (port: number) => `http://127.0.0.1:${port}/wren.test.Echo/Unary`;
    const grpc = { h1: false, headers: ['content-type: application/grpc', 'te: trailers', ':authority: echo:50051'], data: grpcFrame, };
    const h1 = { h1: true, headers: h1Headers };
    // 1000 req/s over 16 connections with evenly spread arrivals (62.5 req/s each, started 1 ms apart).
    const spread16 = { clients: 16, streams: 1, rps: 1000 / 16, spread: true };
    const loads: Load[] = [
      { name: 'http1 saturation (32 conns)', grpc: false, tool: 'wrk', run: (port, seconds) => wrk(h1Url(port), { connections: 32, seconds, host: 'web' }) },
      // Large bodies: frames that span reads, flow-control windows and the copies a body costs.
      { name: 'http1 1 MiB downloads (4 conns)', grpc: false, tool: 'wrk', run: (port, seconds) => wrk(`${h1Url(port)}1m`, { connections: 4, seconds, host: 'web' }) },
      { name: 'http1 1 MiB uploads (4 conns)', grpc: false, tool: 'wrk', run: (port, seconds) => wrk(h1Url(port), { connections: 4, seconds, host: 'web', postBytes: 1 << 20 }) },
      // Connection churn: a client that does not keep connections alive pays an accept, a
      // detection and a close in the outbound per request (docs/benchmarks.md, "A lead: a new connection costs").
      { name: 'http1 new connection per request (16 conns)', grpc: false, tool: 'wrk', closes: true, run: (port, seconds) => wrk(h1Url(port), { connections: 16, seconds, host: 'web', close: true }) },
      { name: 'http1 sequential', grpc: false, tool: 'h2load', warmUpMs: H2LOAD_WARM_UP_SECONDS * 1000, run: (port, seconds) => h2load(h1Url(port), { ...h1, seconds, clients: 1, streams: 1 }) },
      { name: 'http1 1000 rps bursty (10 conns)', grpc: false, tool: 'h2load', warmUpMs: H2LOAD_WARM_UP_SECONDS * 1000, run: (port, seconds) => h2load(h1Url(port), { ...h1, seconds, clients: 10, streams: 1, rps: 100 }) },
      { name: 'http1 1000 rps paced (4 conns)', grpc: false, tool: 'h2load', run: (port, seconds) => pacedH2load(h1Url(port), { h1: true, n: 4, rate: 1000, seconds, headers: h1Headers }) },
      { name: 'http1 1000 rps (16 conns)', grpc: false, tool: 'h2load', run: (port, seconds) => h2load(h1Url(port), { ...h1, seconds, ...spread16 }) },
      { name: 'grpc saturation', grpc: true, tool: 'h2load', warmUpMs: H2LOAD_WARM_UP_SECONDS * 1000, run: (port, seconds) => h2load(grpcUrl(port), { ...grpc, seconds, clients: 4, streams: 16 }) },
      { name: 'grpc 1000 rps (16 conns)', grpc: true, tool: 'h2load', run: (port, seconds) => h2load(grpcUrl(port), { ...grpc, seconds, ...spread16 }) },
    ];

    const rows: Row[] = [];
    // The p99 of each round of the paced loads, in the order run: the row takes the median
    // round, and a pair's first round (its code still compiling) can differ from the rest.
    const roundP99s: string[] = [];
    for (const load of loads) {
      const label = (p: Path) => `${load.name}: ${p.name}`;
      const picked = paths.filter((p) => !ONLY || ONLY.test(label(p)));
      const why = (p: Path) => missingTools.get(load.tool) ?? p.missing ?? (load.grpc ? p.noGrpc : undefined) ?? (load.closes ? p.noClose : undefined);
      const runnable = picked.filter((p) => !why(p));
      const port = (p: Path) => (load.grpc ? p.grpcPort : p.h1Port)!;
      const warmUp = (p: Path) => (WARM_UP_SECONDS > 0 ? () => load.run(port(p), WARM_UP_SECONDS) : undefined);
      const runs = await interleave(ROUNDS, runnable.map((p) => [p.name, () => measure(() => load.run(port(p), SECONDS), p.procs, load.warmUpMs), warmUp(p)] as const));
      for (const p of picked) {
        const notMeasured = why(p);
        rows.push(notMeasured ? { load: load.name, path: p.name, notMeasured } : { load: load.name, path: p.name, ...medianOf(runs.get(p.name)!, ['done', 'failed']) });
        if (!notMeasured && load.name.includes(' rps') && ROUNDS > 1) roundP99s.push(`${label(p)}: ${runs.get(p.name)!.map((r) => r.p99.toFixed(2)).join(' / ')}`);
      }
    }
    console.log(`\n== data path: h2load/wrk on loopback, each row the median of ${ROUNDS} interleaved rounds of ${SECONDS} s, after ${WARM_UP_SECONDS > 0 ? `an unmeasured ${WARM_UP_SECONDS} s warm-up of each path` : 'no warm-up'} ==`);
    printRows(rows);
    if (roundP99s.length > 0) console.log(`\np99 ms of each round, in the order run:\n${roundP99s.map((l) => `- ${l}`).join('\n')}`);
    const mb = (o: Record<string, number[]>) => Object.entries(o).map(([k, v]) => `${k} ${v.map((x) => x.toFixed(0)).join('/')}`).join(', ');
    console.log(`\nidle RSS MB (outbound/inbound): ${mb(idleRss)}; idle private (RssAnon) MB: ${mb(idleAnon)}`);
    const aims = printAims(rows);
    printBudgets(rows, availableParallelism());
    const telemetryCost = TELEMETRY || ROUTES ? printTelemetryCost(rows) : [];
    return { rows, idleRss, idleAnon, aims, telemetryCost };
  } finally {
    // SIGTERM lets a profiled sidecar drain and write its profile; the rest is killed outright.
    for (const p of procs) p.kill(PROFILE_DIR ? 'SIGTERM' : 'SIGKILL');
    if (PROFILE_DIR) await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))));
  }
}

/**
 * Warms a tracing pair the way hours of traffic would: at 1 % a few seconds of load make
 * only a few hundred spans, so the SDK's span and protobuf code and the exporter (loaded on
 * the first export) would still be cold, interpreted code when measured. 2000 requests
 * marked sampled by the caller (honoured whatever the percent), then one batch delay (5 s)
 * for their export.
 */
async function warmTracing(port: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  let sent = 0;
  const loop = async (): Promise<void> => {
    while (sent < 2000) {
      sent++;
      const id = (sent + 0x1000).toString(16).padStart(32, 'a');
      await probe(port, 'web', { traceparent: `00-${id}-00f067aa0ba902b7-01` }, agent);
    }
  };
  await Promise.all(Array.from({ length: 8 }, loop));
  agent.destroy();
  await new Promise((r) => setTimeout(r, 5500));
}

/** One HTTP/1.1 GET through a pair (the access-log probe, the tracing warm-up). */
function probe(port: number, host: string, headers: Record<string, string> = {}, agent?: Agent): Promise<void> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', headers: { host, ...headers }, ...(agent ? { agent } : {}) }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', () => resolve());
    req.end();
  });
}

/**
 * Telemetry cost (docs/benchmarks.md): each telemetry row against the plain Wren pair of the
 * same load and run: pair CPU per request (outbound + inbound) and its ratio, and the p99
 * added. Aims (issue 13): 1 % tracing under 5 % more CPU per request, access logs under 15 %;
 * (issue 15) the 10-rule HTTPRoute with a split under 10 %.
 */
function printTelemetryCost(rows: readonly Row[]): { load: string; path: string; cpuRatio: number | null; addedP99Ms: number | null; why?: string }[] {
  const isMeasured = (r: Row | undefined): r is Extract<Row, { rps: number }> => r !== undefined && !('notMeasured' in r);
  const cpu = (r: Extract<Row, { rps: number }>) => r.cpuUsPerReq.reduce((a, b) => a + b, 0);
  const out: { load: string; path: string; cpuRatio: number | null; addedP99Ms: number | null; why?: string }[] = [];
  console.log('\n== telemetry and routing cost: against the plain wren pair of the same load and run ==');
  console.log('| load | path | pair CPU µs/req | × plain | p99 ms | added p99 ms |\n|---|---|---:|---:|---:|---:|');
  for (const r of rows.filter((x) => /^wren pair (tracing|access log|10-rule HTTPRoute)/.test(x.path))) {
    const plain = rows.find((x) => x.load === r.load && x.path === 'wren pair');
    if (!isMeasured(r) || !isMeasured(plain)) {
      const why = !isMeasured(r) ? (r as { notMeasured: string }).notMeasured : plain ? `wren pair: ${(plain as { notMeasured: string }).notMeasured}` : 'wren pair not run (WREN_BENCH_ONLY)';
      console.log(`| ${r.load} | ${r.path} | not measured: ${why} ||||`);
      out.push({ load: r.load, path: r.path, cpuRatio: null, addedP99Ms: null, why });
      continue;
    }
    const ratio = cpu(r) / cpu(plain);
    const added = r.p99 - plain.p99;
    console.log(`| ${r.load} | ${r.path} | ${cpu(r).toFixed(1)} (plain ${cpu(plain).toFixed(1)}) | ${ratio.toFixed(3)} | ${r.p99.toFixed(2)} | ${added >= 0 ? '+' : ''}${added.toFixed(2)} |`);
    out.push({ load: r.load, path: r.path, cpuRatio: ratio, addedP99Ms: added });
  }
  console.log('\n| aim (CPU per request × plain wren pair) | load | measured | limit | |\n|---|---|---:|---:|---|');
  for (const [path, limit] of [['wren pair tracing 1%', 1.05], ['wren pair access log', 1.15], ['wren pair 10-rule HTTPRoute', 1.1]] as const)
    for (const load of ['http1 saturation (32 conns)', 'grpc saturation']) {
      const c = out.find((x) => x.load === load && x.path === path);
      const verdict = !c ? 'not measured: not run (WREN_BENCH_ONLY)' : c.cpuRatio === null ? `not measured: ${c.why}` : c.cpuRatio <= limit ? 'met' : '**not met**';
      console.log(`| ${path} | ${load} | ${c?.cpuRatio == null ? '–' : c.cpuRatio.toFixed(3)} × | ≤ ${limit} × | ${verdict} |`);
    }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDataPathBench().then(() => process.exit(0), (e) => {
    console.error(e);
    process.exit(1);
  });
}
