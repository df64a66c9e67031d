import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fjp from 'fast-json-patch';
import { createLogger } from '../common/logger.js';
import { parseControlPlaneArgs, startControlPlane } from '../control-plane/main.js';
import type { ControlPlane } from '../control-plane/server.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { callWebhook, WEBHOOK_HOST, type Json } from './helpers/webhook-client.js';

/**
 * `wren control-plane --sidecar-mode auto` (the default) end to end: a real control plane in
 * Kubernetes mode reads the fake API server's GET /version through client-node's VersionApi,
 * and its injector webhook, called with an AdmissionReview over HTTPS as the API server calls
 * it, injects a native sidecar (an init container with restartPolicy Always) from Kubernetes
 * 1.29 on and a classic one before; with /version unreachable, classic, a warning and a
 * metric; a pod's wren.io/sidecar-mode still wins. (The periodic re-read is in
 * control-plane/injector/sidecar-mode.test.ts, on a fake clock.)
 */
let api: FakeKubeApi;
let dir: string;
let kubeconfig: string;
let cert: string;

beforeAll(async () => {
  api = await FakeKubeApi.start();
  dir = mkdtempSync(join(tmpdir(), 'wren-sidecar-auto-'));
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, api.kubeConfig().exportConfig());
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${WEBHOOK_HOST}`, '-addext', `subjectAltName=DNS:${WEBHOOK_HOST},IP:127.0.0.1`,
    '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt'),
  ], { stdio: 'pipe' });
  cert = readFileSync(join(dir, 'tls.crt'), 'utf8');
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A control plane as the install runs it (--source kubernetes, the webhook on), with its log lines and the webhook's port. */
async function controlPlane(extra: string[] = []): Promise<{ cp: ControlPlane; port: number; lines: Json[] }> {
  const lines: Json[] = [];
  const args = parseControlPlaneArgs([
    '--source', 'kubernetes', '--kubeconfig', kubeconfig, '--listen', '127.0.0.1:0', '--admin', 'off',
    '--webhook-listen', '127.0.0.1:0', '--webhook-cert-dir', dir, ...extra,
  ], {});
  const cp = await startControlPlane(args, createLogger({ level: 'info', sink: (l) => void lines.push(JSON.parse(l) as Json) }));
  const listening = lines.find((l) => l.msg === 'injector webhook listening');
  const port = Number(/:(\d+)$/.exec(String(listening?.address))?.[1]);
  expect(port).toBeGreaterThan(0);
  return { cp, port, lines };
}

const makePod = (annotations: Record<string, string> = {}): Json => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { generateName: 'web-', namespace: 'demo', labels: {}, annotations: { 'wren.io/inject': 'enabled', ...annotations } },
  spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }] }] },
});

/** The pod as the API server would store it after the webhook's patch. */
async function admit(port: number, pod: Json): Promise<Json> {
  const review = {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: { uid: 'auto-1', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'demo', object: pod },
  };
  const r = await callWebhook(port, cert, 'POST', '/inject', JSON.stringify(review));
  expect(r.status).toBe(200);
  const response = r.json!.response as Json;
  expect(response).toMatchObject({ uid: 'auto-1', allowed: true, patchType: 'JSONPatch' });
  return fjp.applyPatch(structuredClone(pod), JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')), true, false).newDocument;
}

/** 'native' (the proxy an init container with restartPolicy Always) or 'classic' (the first app container). */
function shape(pod: Json): 'native' | 'classic' {
  const init = (pod.spec.initContainers as Json[]).find((c) => c.name === 'wren-proxy');
  const app = (pod.spec.containers as Json[]).find((c) => c.name === 'wren-proxy');
  if (init && !app && init.restartPolicy === 'Always') return 'native';
  if (app && !init && pod.spec.containers[0].name === 'wren-proxy') return 'classic';
  throw new Error(`neither shape: ${JSON.stringify(pod.spec)}`);
}

const metric = async (cp: ControlPlane, name: string) => (await cp.metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#')).join('\n');

test.each([
  ['v1.28.9', 'classic', '1', '28'],
  ['v1.29.0', 'native', '1', '29'],
  // GKE and EKS decorate minor: "30+".
  ['v1.30.4-gke.1348000', 'native', '1', '30+'],
] as const)('Kubernetes %s: auto (the default) injects %s sidecars through the webhook; an annotation still wins', async (gitVersion, want, major, minor) => {
  api.version = { major, minor, gitVersion };
  api.versionUnavailable = false;
  const reads = api.versionReads;
  const { cp, port, lines } = await controlPlane();
  try {
    expect(api.versionReads).toBe(reads + 1);
    expect(shape(await admit(port, makePod()))).toBe(want);
    expect(await metric(cp, 'wren_cp_injector_native_sidecars')).toBe(`wren_cp_injector_native_sidecars ${want === 'native' ? 1 : 0}`);
    expect(lines).toContainEqual(expect.objectContaining({ level: 'info', msg: expect.stringMatching(new RegExp(`^--sidecar-mode auto: Kubernetes ${gitVersion.replace(/\./g, '\\.')}: injecting ${want}`)) }));
    // A pod's annotation still wins over what auto chose.
    const other = want === 'native' ? 'classic' : 'native';
    const annotated = await admit(port, makePod({ 'wren.io/sidecar-mode': other }));
    expect(shape(annotated)).toBe(other);
    // Native asked for on a cluster auto read as older than 1.29: given, with an admission warning (kept in wren.io/inject-warnings).
    const warned = (annotated.metadata.annotations as Record<string, string>)['wren.io/inject-warnings'] ?? '';
    if (other === 'native') expect(warned).toContain(`wren.io/sidecar-mode: native on Kubernetes ${gitVersion}, older than 1.29: its API server refuses an init container with probes (FailedCreate)`);
    else expect(warned).not.toMatch(/sidecar-mode/);
  } finally {
    await cp.close();
  }
});

test('/version unreachable (503): classic sidecars, a warning naming the fallback, and wren_cp_injector_version_errors_total', async () => {
  api.version = { major: '1', minor: '31', gitVersion: 'v1.31.2' };
  api.versionUnavailable = true;
  const { cp, port, lines } = await controlPlane(['--sidecar-mode', 'auto']);
  try {
    expect(shape(await admit(port, makePod()))).toBe('classic');
    expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', code: 'KUBERNETES_VERSION_UNKNOWN', msg: expect.stringMatching(/^--sidecar-mode auto: cannot read the Kubernetes version \(GET \/version: HTTP 503\); injecting classic sidecars, which every version runs, until it can be read$/) }));
    expect(await metric(cp, 'wren_cp_injector_version_errors_total')).toBe('wren_cp_injector_version_errors_total{reason="unreachable"} 1');
    expect(shape(await admit(port, makePod({ 'wren.io/sidecar-mode': 'native' })))).toBe('native');
  } finally {
    await cp.close();
    api.versionUnavailable = false;
  }
});

test('--sidecar-mode native / classic: the version is not asked, and the flag decides', async () => {
  api.version = { major: '1', minor: '28', gitVersion: 'v1.28.9' };
  const reads = api.versionReads;
  for (const mode of ['native', 'classic'] as const) {
    const { cp, port } = await controlPlane(['--sidecar-mode', mode]);
    try {
      expect(shape(await admit(port, makePod()))).toBe(mode);
    } finally {
      await cp.close();
    }
  }
  expect(api.versionReads).toBe(reads);
});

test('a /version that is accepted and never answered: the webhook starts after the 5 s bound with classic sidecars, and the read given up on is closed, not left open', async () => {
  api.version = { major: '1', minor: '31', gitVersion: 'v1.31.2' };
  api.holdVersion = true;
  const reads = api.versionReads;
  const started = performance.now();
  const { cp, port, lines } = await controlPlane();
  try {
    expect(performance.now() - started).toBeGreaterThanOrEqual(4900);
    expect(api.versionReads).toBe(reads + 1);
    expect(shape(await admit(port, makePod()))).toBe('classic');
    expect(lines).toContainEqual(expect.objectContaining({ code: 'KUBERNETES_VERSION_UNKNOWN', msg: expect.stringMatching(/GET \/version: no answer within 5000 ms/) }));
    // The request given up on ends (client-node sets no timeout of its own): else each period
    // left one more request open on the hung API server. Awaited: its close event, or 2 s.
    const held = [...api.heldVersions];
    await Promise.all(held.map((res) => new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the /version request given up on is still open 2 s later')), 2000);
      res.once('close', () => (clearTimeout(t), resolve()));
    })));
    expect(api.heldVersions.size).toBe(0);
  } finally {
    await cp.close();
    api.holdVersion = false;
  }
}, 20_000);
