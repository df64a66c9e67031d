import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { CertificateAuthority, createRootCa, issueWorkload } from '../certs/index.js';
import { createLogger } from '../common/logger.js';
import { parseService } from '../contract/parse.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import { RoundRobinCluster } from '../proxy/outbound/round-robin-cluster.js';
import type { ClusterFactory } from '../proxy/outbound/cluster-set.js';
import { Proxy } from '../proxy/proxy.js';
import { TlsIdentity } from '../proxy/tls/tls-identity.js';
import { HealthMesh } from './health-mesh.js';

/**
 * Resilience benchmark: one outbound sidecar in this process, three in-process HTTP/1
 * backends reached unmeshed (so TLS does not drown the figures), and a load generator
 * with bounded concurrency. Each scenario runs against
 *   - `round-robin`: RoundRobinCluster, no retry policy (the plain path), and
 *   - `peak-ewma`: the default resilience Cluster (peak-EWMA P2C, outlier detection,
 *     limits, retry budget), with `retryOn: [5xx]` in scenario 2.
 * Scenarios: (1) one backend adds 50 ms: client p50/p99; (2) one backend starts answering
 * 503 a quarter into the run: failed share, time and requests until it is ejected;
 * (3) all healthy: CPU per request (process.cpuUsage, whole process) of both paths.
 * (4) issue 14, mesh-wide health: ten client sidecars subscribed to a real control plane
 * (gRPC), three backends of one service in child processes, one killed with SIGKILL under
 * load (its readiness never changes), with and without shared health reports (the control
 * plane's withdrawal on, or `enabled: false`): failed client requests, and the time from
 * the kill until the last proxy stops sending to the dead backend (bench/health-mesh.ts).
 * Run: `npm run bench -- resilience` (or `node dist/bench/resilience.js [mesh-health]`).
 */
const CONCURRENCY = 16;
const N_LATENCY = 3000;
const N_FAILURE = 4000;
const N_CPU = 5000;
/** Offered load in scenario 1 (requests/s), below what round robin sustains with a 50 ms backend. */
const RATE = 600;

interface Backend {
  port: number;
  hits: number;
  delayMs: number;
  fail: boolean;
  close(): Promise<void>;
}

