/**
 * The two-pod lab of test/pod-netns-e2e.test.ts: network namespaces wired like two pods
 * on a node, each put through the injector, its init container's `wren iptables` run,
 * a mesh-unaware app under its own UID, the injected startup probe, a capture on the
 * bridge and the client app's calls. How the sidecars get their certificates and mesh
 * (control plane or files) is the caller's part.
 *
 *   pod netns …-a (frontend-0)     bridge netns …-br             pod netns …-b (web-0)
 *   eth0 10.77.0.2/24 <--veth--> va [ br0 10.77.0.1 ] vb <--veth--> eth0 10.77.0.3/24
 *        fd00:77::2/64                   fd00:77::1                       fd00:77::3/64
 *   app UID 1000, sidecar 2102      control plane :15010 (if any)  app UID 1001, sidecar 2102
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { injectPod } from '../../control-plane/injector/inject-pod.js';
import type { InjectOptions } from '../../control-plane/injector/options.js';
import { NETNS_TOOLS, NetnsLab, inNs, type NsProcess } from './netns.js';
import { clientAppSource, serverAppSource } from './netns-apps.js';
import { containerOf, scheduled } from './netns-kubelet.js';
import { startCapture, type Capture, type TcpStream } from './netns-pcap.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const WREN = join(ROOT, 'dist', 'cli', 'wren.js');
export const NODE = process.execPath;
const PROTO = join(ROOT, 'test', 'fixtures', 'echo.proto');

/** What the pod test runs besides the namespace tools: tcpdump on the bridge, unshare + mount for the volumes. */
export const POD_TOOLS = [...NETNS_TOOLS, 'tcpdump', 'unshare', 'mount'] as const;

export const UID = { proxy: 2102, client: 1000, server: 1001 } as const;
/** The pods are dual-stack, as in a dual-stack cluster: the IPv6 half of NET. */
export const NET6 = { controlPlane: 'fd00:77::1', client: 'fd00:77::2', server: 'fd00:77::3' } as const;
export const NET = { controlPlane: '10.77.0.1', client: '10.77.0.2', server: '10.77.0.3', webClusterIP: '10.77.100.10', frontendClusterIP: '10.77.100.11' } as const;
export const TD = 'cluster.local';
export const NAMESPACE = 'shop';
export const POD = { client: 'frontend-0', server: 'web-0' } as const;
export const SA = { client: 'frontend', server: 'web' } as const;
export const CLIENT_ID = `spiffe://${TD}/ns/${NAMESPACE}/sa/${SA.client}`;
export const SERVER_ID = `spiffe://${TD}/ns/${NAMESPACE}/sa/${SA.server}`;
/** The web pod's annotation: 7171 stays outside the mesh (the plaintext control). */
const SERVER_ANNOTATIONS = { 'wren.io/skip-inbound-ports': '7171' };
/** The web app's kubelet probes, on its API port and a TCP port: the injector rewrites them to the sidecar's 15020. */
const SERVER_PROBES = { readinessProbe: { httpGet: { path: '/healthz', port: 8080 } }, livenessProbe: { tcpSocket: { port: 7070 } } };

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export interface RunResult {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}
export type Wire = Awaited<ReturnType<Capture['stop']>>;

/** Sources that must be no older than their build, so the test never runs a stale CLI. */
const BUILT = ['cli/wren.ts', 'cli/proxy-await.ts', 'cli/iptables.ts', 'cli/proxy-command.ts', 'control-plane/main.ts', 'proxy/config/proxy-config.ts', 'proxy/identity/workload-identity.ts'];

function checkBuild(): void {
  for (const f of BUILT) {
    const built = join(ROOT, 'dist', f.replace(/\.ts$/, '.js'));
    if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
    if (statSync(join(ROOT, f)).mtimeMs > statSync(built).mtimeMs) throw new Error(`${built} is older than ${f}: run \`npm run build\` first`);
  }
  if (!existsSync(join(ROOT, 'dist', 'proxy', 'native', 'build', 'original-dst.node'))) throw new Error('the SO_ORIGINAL_DST addon is not built: run `npm run build`');
}

