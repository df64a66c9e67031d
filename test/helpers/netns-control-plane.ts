/**
 * A real `wren control-plane` for the pod e2e test (test/pod-netns-e2e.test.ts), run the
 * way a cluster would have it, minus the API server: the cluster's state is Kubernetes
 * YAML in a directory (`--source dir:`), Services and EndpointSlices first and the Pods
 * once "created", proxies authenticate with bootstrap tokens, and the CA is generated in
 * the control plane's memory (no --ca-dir: no CA key on disk). It writes its trust bundle
 * (--write-trust-bundle), which is what the injector hands to proxies in WREN_TRUST_BUNDLE.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import type { NetnsLab, NsProcess } from './netns.js';

/** One Service backed by one pod: a ClusterIP Service and the EndpointSlice kube-controller-manager would write. */
export interface ServiceSpec {
  readonly name: string;
  readonly clusterIP: string;
  readonly pod: string;
  readonly podIP: string;
  /** Dual-stack pod: its IPv6 address, in an EndpointSlice of its own (addressType IPv6), as the EndpointSlice controller writes one per family. */
  readonly podIP6?: string;
  /** Named ports; the name gives the protocol (Istio's convention: http, grpc, tcp). */
  readonly ports: readonly { readonly name: string; readonly port: number; readonly targetPort: number }[];
}

export interface ControlPlaneOptions {
  readonly ns: string;
  /** Address on the bridge the pods reach it at (their sidecars run as the excluded UID, so this is not intercepted). */
  readonly ip: string;
  readonly dir: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly serviceAccounts: readonly string[];
  readonly services: readonly ServiceSpec[];
  /** How to run the CLI: [node, dist/cli/wren.js]. */
  readonly wren: readonly string[];
}

export interface MeshControlPlane {
  readonly proc: NsProcess;
  /** host:port of gRPC discovery + Identity, for WREN_CONTROL_PLANE. */
  readonly address: string;
  readonly trustBundleFile: string;
  readonly trustBundlePem: string;
  /** Bootstrap token per service account (the test's stand-in for projected service-account tokens). */
  readonly tokens: Readonly<Record<string, string>>;
  readonly meshDir: string;
  /** Writes the Pods into the cluster state and waits until the control plane routes `endpoints` endpoints. */
  addPods(pods: readonly V1Pod[], endpoints: number): Promise<void>;
  /** Its /metrics, summed over label sets per metric name. */
  metrics(): Promise<Map<string, number>>;
}

const until = async (what: string, cond: () => Promise<boolean> | boolean, proc: NsProcess, ms: number): Promise<void> => {
  const deadline = performance.now() + ms;
  for (;;) {
    if (!proc.running) throw new Error(`the control plane exited while waiting for ${what}\n${proc.log()}`);
    if (await cond()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${proc.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

/** Prometheus text exposition, summed per metric name (histogram series keep their _bucket/_sum/_count names). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[2]));
  }
  return out;
}

function serviceManifests(namespace: string, s: ServiceSpec): object[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: s.name, namespace, labels: { app: s.name } },
      spec: { type: 'ClusterIP', clusterIP: s.clusterIP, clusterIPs: [s.clusterIP], selector: { app: s.name }, ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: 'TCP' })) },
    },
    ...([['IPv4', s.podIP, 'x7k2p'], ['IPv6', s.podIP6, 'q9m4z']] as const).filter(([, ip]) => ip).map(([addressType, ip, suffix]) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${s.name}-${suffix}`, namespace, labels: { 'kubernetes.io/service-name': s.name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
      addressType,
      ports: s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
      endpoints: [{ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace, name: s.pod } }],
    })),
  ];
}

/** Atomic as far as the directory source can tell: it ignores dot-files, and rename is atomic. */
function writeManifests(dir: string, name: string, docs: readonly object[]): void {
  const tmp = join(dir, `.${name}.tmp`);
  writeFileSync(tmp, docs.map((d) => stringify(d)).join('---\n'));
  renameSync(tmp, join(dir, name));
}

export async function startMeshControlPlane(lab: NetnsLab, o: ControlPlaneOptions): Promise<MeshControlPlane> {
  const home = join(o.dir, 'control-plane');
  const meshDir = join(home, 'mesh');
  mkdirSync(meshDir, { recursive: true, mode: 0o700 });
  const tokens = Object.fromEntries(o.serviceAccounts.map((sa) => [sa, randomBytes(24).toString('hex')]));
  const tokensFile = join(home, 'bootstrap-tokens.yaml');
  writeFileSync(tokensFile, stringify({ tokens: o.serviceAccounts.map((sa) => ({ token: tokens[sa], namespace: o.namespace, serviceAccount: sa })) }), { mode: 0o600 });
  writeManifests(meshDir, 'services.yaml', o.services.flatMap((s) => serviceManifests(o.namespace, s)));
  const trustBundleFile = join(home, 'trust-bundle.pem');
  const address = `${o.ip}:15010`;
  const proc = lab.spawn('control plane', o.ns, [
    ...o.wren, 'control-plane',
    '--source', `dir:${meshDir}`,
    '--listen', address,
    '--admin', '127.0.0.1:15014',
    '--trust-domain', o.trustDomain,
    '--bootstrap-tokens', tokensFile,
    '--write-trust-bundle', trustBundleFile,
  ]);
  // Written once gRPC is listening (control-plane/main.ts), so it doubles as the readiness signal.
  // Generous: on a loaded shared machine a cold start (CA key, gRPC) has taken over 15 s.
  await until(`${trustBundleFile}`, () => existsSync(trustBundleFile), proc, 45_000);
  const trustBundlePem = readFileSync(trustBundleFile, 'utf8');
  const metrics = async () => {
    const [r] = await lab.httpGet(o.ns, ['http://127.0.0.1:15014/metrics']);
    if (r.status !== 200) throw new Error(`control plane /metrics: ${r.status} ${r.body}\n${proc.log()}`);
    return parseMetrics(r.body);
  };
  return {
    proc, address, trustBundleFile, trustBundlePem, tokens, meshDir, metrics,
    async addPods(pods, endpoints) {
      writeManifests(meshDir, 'pods.yaml', pods);
      // Endpoints of pods it does not know yet are held back (translate.ts): they count once the Pods are in.
      await until(`${endpoints} endpoints`, async () => (await metrics()).get('wren_cp_endpoints') === endpoints, proc, 30_000);
    },
  };
}