async function backend(): Promise<Backend> {
  const sockets = new Set<Socket>();
  const b = { hits: 0, delayMs: 0, fail: false } as Backend;
  const server: Server = createServer((req, res) => {
    b.hits++;
    req.resume();
    const reply = () => {
      res.writeHead(b.fail ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(b.fail ? 'failing' : 'ok');
    };
    if (b.delayMs > 0) setTimeout(reply, b.delayMs);
    else reply();
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  b.port = (server.address() as AddressInfo).port;
  b.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    });
  return b;
}

type Kind = 'round-robin' | 'peak-ewma';

async function startSidecar(kind: Kind, backends: readonly Backend[], policy: Record<string, unknown>, onLog: (msg: Record<string, unknown>) => void): Promise<Proxy> {
  const root = createRootCa({ trustDomain: 'cluster.local' });
  const ca = new CertificateAuthority({ certPem: root.certPem, keyPem: root.keyPem, trustDomain: 'cluster.local' });
  const w = issueWorkload(ca, 'spiffe://cluster.local/ns/default/sa/bench');
  const tls = new TlsIdentity({ keyPem: w.keyPem, certChainPem: [w.certPem, ...w.chainPems].join('\n'), trustBundlePem: root.certPem });
  const config = parseProxyConfig(
    {
      identity: { namespace: 'default', serviceAccount: 'bench', trustDomain: 'cluster.local' },
      tls: { certFile: '(in memory)', keyFile: '(in memory)', trustBundleFile: '(in memory)' },
      listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
    },
    'bench',
  );
  const sink = (line: string) => onLog(JSON.parse(line) as Record<string, unknown>);
  const clusterFactory: ClusterFactory | undefined = kind === 'round-robin' ? (name) => new RoundRobinCluster(name) : undefined;
  const proxy = await Proxy.start({ config, tls, logger: createLogger({ level: 'info', sink }), clusterFactory, staticMesh: false });
  const svc = parseService(
    {
      name: 'bench',
      ports: [{ port: 80, protocol: 'http1', endpoints: backends.map((b) => ({ address: '127.0.0.1', port: b.port })) }],
      policy,
    },
    'bench',
  );
  proxy.applySnapshot({ version: '1', source: 'bench', services: [svc] });
  return proxy;
}

interface LoadResult {
  latencies: number[];
  failed: number;
  wallMs: number;
  cpuUs: number;
}

/**
 * `n` GETs through the sidecar, at most CONCURRENCY in flight; `onProgress(i)` after each.
 * With `rate`, request i starts no earlier than i / rate s after the first (open loop
 * below capacity, so both balancers carry the same load and latencies compare fairly).
 */
async function load(port: number, n: number, onProgress?: (done: number) => void, rate?: number): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const latencies: number[] = [];
  let failed = 0;
  let started = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const s = performance.now();
      const req = request({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'bench.default.svc.cluster.local' } }, (res) => {
        res.resume();
        res.on('end', () => {
          latencies.push(performance.now() - s);
          if ((res.statusCode ?? 0) >= 500) failed++;
          onProgress?.(latencies.length);
          resolve();
        });
      });
      req.on('error', reject);
      req.end();
    });
  const worker = async () => {
    while (started < n) {
      const i = started++;
      if (rate) {
        const wait = t0 + (i * 1000) / rate - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      }
      await one();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  return { latencies, failed, wallMs, cpuUs: cpu.user + cpu.system };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const r1 = (x: number) => Math.round(x * 10) / 10;

async function withSetup<T>(kind: Kind, policy: Record<string, unknown>, fn: (proxy: Proxy, bs: Backend[], logs: { at: number; msg: Record<string, unknown> }[]) => Promise<T>): Promise<T> {
  const bs = [await backend(), await backend(), await backend()];
  const logs: { at: number; msg: Record<string, unknown> }[] = [];
  const proxy = await startSidecar(kind, bs, policy, (msg) => logs.push({ at: performance.now(), msg }));
  try {
    return await fn(proxy, bs, logs);
  } finally {
    await proxy.close();
    await Promise.all(bs.map((b) => b.close()));
  }
}

async function slowBackend(kind: Kind) {
  return withSetup(kind, {}, async (proxy, bs) => {
    bs[2].delayMs = 50;
    // Warm up: connections, and latency estimates that start at the 30 ms default RTT.
    await load(proxy.outboundPort, 1500, undefined, RATE);
    const hits0 = bs.map((b) => b.hits);
    const r = await load(proxy.outboundPort, N_LATENCY, undefined, RATE);
    return {
      p50Ms: r1(pct(r.latencies, 50)),
      p99Ms: r1(pct(r.latencies, 99)),
      slowShare: r1((100 * (bs[2].hits - hits0[2])) / N_LATENCY),
    };
  });
}

async function failingBackend(kind: Kind) {
  const policy = kind === 'peak-ewma' ? { retry: { retryOn: ['5xx'] } } : {};
  return withSetup(kind, policy, async (proxy, bs, logs) => {
    await load(proxy.outboundPort, 300);
    const bad = bs[2];
    let flippedAt = 0;
    let hitsAtFlip = 0;
    let hitsAtEject: number | null = null;
    const flipAfter = Math.floor(N_FAILURE / 4);
    const r = await load(proxy.outboundPort, N_FAILURE, (done) => {
      if (done === flipAfter) {
        bad.fail = true;
        flippedAt = performance.now();
        hitsAtFlip = bad.hits;
      }
      if (flippedAt && hitsAtEject === null && logs.some((l) => l.msg.msg === 'endpoint ejected')) hitsAtEject = bad.hits;
    });
    const ejection = logs.find((l) => l.msg.msg === 'endpoint ejected');
    return {
      failedPct: r1((100 * r.failed) / N_FAILURE),
      ejectedAfterMs: ejection ? r1(ejection.at - flippedAt) : null,
      failuresBeforeEjection: hitsAtEject === null ? null : hitsAtEject - hitsAtFlip,
      hitsOnFailingAfterFlip: bad.hits - hitsAtFlip,
    };
  });
}

async function cpuCost(kind: Kind) {
  return withSetup(kind, {}, async (proxy) => {
    await load(proxy.outboundPort, 1000);
    const r = await load(proxy.outboundPort, N_CPU);
    return { cpuUsPerRequest: Math.round(r.cpuUs / N_CPU), rps: Math.round((N_CPU / r.wallMs) * 1000) };
  });
}

/** Scenario (4) sizes: clients × rps each, observed for OBSERVE_MS after the kill, RUNS times per mode. */
const MESH = { clients: 10, backends: 3, rps: 20, warmMs: 1_500, observeMs: 8_000, runs: 5 } as const;

interface MeshRun {
  /** Client requests that failed (status other than 200, or an error), from load start to the end. */
  failed: number;
  sent: number;
  /** From the kill to the last attempt any proxy started on the dead backend (ms); null: still sending at the end. */
  lastProxyStoppedMs: number | null;
  /** Per proxy, from the kill to its last attempt on the dead backend (0: none after the kill). */
  perProxyMs: (number | null)[];
  /** Attempts all proxies made on the dead backend after the kill. */
  attemptsOnDead: number;
  /** Proxies that had the endpoint out at the end because the control plane withdrew it (not only their own ejection). */
  withdrawnIn: number;
  /** The first failures: status and wren-proxy-error, ms after the kill. */
  failures: string[];
}

/**
 * One run of scenario (4). A proxy "stops sending" at its last attempt on the dead backend
 * (its per-endpoint attempt count, failures + in flight, polled every 2 ms); it must also
 * hold the endpoint out (ejected or withdrawn) at the end, else it counts as still sending.
 */
async function meshHealthRun(mode: MeshMode): Promise<MeshRun> {
  const mesh = await HealthMesh.start({
    clients: MESH.clients, backends: MESH.backends, withdrawal: mode === 'alone' ? { enabled: false } : {}, policy: mode === 'shared+reset' ? { retry: { retryOn: ['reset'] } } : {},
  });
  try {
    const dead = mesh.backendPorts[MESH.backends - 1];
    mesh.startLoad(MESH.rps);
    await new Promise((r) => setTimeout(r, MESH.warmMs));
    const attempts = () => mesh.endpointStates(dead).map((e) => (e ? e.failures + e.successes + e.inflight : 0));
    const before = attempts();
    // Timed from the signal; attempts until the process is gone count as "still sending".
    const exited = mesh.kill(MESH.backends - 1);
    const t0 = performance.now();
    const last: (number | null)[] = before.map(() => 0);
    let prev = before;
    while (performance.now() - t0 < MESH.observeMs) {
      await new Promise((r) => setTimeout(r, 2));
      const now = attempts();
      const t = performance.now() - t0;
      now.forEach((n, i) => {
        if (n !== prev[i]) last[i] = t;
      });
      prev = now;
    }
    await exited;
    const totals = await mesh.stopLoad();
    const states = mesh.endpointStates(dead);
    const perProxyMs = last.map((t, i) => (states[i] && (!states[i]!.ready || states[i]!.health !== 'healthy') ? r1(t!) : null));
    return {
      failed: totals.failed,
      sent: totals.sent,
      lastProxyStoppedMs: perProxyMs.some((x) => x === null) ? null : Math.max(...(perProxyMs as number[])),
      perProxyMs,
      attemptsOnDead: prev.reduce((a, n, i) => a + n - before[i], 0),
      withdrawnIn: states.filter((e) => e && !e.ready).length,
      failures: totals.examples.map((x) => x.replace(/@([\d.]+)$/, (_m, at: string) => ` @${Math.round(Number(at) - t0)}ms`)),
    };
  } finally {
    await mesh.close();
  }
}

/**
 * shared: the defaults (withdrawal on, default retries); alone: the control plane's withdrawal
 * off (each proxy on its own outlier detection); shared+reset: shared, and the service's
 * retry policy adds `retryOn: [reset]` (requests in flight on the killed backend's
 * connections are retried: they are GETs).
 */
type MeshMode = 'shared' | 'alone' | 'shared+reset';
const MESH_MODES: readonly MeshMode[] = ['shared', 'alone', 'shared+reset'];

async function meshHealth(print: (line: string) => void): Promise<Record<MeshMode, MeshRun[]>> {
  const out: Record<MeshMode, MeshRun[]> = { shared: [], alone: [], 'shared+reset': [] };
  // Alternate the modes so machine noise hits them alike.
  for (let i = 0; i < MESH.runs; i++)
    for (const mode of MESH_MODES) {
      const r = await meshHealthRun(mode);
      out[mode].push(r);
      print(
        `(4) run ${i + 1} ${mode}: failed ${r.failed}/${r.sent}, last proxy stopped ${r.lastProxyStoppedMs ?? 'never'} ms, ` +
          `attempts on the dead backend ${r.attemptsOnDead}, withdrawn in ${r.withdrawnIn}/${MESH.clients}; per proxy ms: ${r.perProxyMs.map((x) => x ?? 'still').join(' ')}${r.failures.length ? `; failures: ${r.failures.join(', ')}` : ''}`,
      );
    }
  return out;
}

export async function runResilienceBench(print: (line: string) => void = console.log, only?: 'mesh-health'): Promise<Record<string, unknown>> {
  if (only === 'mesh-health') return { meshHealth: await meshHealthSection(print) };
  const kinds: Kind[] = ['round-robin', 'peak-ewma'];
  const out: Record<string, Record<string, unknown>> = {};
  for (const k of kinds) out[k] = { slowBackend: await slowBackend(k) };
  for (const k of kinds) out[k].failingBackend = await failingBackend(k);
  // CPU last and twice each, alternating, keeping the lower figure (less noise from GC/JIT).
  for (let i = 0; i < 2; i++)
    for (const k of kinds) {
      const c = await cpuCost(k);
      const prev = out[k].cpu as { cpuUsPerRequest: number } | undefined;
      if (!prev || c.cpuUsPerRequest < prev.cpuUsPerRequest) out[k].cpu = c;
    }
  const rows: [string, (k: Kind) => unknown][] = [
    ['(1) one backend +50 ms: p50 ms', (k) => (out[k].slowBackend as { p50Ms: number }).p50Ms],
    ['(1) p99 ms', (k) => (out[k].slowBackend as { p99Ms: number }).p99Ms],
    ['(1) share sent to the slow backend %', (k) => (out[k].slowBackend as { slowShare: number }).slowShare],
    ['(2) one backend starts 503: failed %', (k) => (out[k].failingBackend as { failedPct: number }).failedPct],
    ['(2) ms from first 503 to ejection', (k) => (out[k].failingBackend as { ejectedAfterMs: number | null }).ejectedAfterMs ?? 'never'],
    ['(2) requests it got before ejection', (k) => (out[k].failingBackend as { failuresBeforeEjection: number | null }).failuresBeforeEjection ?? '-'],
    ['(2) requests it got after the flip', (k) => (out[k].failingBackend as { hitsOnFailingAfterFlip: number }).hitsOnFailingAfterFlip],
    ['(3) CPU µs per request (whole process)', (k) => (out[k].cpu as { cpuUsPerRequest: number }).cpuUsPerRequest],
    ['(3) requests/s', (k) => (out[k].cpu as { rps: number }).rps],
  ];
  print(`resilience bench: at most ${CONCURRENCY} in flight; (1) ${N_LATENCY} requests at ${RATE}/s, (2) ${N_FAILURE}, (3) ${N_CPU} closed loop`);
  print(`${''.padEnd(42)}${kinds.map((k) => k.padStart(14)).join('')}`);
  for (const [label, f] of rows) print(`${label.padEnd(42)}${kinds.map((k) => String(f(k)).padStart(14)).join('')}`);
  return { ...out, meshHealth: await meshHealthSection(print) };
}

async function meshHealthSection(print: (line: string) => void): Promise<Record<MeshMode, MeshRun[]>> {
  print(`(4) ${MESH.clients} client sidecars × ${MESH.rps} req/s, ${MESH.backends} backends, one SIGKILLed after ${MESH.warmMs} ms, observed ${MESH.observeMs} ms, default retries and outlier detection`);
  const m = await meshHealth(print);
  const med = (xs: (number | null)[]) => {
    const s = xs.map((x) => x ?? Infinity).sort((a, b) => a - b);
    const v = s[Math.floor(s.length / 2)];
    return v === Infinity ? 'never' : String(v);
  };
  const rows: [string, (r: MeshRun[]) => string][] = [
    ['(4) failed client requests (per run)', (r) => r.map((x) => x.failed).join(' / ')],
    ['(4) ms kill -> last proxy stops (median)', (r) => med(r.map((x) => x.lastProxyStoppedMs))],
    ['(4) ms kill -> last proxy stops (per run)', (r) => r.map((x) => x.lastProxyStoppedMs ?? 'never').join(' / ')],
    ['(4) attempts on the dead backend (per run)', (r) => r.map((x) => x.attemptsOnDead).join(' / ')],
  ];
  print(`${''.padEnd(44)}${MESH_MODES.map((k) => k.padStart(34)).join('')}`);
  for (const [label, f] of rows) print(`${label.padEnd(44)}${MESH_MODES.map((k) => ` ${f(m[k]).padStart(33)}`).join('')}`);
  return m;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runResilienceBench(console.log, process.argv[2] === 'mesh-health' ? 'mesh-health' : undefined).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
