import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, createRootCa, issueWorkload } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger, silentLogger, type Logger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import { connectControlPlane } from '../proxy/discovery/connect-proxy.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { Proxy } from '../proxy/proxy.js';
import type { ClusterState, EndpointState } from '../proxy/resilience/cluster-state.js';
import { TlsIdentity } from '../proxy/tls/tls-identity.js';

/**
 * The issue-14 scenario, shared by test/health-withdrawal.test.ts and the resilience
 * benchmark: `clients` client sidecars (in this process, every port 0) subscribed over gRPC
 * to a real control plane (dir source), one service `api.default` whose `backends`
 * endpoints are plain HTTP servers in child processes (so one can be killed with SIGKILL:
 * its readiness in the source never changes), and a paced load through every client.
 */
export interface HealthMeshOptions {
  readonly clients: number;
  readonly backends: number;
  /** The control plane's healthWithdrawal settings (raw; { enabled: false } for the baseline). */
  readonly withdrawal?: Record<string, unknown>;
  /** The service's TrafficPolicy (raw YAML spelling), default {} (every default: retries, outlier detection). */
  readonly policy?: Record<string, unknown>;
  readonly logger?: Logger;
}

export interface LoadTotals {
  sent: number;
  failed: number;
  /** Status or error of the first few failures. */
  readonly examples: string[];
}

const BACKEND = `
const http = require('node:http');
const s = http.createServer((q, r) => { q.resume(); q.on('end', () => r.end('ok')); });
s.keepAliveTimeout = 60000;
s.listen(Number(process.argv[1] || 0), '127.0.0.1', () => process.stdout.write('port ' + s.address().port + '\\n'));
`;

export class HealthMesh {
  readonly proxies: Proxy[] = [];
  readonly clients: DiscoveryClient[] = [];
  readonly backendPorts: number[] = [];
  private readonly children: ChildProcess[] = [];
  private load: { stop: boolean; done: Promise<void>[] } | null = null;
  readonly totals: LoadTotals = { sent: 0, failed: 0, examples: [] };

  private constructor(
    readonly cp: ControlPlane,
    private readonly root: string,
  ) {}