// Unique plaintext the apps exchange; none of it may ever be seen on the wire.
const tag = (what: string) => `wren-plaintext-${what}-${randomBytes(6).toString('hex')}`;

export class TwoPods {
  readonly lab: NetnsLab;
  available = false;
  ns = { a: '', b: '', br: '' };
  dir = '';
  readonly marks = { httpHeader: tag('h1-header'), httpBody: tag('h1-body'), vip: tag('vip'), grpc: tag('grpc'), tcp: tag('tcp'), http6: tag('h1-ipv6'), tcp6: tag('tcp-ipv6'), reply: tag('reply') };
  /** Sent on purpose in plaintext to an inbound skip port: proves the capture sees plaintext at all. */
  readonly control = tag('control-passthrough');
  injected!: { client: V1Pod; server: V1Pod };
  sidecars!: { a: NsProcess; b: NsProcess };
  server!: NsProcess;
  probeRuns: RunResult[] = [];
  /** More processes whose output failure messages include (e.g. the control plane). */
  readonly companions: NsProcess[] = [];
  clientResult!: Json;
  wire!: Wire;
  private capture: Capture | null = null;

  constructor(prefix: string) {
    this.lab = new NetnsLab(prefix);
  }

  /** Namespaces, links and the temp dir with the apps (the file checked netnsSkipReason(POD_TOOLS) first). */
  async setUp(): Promise<void> {
    this.available = true;
    checkBuild();
    const ns = (this.ns = { a: this.lab.add('a'), b: this.lab.add('b'), br: this.lab.add('br') });
    this.lab.veth({ ns: ns.a, dev: 'eth0', addrs: [`${NET.client}/24`, `${NET6.client}/64`] }, { ns: ns.br, dev: 'va' });
    this.lab.veth({ ns: ns.b, dev: 'eth0', addrs: [`${NET.server}/24`, `${NET6.server}/64`] }, { ns: ns.br, dev: 'vb' });
    this.lab.bridge(ns.br, 'br0', ['va', 'vb']);
    // The bridge's own address is where the control plane listens (a node-local stand-in for its Service).
    inNs(ns.br, ['ip', 'addr', 'add', `${NET.controlPlane}/24`, 'dev', 'br0']);
    inNs(ns.br, ['ip', '-6', 'addr', 'add', `${NET6.controlPlane}/64`, 'dev', 'br0', 'nodad']);
    // ClusterIPs live in their own range, reachable via the pod's default route, as in a cluster.
    for (const n of [ns.a, ns.b]) inNs(n, ['ip', 'route', 'add', 'default', 'dev', 'eth0']);
    this.dir = mkdtempSync(join(tmpdir(), 'wren-pod-e2e-'));
    chmodSync(this.dir, 0o755);
    writeFileSync(join(this.dir, 'server-app.mjs'), serverAppSource(ROOT, PROTO));
    writeFileSync(join(this.dir, 'client-app.mjs'), clientAppSource(ROOT, PROTO));
  }

