import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fjp from 'fast-json-patch';
import { parseAllDocuments } from 'yaml';
import { injectCommand } from '../cli/inject.js';
import { createInjectorServer } from '../control-plane/injector/injector-server.js';
import { silentLogger } from '../common/logger.js';
import { proxyConfigFromEnv } from '../proxy/config/proxy-config.js';
import { callWebhook, WEBHOOK_HOST, type Json } from './helpers/webhook-client.js';


const HOST = WEBHOOK_HOST;
let dir: string;
let cert: string;
let key: string;
let native: Server;
let classic: Server;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wren-webhook-'));
  // A real self-signed serving certificate, as an operator would create for the Service.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST},IP:127.0.0.1`,
    '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt'),
  ], { stdio: 'pipe' });
  cert = readFileSync(join(dir, 'tls.crt'), 'utf8');
  key = readFileSync(join(dir, 'tls.key'), 'utf8');
  native = createInjectorServer({ tls: { cert, key }, port: 0, host: '127.0.0.1', logger: silentLogger });
  classic = createInjectorServer({ tls: { cert, key }, port: 0, host: '127.0.0.1', opts: { nativeSidecars: false }, logger: silentLogger });
  await Promise.all([once(native, 'listening'), once(classic, 'listening')]);
});

afterAll(async () => {
  await Promise.all([native, classic].map((s) => new Promise((r) => s.close(r))));
  rmSync(dir, { recursive: true, force: true });
});

const call = (server: Server, method: string, path: string, body?: string) => callWebhook((server.address() as AddressInfo).port, cert, method, path, body);

const reviewOf = (pod: Json, uid = 'e2e-1') =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'demo', object: pod },
  });

const makePod = (annotations: Record<string, string> = {}, labels: Record<string, string> = {}): Json => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'web-', namespace: 'demo', labels, annotations },
  spec: {
    serviceAccountName: 'web',
    containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }], readinessProbe: { httpGet: { path: '/ready', port: 8080 } } }],
  },
});

async function inject(server: Server, pod: Json): Promise<{ response: Json; pod: Json }> {
  const r = await call(server, 'POST', '/inject', reviewOf(pod));
  expect(r.status).toBe(200);
  const response = r.json!.response as Json;
  expect(r.json).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
  expect(response).toMatchObject({ uid: 'e2e-1', allowed: true });
  if (!response.patch) return { response, pod };
  expect(response.patchType).toBe('JSONPatch');
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
  return { response, pod: fjp.applyPatch(structuredClone(pod), ops, true, false).newDocument };
}

const names = (list: Json[] | undefined) => (list ?? []).map((c) => c.name);
const arg = (c: Json, flag: string) => c.args[c.args.indexOf(flag) + 1];