  static async start(o: HealthMeshOptions): Promise<HealthMesh> {
    const root = await mkdtemp(join(tmpdir(), 'wren-health-mesh-'));
    const dir = join(root, 'mesh');
    await mkdir(dir);
    const children: ChildProcess[] = [];
    const ports: number[] = [];
    try {
      for (let i = 0; i < o.backends; i++) ports.push((await startBackend(children)).port);
    } catch (e) {
      for (const c of children) c.kill('SIGKILL');
      throw e;
    }
    await writeFile(join(dir, 'api.yaml'), serviceYaml(ports, o.policy ?? {}));
    const logger = o.logger ?? silentLogger;
    const cp = await ControlPlane.start({
      listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(14), logger,
      source: (ctx) => new DirSource({ ...ctx, dir, rescanMs: 60_000 }),
      healthWithdrawal: o.withdrawal,
    });
    const mesh = new HealthMesh(cp, root);
    mesh.children.push(...children);
    mesh.backendPorts.push(...ports);
    await cp.whenReady();
    const ca = createRootCa({ trustDomain: 'cluster.local' });
    const issuer = new CertificateAuthority({ certPem: ca.certPem, keyPem: ca.keyPem, trustDomain: 'cluster.local' });
    for (let i = 0; i < o.clients; i++) {
      const w = issueWorkload(issuer, 'spiffe://cluster.local/ns/default/sa/web');
      const tls = new TlsIdentity({ keyPem: w.keyPem, certChainPem: [w.certPem, ...w.chainPems].join('\n'), trustBundlePem: ca.certPem });
      const config = parseProxyConfig(
        {
          identity: { namespace: 'default', serviceAccount: 'web', trustDomain: 'cluster.local' },
          tls: { certFile: '(in memory)', keyFile: '(in memory)', trustBundleFile: '(in memory)' },
          listeners: { outbound: { address: '127.0.0.1', ipv6Address: '', port: 0 }, inbound: { address: '127.0.0.1', ipv6Address: '', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
          shutdown: { gracePeriodMs: 200 },
        },
        'health-mesh',
      );
      const proxy = await Proxy.start({ config, tls, logger: logger.child({ pod: `web-${i}` }), staticMesh: false });
      mesh.proxies.push(proxy);
      mesh.clients.push(connectControlPlane(proxy, { address: `127.0.0.1:${cp.grpcPort}`, namespace: 'default', pod: `web-${i}`, workload: null }));
    }
    await Promise.all(mesh.clients.map((c) => c.onFirstSnapshot()));
    return mesh;
  }

  /** Every client's view of `port`'s endpoint (admin /clusters data), null where it has none. */
  endpointStates(port: number): (EndpointState | null)[] {
    return this.proxies.map((p) => {
      const c = p.clusterStates()['api.default:80'] as ClusterState | undefined;
      return c?.endpoints.find((e) => e.port === port) ?? null;
    });
  }

  /** Paced GETs through every client: `perClientRps` each, `concurrency` in flight per client at most. */
  startLoad(perClientRps: number, concurrency = 2): void {
    if (this.load) throw new Error('load already running');
    const load = { stop: false, done: [] as Promise<void>[] };
    this.load = load;
    const t = this.totals;
    for (const p of this.proxies) {
      const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
      const workers: Promise<void>[] = [];
      const interval = (1000 * concurrency) / perClientRps;
      for (let k = 0; k < concurrency; k++) {
        workers.push(
          (async () => {
            await sleep((interval * k) / concurrency);
            let next = performance.now();
            while (!load.stop) {
              const r = await get(p.outboundPort, agent);
              t.sent++;
              if (r !== 200) {
                t.failed++;
                if (t.examples.length < 20) t.examples.push(`${String(r)}@${Math.round(performance.now())}`);
              }
              next += interval;
              const wait = next - performance.now();
              if (wait > 0) await sleep(wait);
              else next = performance.now();
            }
          })(),
        );
      }
      // The agent goes only when both workers are done (destroying it under one's request is a client-made failure).
      load.done.push(Promise.all(workers).then(() => agent.destroy()));
    }
  }

  async stopLoad(): Promise<LoadTotals> {
    const l = this.load;
    this.load = null;
    if (l) {
      l.stop = true;
      await Promise.all(l.done);
    }
    return { ...this.totals, examples: [...this.totals.examples] };
  }

  /** SIGKILL backend `i` (no readiness change anywhere) now; the promise resolves once it has exited. */
  kill(i: number): Promise<void> {
    const c = this.children[i];
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    return exited;
  }

  async close(): Promise<void> {
    await this.stopLoad();
    await Promise.all(this.clients.map((c) => c.stop()));
    await Promise.all(this.proxies.map((p) => p.close()));
    await this.cp.close(100);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(this.root, { recursive: true, force: true });
  }
}

function serviceYaml(ports: readonly number[], policy: Record<string, unknown>): string {
  return `apiVersion: policy.wren.io/v1alpha1
kind: MeshService
metadata: { name: api, namespace: default }
spec:
  ports:
    - name: http
      port: 80
      protocol: http1
      endpoints:
${ports.map((p) => `      - { address: 127.0.0.1, port: ${p} }`).join('\n')}
  policy: ${JSON.stringify(policy)}
`;
}

function startBackend(into: ChildProcess[], port = 0): Promise<{ port: number }> {
  const child = spawn(process.execPath, ['-e', BACKEND, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  into.push(child);
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /port (\d+)/.exec(buf);
      if (m) resolve({ port: Number(m[1]) });
    });
    child.once('exit', (code) => reject(new Error(`backend exited with ${code}`)));
  });
}

function get(port: number, agent: Agent): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'api.default.svc.cluster.local' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? 200 : `${res.statusCode} ${String(res.headers['wren-proxy-error'] ?? '')}`));
      res.on('error', (e) => resolve(e.message));
    });
    req.on('error', (e) => resolve(e.message));
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A JSON-lines logger into an array (the scenario's decisions are read back from it). */
export function memoryLogger(lines: Record<string, unknown>[], level: 'debug' | 'info' = 'info'): Logger {
  return createLogger({ level, sink: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
}