  /** Both pods as a user would write them, through the injector (same code as the webhook), then "scheduled" with their IPs. */
  inject(options: Partial<InjectOptions> = {}): { client: V1Pod; server: V1Pod } {
    const one = (which: 'client' | 'server', ip: string, ip6: string, annotations: Record<string, string>): V1Pod => {
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: POD[which], namespace: NAMESPACE, labels: { 'wren.io/inject': 'enabled', app: SA[which] }, annotations },
        spec: { serviceAccountName: SA[which], containers: [{ name: 'app', image: `${SA[which]}:1`, ...(which === 'server' ? SERVER_PROBES : {}) }] },
      } as V1Pod;
      const r = injectPod(pod, { wrenCommand: [NODE, WREN], namespaceLabels: {}, ...options });
      if (!r.injected) throw new Error(`injector did not inject ${POD[which]}: ${r.reason}`);
      return scheduled(fjp.applyPatch(structuredClone(pod), r.patch as fjp.Operation[], true, false).newDocument, ip, ip6);
    };
    return (this.injected = { client: one('client', NET.client, NET6.client, {}), server: one('server', NET.server, NET6.server, SERVER_ANNOTATIONS) });
  }

  /** wren-init: the injected init container's arguments, as its user (root), inside each pod. */
  async runInit(): Promise<void> {
    for (const [n, pod] of [[this.ns.a, this.injected.client], [this.ns.b, this.injected.server]] as const) {
      const init = containerOf(pod, 'wren-init');
      const r = await this.lab.run(`wren-init in ${n}`, n, [NODE, WREN, ...init.args!], { uid: init.securityContext!.runAsUser! });
      if (r.code !== 0) throw new Error(`wren iptables failed in ${n} (exit ${r.code}): ${r.err}${r.out}`);
    }
  }

  /** The web app under its own UID; resolves once it listens. */
  startServerApp(): Promise<string> {
    this.server = this.lab.spawn('web app', this.ns.b, [NODE, join(this.dir, 'server-app.mjs'), this.marks.reply], { uid: UID.server });
    return this.server.waitForOutput(/^ready$/m, 15_000);
  }

  /** tcpdump on the bridge from now until runClient() has finished. */
  async startCapture(): Promise<void> {
    this.capture = await startCapture(this.ns.br, 'br0');
  }

  /** The native sidecar's startupProbe, run as kubelet would: exec in the pod as the proxy's UID, retried. */
  async runProbes(): Promise<void> {
    this.probeRuns = await Promise.all(
      ([[this.ns.a, this.injected.client, this.sidecars.a], [this.ns.b, this.injected.server, this.sidecars.b]] as const).map(async ([n, pod, sidecar]) => {
        const proxy = containerOf(pod, 'wren-proxy');
        // The probe's own --timeout is 2s with failureThreshold 120: retry like kubelet does.
        for (let i = 0; ; i++) {
          const r = await this.lab.run(`startupProbe in ${n}`, n, proxy.startupProbe!.exec!.command!, { uid: proxy.securityContext!.runAsUser! });
          if (r.code === 0 || i >= 5 || !sidecar.running) return r;
        }
      }),
    );
    for (const [i, r] of this.probeRuns.entries()) if (r.code !== 0) throw new Error(`startupProbe failed in ${[this.ns.a, this.ns.b][i]}: ${r.err}${r.out}${this.diag()}`);
  }

  /** The client app's calls (UID 1000), then the capture stops. */
  async runClient(): Promise<void> {
    const client = await this.lab.run('frontend app', this.ns.a, [NODE, join(this.dir, 'client-app.mjs'), NET.server, NET.webClusterIP, JSON.stringify({ ...this.marks, control: this.control }), NET6.server], {
      uid: UID.client,
      timeoutMs: 20_000,
    });
    if (!this.capture) throw new Error('startCapture() first');
    this.wire = await this.capture.stop();
    if (client.code !== 0) throw new Error(`client app failed (exit ${client.code}): ${client.err}${this.diag()}`);
    this.clientResult = JSON.parse(client.out.trim().split('\n').pop()!) as Json;
  }

  /** GETs on a sidecar's admin port (127.0.0.1:15000 inside the pod), as the proxy's UID. */
  async admin(pod: 'a' | 'b', paths: readonly string[]): Promise<Json[]> {
    const rs = await this.lab.httpGet(this.ns[pod], paths.map((p) => `http://127.0.0.1:15000${p}`), { uid: UID.proxy });
    return rs.map((r, i) => {
      if (r.status !== 200) throw new Error(`GET ${paths[i]} on the ${pod} sidecar: ${r.status} ${r.body}${this.diag()}`);
      return JSON.parse(r.body) as Json;
    });
  }

  /** What the processes said, for failure messages. */
  diag(): string {
    return this.available ? ['', this.sidecars?.a?.log(), this.sidecars?.b?.log(), this.server?.log(), ...this.companions.map((p) => p.log())].filter((x) => x !== undefined).join('\n') : '';
  }

  async cleanup(): Promise<void> {
    if (this.capture?.child.exitCode === null) this.capture.child.kill('SIGKILL');
    await this.lab.cleanup();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export const showStream = (s: TcpStream): string => `${s.src}:${s.sport} > ${s.dst}:${s.dport} (${s.data.length} bytes)`;