describe('injection webhook over HTTPS', () => {
  test('health check', async () => {
    const r = await call(native, 'GET', '/healthz');
    expect([r.status, r.text]).toEqual([200, 'ok\n']);
  });

  test('opted-in pod: native sidecar patch that a JSON Patch library applies', async () => {
    const { pod } = await inject(native, makePod({}, { 'wren.io/inject': 'enabled' }));
    expect(names(pod.spec.initContainers)).toEqual(['wren-init', 'wren-proxy']);
    expect(names(pod.spec.containers)).toEqual(['app']);
    expect(pod.spec.initContainers[1].restartPolicy).toBe('Always');
    expect(pod.metadata.annotations['wren.io/injected']).toBe('true');
    // kubelet's probe goes to the sidecar's metrics port, which runs it against the app: port 8080 stays behind mTLS.
    expect(pod.spec.containers[0].readinessProbe).toEqual({ httpGet: { path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' } });
    const env = pod.spec.initContainers[1].env.find((e: Json) => e.name === 'WREN_APP_PROBES');
    expect(JSON.parse(env.value)).toEqual({ '/app-health/app/readyz': { kind: 'http', port: 8080, path: '/ready', scheme: 'HTTP', timeoutSeconds: 1 } });
    expect(pod.spec.initContainers[0].args).not.toContain('--skip-inbound-ports');
  });

  test('wren.io/rewrite-app-probes "false": the probe port skips the redirect, and kubectl is warned that it bypasses mTLS and authorization', async () => {
    const { response, pod } = await inject(native, makePod({ 'wren.io/rewrite-app-probes': 'false' }));
    expect(pod.spec.containers[0].readinessProbe).toEqual({ httpGet: { path: '/ready', port: 8080 } });
    expect(arg(pod.spec.initContainers[0], '--skip-inbound-ports')).toBe('8080');
    expect(response.warnings).toEqual(['wren.io/rewrite-app-probes "false": probe ports 8080 skip the sidecar, open to plaintext from the cluster without mTLS or authorization']);
  });

  test('injecting the patched pod again yields no patch (idempotent)', async () => {
    const first = await inject(native, makePod());
    const second = await inject(native, first.pod);
    expect(second.response.patch).toBeUndefined();
    expect(second.pod).toEqual(first.pod);
  });

  test('opted-out pod: allowed, no patch', async () => {
    const r = await inject(native, makePod({ 'wren.io/inject': 'disabled' }));
    expect(r.response).toEqual({ uid: 'e2e-1', allowed: true });
  });

  test('port and CIDR exclusions', async () => {
    const { pod } = await inject(native, makePod({ 'wren.io/skip-inbound-ports': '22', 'wren.io/skip-outbound-ports': '5432', 'wren.io/skip-outbound-cidrs': '169.254.169.254/32' }));
    const init = pod.spec.initContainers[0];
    expect(arg(init, '--skip-inbound-ports')).toBe('22');
    expect(arg(init, '--skip-outbound-ports')).toBe('5432');
    expect(arg(init, '--skip-outbound-cidrs')).toBe('169.254.169.254/32');
  });

  test('wren.io/opaque-ports: the injected sidecar\'s env, as the proxy reads it, makes the pod\'s list its inbound\'s protocol.inboundOpaquePorts; a malformed value is a warning, the pod is still injected', async () => {
    const { response, pod } = await inject(native, makePod({ 'wren.io/opaque-ports': '4222,8000-8002' }));
    expect(response.warnings).toBeUndefined();
    const proxy = pod.spec.initContainers[1];
    const downward: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'demo', 'status.podIP': '10.0.0.5', 'spec.serviceAccountName': 'web' };
    const env = Object.fromEntries(proxy.env.map((e: Json) => [e.name, e.value ?? downward[e.valueFrom.fieldRef.fieldPath]]));
    expect(proxyConfigFromEnv({ ...env, WREN_TRUST_BUNDLE: cert }).protocol.inboundOpaquePorts).toEqual([4222, 8000, 8001, 8002]);

    const bad = await inject(native, makePod({ 'wren.io/opaque-ports': '4222,nats' }));
    expect(bad.response.warnings).toEqual(['wren.io/opaque-ports: ignoring "4222,nats" ("nats" is not a port or a range like 8000-8010; expected ports and ranges, comma-separated, like "3306,5432,8000-8010"); the proxy\'s default opaque ports apply']);
    expect(names(bad.pod.spec.initContainers)).toEqual(['wren-init', 'wren-proxy']);
    expect(bad.pod.spec.initContainers[1].env.map((e: Json) => e.name)).not.toContain('WREN_OPAQUE_PORTS');
  });

  test('classic mode: proxy first container with postStart await', async () => {
    const { pod } = await inject(classic, makePod());
    expect(names(pod.spec.initContainers)).toEqual(['wren-init']);
    expect(names(pod.spec.containers)).toEqual(['wren-proxy', 'app']);
    expect(pod.spec.containers[0].lifecycle.postStart.exec.command).toContain('await');
    expect((await inject(classic, pod)).response.patch).toBeUndefined();
  });

  test('malformed requests get 4xx, not a crash', async () => {
    expect((await call(native, 'GET', '/inject')).status).toBe(405);
    expect((await call(native, 'POST', '/inject', '{not json')).status).toBe(400);
    expect((await call(native, 'POST', '/inject', '{"kind":"Pod"}')).status).toBe(400);
    expect((await call(native, 'POST', '/mutate', '{}')).status).toBe(404);
    expect((await call(native, 'GET', '/healthz')).status).toBe(200);
  });

  test('a client that does not trust the CA is refused', async () => {
    await expect(
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: (native.address() as AddressInfo).port, path: '/healthz', servername: HOST }, resolve);
        req.on('error', reject);
        req.end();
      }),
    ).rejects.toThrow(/self[- ]signed/);
  });
});

describe('wren inject on a multi-document file', () => {
  const template = (name: string) => ({ metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: `${name}:1` }] } });
  const docs: Json[] = [
    { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { replicas: 2, template: template('web') } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80, targetPort: 8080 }] } },
    { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db' }, spec: { serviceName: 'db', template: template('db') } },
    { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'agent' }, spec: { template: template('agent') } },
    { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'once' }, spec: { template: { ...template('once'), spec: { ...template('once').spec, restartPolicy: 'Never' } } } },
    { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'nightly' }, spec: { schedule: '0 3 * * *', jobTemplate: { spec: { template: template('nightly') } } } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'debug', annotations: { 'wren.io/inject': 'disabled' } }, spec: template('debug').spec },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { a: 'b' } },
  ];

  test('injects every workload kind, honours opt-out, passes other kinds through; matches the webhook', async () => {
    const file = join(dir, 'app.yaml');
    writeFileSync(file, docs.map((d) => JSON.stringify(d)).join('\n---\n'));
    let out = '';
    let err = '';
    const code = await injectCommand([file], (s) => (out += s), (s) => (err += s));
    expect(code).toBe(0);
    const result = parseAllDocuments(out).map((d) => d.toJS() as Json);
    expect(result.map((d) => d.kind)).toEqual(docs.map((d) => d.kind));
    const tpl = (d: Json) => (d.kind === 'CronJob' ? d.spec.jobTemplate.spec.template : d.spec.template);
    for (const d of result.filter((x) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'].includes(x.kind)))
      expect([d.kind, names(tpl(d).spec.initContainers)]).toEqual([d.kind, ['wren-init', 'wren-proxy']]);
    expect(result[6]).toEqual(docs[6]);
    expect(result[1]).toEqual(docs[1]);
    expect(result[7]).toEqual(docs[7]);
    expect(err).toContain('5 pod template(s) injected');
    expect(err).toContain('Pod/debug: skipped (pod has wren.io/inject: disabled)');

    // The offline result is exactly what the webhook produces for the same pod.
    const viaWebhook = await inject(native, { metadata: template('web').metadata, spec: template('web').spec });
    expect(tpl(result[0])).toEqual(viaWebhook.pod);
  });
});
