import { jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { checkCommand } from '../cli/check/check-command.js';
import type { CheckOutcome } from '../cli/check/check-result.js';
import { manifestsDir } from '../cli/check/expected.js';
import { proxyConfigCommand } from '../cli/proxy-config.js';
import { proxyStatusCommand } from '../cli/proxy-status.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { certFingerprint } from '../contract/trust-anchors.js';
import { CLOCK_SKEW_MS } from '../certs/ca.js';
import { createRootCa } from '../certs/index.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { startProxy as startRawClient, waitFor, type TestProxy } from './control-plane-harness.js';
import { FakeKubeApi } from './fake-kube-api.js';
import { issuerWithoutCertify } from './helpers/issuer-without-certify.js';
import { shippedCrds } from './helpers/shipped-crds.js';
import { testPki } from './helpers/pki.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * `wren check` (and --pre), `wren proxy-status` and `wren proxy-config` in Kubernetes mode,
 * through @kubernetes/client-node's kubeconfig handling, against the fake API server
 * (version, SelfSubjectAccessReview, the shipped CRDs, the webhook configuration and its
 * Secret, the control-plane pods) whose pods' proxy subresource reaches a real control
 * plane with discovery clients subscribed. Healthy first, then each check made to fail
 * once (and only that one), then put back.
 */
const pki = testPki();
const HOST = 'wren-control-plane.wren-system.svc';
const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/';
const WEBHOOK_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/wren-sidecar-injector';
const SECRET_PATH = '/api/v1/namespaces/wren-system/secrets/wren-webhook-tls';
let dir: string;
let kubeconfig: string;
let api: FakeKubeApi;
let cp: ControlPlane;
let proxy: TestProxy;
const crds = new Map<string, Record<string, unknown>>();
let webhook: Record<string, unknown>;
let serving: { cert: string };
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A self-signed certificate for `host` (as an operator or cert-manager makes); with `ca`, signed by that one's key instead. */
/** `san: false`: the host in the subject CN only, as certificates were made before Go 1.15. */
function selfSigned(name: string, days: number, host = HOST, ca?: string, san = true): { cert: string } {
  const crt = join(dir, `${name}.crt`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', String(days),
    '-subj', `/CN=${host}/O=${name}`, ...(san ? ['-addext', `subjectAltName=DNS:${host}`] : []), '-keyout', join(dir, `${name}.key`), '-out', crt,
    ...(ca ? ['-CA', join(dir, `${ca}.crt`), '-CAkey', join(dir, `${ca}.key`)] : []),
  ], { stdio: 'pipe' });
  return { cert: execFileSync('cat', [crt], { encoding: 'utf8' }) };
}

function webhookWith(caBundle: string): Record<string, unknown> {
  const w = structuredClone(webhook) as { webhooks: { clientConfig: { caBundle?: string } }[] };
  for (const h of w.webhooks) h.clientConfig.caBundle = caBundle;
  return w as unknown as Record<string, unknown>;
}

function controlPlanePod(name: string, ready: boolean): Record<string, unknown> {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: 'wren-system', labels: { 'app.kubernetes.io/name': 'wren-control-plane', 'app.kubernetes.io/part-of': 'wren' } },
    spec: { containers: [{ name: 'control-plane', image: 'wren:0.1.0' }] },
    status: { phase: 'Running', podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  };
}

/** The healthy cluster: every object as the install leaves it. */
function healthy(): void {
  for (const [name, crd] of crds) api.rawObjects.set(CRD_PATH + name, crd);
  api.rawObjects.set(WEBHOOK_PATH, webhookWith(b64(serving.cert)));
  api.rawObjects.set(SECRET_PATH, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'wren-webhook-tls', namespace: 'wren-system' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(serving.cert), 'tls.key': '' } });
  api.version = { major: '1', minor: '31', gitVersion: 'v1.31.2' };
  api.dateOffsetMs = 0;
  api.deniedAccess.clear();
  api.podProxies.set('wren-system/wren-control-plane-a:15014', `127.0.0.1:${cp.adminPort}`);
}

async function run(cmd: (a: string[], o: (s: string) => void, e: (s: string) => void) => Promise<number>, ...args: string[]) {
  let out = '';
  let err = '';
  const code = await cmd(args, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

async function check(...args: string[]): Promise<{ code: number; checks: CheckOutcome[]; failed: string[] }> {
  const r = await run(checkCommand, '--kubeconfig', kubeconfig, '--output', 'json', ...args);
  const checks = (JSON.parse(r.out) as { checks: CheckOutcome[] }).checks;
  return { code: r.code, checks, failed: checks.filter((c) => c.status === 'fail').map((c) => c.id) };
}
const msg = (checks: CheckOutcome[], id: string) => checks.find((c) => c.id === id)!.message;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-ops-k8s-'));
  api = await FakeKubeApi.start();
  kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, api.kubeConfig().exportConfig());
  // The cluster has every CRD the install ships (manifests/crds), as after `kubectl apply -k manifests/`.
  for (const [name, crd] of await shippedCrds()) crds.set(name, crd);
  webhook = parseAllDocuments(await readFile(join(manifestsDir(), 'install', '40-injector-webhook.yaml'), 'utf8'))[0].toJS() as Record<string, unknown>;
  serving = selfSigned('serving', 365);
  await mkdir(join(dir, 'mesh'));
  await replaceFile(join(dir, 'mesh', 'api.yaml'), 'apiVersion: policy.wren.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: default }\nspec:\n  ports:\n    - { name: http, port: 80, protocol: http1, endpoints: [] }\n');
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(4), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh'), rescanMs: 5_000 }),
    identity: issuerWithoutCertify(pki),
  });
  await cp.whenReady();
  api.apply('pods', controlPlanePod('wren-control-plane-a', true));
  healthy();
  proxy = startRawClient(`127.0.0.1:${cp.grpcPort}`, { pod: 'web-0' });
  proxy.client.reportIdentity({ trustAnchorFingerprints: [certFingerprint(pki.bundlePem)], chainRootFingerprint: certFingerprint(pki.bundlePem), leafSerial: 'ab12', notAfterMs: Date.now() + 86_400_000, startupTrustAnchorFingerprints: [] });
  await waitFor(async () => (await check()).code === 0, 'a healthy cluster');
});

afterEach(() => healthy());

afterAll(async () => {
  await proxy?.client.stop();
  await cp?.close(100);
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

test('a healthy cluster: every check ✓, exit 0; text has one line per check', async () => {
  const { code, checks } = await check();
  expect(code).toBe(0);
  expect(checks.map((c) => [c.id, c.status])).toEqual(
    ['kubernetes-api', 'kubernetes-version', 'clock-skew', 'rbac', 'crds', 'control-plane-pods', 'webhook', 'webhook-cert', 'control-plane', 'source-rejections', 'trust-anchors', 'issuer', 'proxies-synced', 'proxy-certs'].map((id) => [id, 'ok']),
  );
  expect(msg(checks, 'crds')).toBe(`${crds.size} CRDs installed at the expected versions`);
  expect(msg(checks, 'proxies-synced')).toBe('1 proxy(ies) SYNCED');
  const text = await run(checkCommand, '--kubeconfig', kubeconfig);
  expect(text.code).toBe(0);
  expect(text.out.split('\n').filter((l) => l.startsWith('✓ '))).toHaveLength(14);
  // The admin port was reached through the pod's proxy subresource.
  expect(api.requests.some((r) => r.path === '/api/v1/namespaces/wren-system/pods/wren-control-plane-a:15014/proxy/debug/proxy-status')).toBe(true);
  expect(api.requests.some((r) => r.path === '/api/v1/namespaces/wren-system/pods/wren-control-plane-a:15014/proxy/debug/rejected')).toBe(true);
});

test.each<[string, () => void, string, RegExp, string[]?]>([
  // Below the oldest Kubernetes Wren runs on at all (the Gateway API CRDs it ships need 1.26).
  ['kubernetes-version', () => void (api.version = { major: '1', minor: '25', gitVersion: 'v1.25.16' }), 'kubernetes-version', /v1\.25\.16 is older than 1\.26, the oldest Wren supports/],
  ['clock-skew', () => void (api.dateOffsetMs = 60_000), 'clock-skew', /differ by (59|60|61) s/],
  ['rbac', () => void api.deniedAccess.add('get pods/proxy wren-system'), 'rbac', /you may not: get pods\/proxy in wren-system/],
  ['crds (missing)', () => void api.rawObjects.delete(CRD_PATH + 'telemetries.policy.wren.io'), 'crds', /telemetries\.policy\.wren\.io is not installed/],
  ['crds (version)', () => {
    const crd = structuredClone(crds.get('meshservices.policy.wren.io')) as { spec: { versions: { name: string }[] } };
    crd.spec.versions[0].name = 'v1alpha0';
    api.rawObjects.set(CRD_PATH + 'meshservices.policy.wren.io', crd as unknown as Record<string, unknown>);
  }, 'crds', /meshservices\.policy\.wren\.io does not serve v1alpha1 \(serves v1alpha0\)/],
  ['webhook (no caBundle)', () => void api.rawObjects.set(WEBHOOK_PATH, webhookWith('')), 'webhook', /has no caBundle/],
  ['webhook (configuration missing)', () => void api.rawObjects.delete(WEBHOOK_PATH), 'webhook', /wren-sidecar-injector not found/],
  ['webhook-cert (another CA)', () => void api.rawObjects.set(WEBHOOK_PATH, webhookWith(b64(selfSigned('other', 365).cert))), 'webhook-cert', /not signed by the webhook's caBundle/],
  ['webhook-cert (expiring)', () => {
    // The CA (the serving certificate of the healthy cluster) stays valid; the leaf it signs expires in 3 days.
    const soon = selfSigned('soon', 3, HOST, 'serving');
    api.rawObjects.set(SECRET_PATH, { data: { 'tls.crt': b64(soon.cert) } });
  }, 'webhook-cert', /expires in [23] day\(s\) \(< 7\)/],
  ['webhook (CA expiring)', () => void api.rawObjects.set(WEBHOOK_PATH, webhookWith(b64(selfSigned('ca-soon', 2).cert))), 'webhook', /the caBundle certificate expires in [12] day\(s\) \(< 7\)/],
  ['webhook-cert (wrong name)', () => {
    const other = selfSigned('elsewhere', 365, 'injector.example.org');
    api.rawObjects.set(WEBHOOK_PATH, webhookWith(b64(other.cert)));
    api.rawObjects.set(SECRET_PATH, { data: { 'tls.crt': b64(other.cert) } });
  }, 'webhook-cert', /does not name wren-control-plane\.wren-system\.svc/],
  // The API server (Go's crypto/x509 since 1.15) ignores the subject CN: a certificate naming the Service there only is refused.
  ['webhook-cert (the name in the subject CN only)', () => {
    const cnOnly = selfSigned('cn-only', 365, HOST, 'serving', false);
    api.rawObjects.set(SECRET_PATH, { data: { 'tls.crt': b64(cnOnly.cert) } });
  }, 'webhook-cert', /does not name wren-control-plane\.wren-system\.svc/],
  ['control-plane (its admin port unreachable)', () => void api.podProxies.clear(), 'control-plane', /HTTP 503/, ['source-rejections', 'control-plane-debug']],
])('%s fails alone, with a hint and a docs link; exit 1', async (_name, breakIt, id, message, alsoFailing = []) => {
  breakIt();
  const { code, checks, failed } = await check();
  expect(code).toBe(1);
  expect(failed).toEqual([id, ...alsoFailing]);
  const c = checks.find((x) => x.id === id)!;
  expect(c.message).toMatch(message);
  expect(c.hint).toEqual(expect.any(String));
  if (id === 'kubernetes-version') expect(c.hint).toMatch(/>= 1\.26/);
  expect(c.docs).toBe(`docs/operations.md#check-${id}`);
  // What depends on a failed check is skipped, not failed twice.
  if (id === 'webhook') expect(checks.find((x) => x.id === 'webhook-cert')!.status).toBe('skipped');
});

test('kubernetes-version below 1.29 (and at least 1.26) is a warning, ‼, not a failure: --sidecar-mode auto, the default, injects classic sidecars there, and wren check exits 0', async () => {
  api.version = { major: '1', minor: '27', gitVersion: 'v1.27.9' };
  const r = await check();
  expect(r.code).toBe(0);
  expect(r.failed).toEqual([]);
  const c = r.checks.find((x) => x.id === 'kubernetes-version')!;
  expect(c.status).toBe('warn');
  expect(c.message).toBe("Kubernetes v1.27.9 is older than 1.29: the injector's default --sidecar-mode auto injects classic sidecars");
  // The hint says what runs and what is refused there, not only "upgrade".
  expect(c.hint).toMatch(/--sidecar-mode native.*refused/);
  expect(c.hint).toMatch(/--sidecar-mode classic/);
  expect(c.docs).toBe('docs/operations.md#check-kubernetes-version');
  const json = await run(checkCommand, '--kubeconfig', kubeconfig, '--output', 'json');
  expect(json.code).toBe(0);
  expect((JSON.parse(json.out) as { ok: boolean }).ok).toBe(true);
  const text = await run(checkCommand, '--kubeconfig', kubeconfig);
  expect(text.code).toBe(0);
  expect(text.out).toContain("‼ kubernetes-version: Kubernetes v1.27.9 is older than 1.29: the injector's default --sidecar-mode auto injects classic sidecars\n    hint: classic sidecars run");
  expect(text.out).toContain('\n    see:  docs/operations.md#check-kubernetes-version\n');
  expect(text.out).toContain('Status check results are ✓ (14 checks, 1 warning(s))');
  // --pre too: the cluster can be installed on.
  const pre = await check('--pre');
  expect(pre.code).toBe(0);
  expect(pre.checks.find((x) => x.id === 'kubernetes-version')!.status).toBe('warn');
  // A decorated minor reads as the injector reads it: 1.26 is the oldest supported.
  api.version = { major: '1', minor: '26+', gitVersion: 'v1.26.15-eks-1' };
  expect((await check()).checks.find((x) => x.id === 'kubernetes-version')!.status).toBe('warn');
});

test('kubernetes-version reads the version as the injector\'s --sidecar-mode auto does (injector/sidecar-mode.ts): gitVersion when minor is empty, and a body that is no object is a failed check, not a crash', async () => {
  // A provider that leaves major/minor empty: the injector reads v1.30 from gitVersion and injects native sidecars; check must not call it unusable.
  api.version = { major: '', minor: '', gitVersion: 'v1.30.4-gke.1' };
  let r = await check();
  expect(r.failed).toEqual([]);
  expect(msg(r.checks, 'kubernetes-version')).toBe('Kubernetes v1.30.4-gke.1 (>= 1.29)');
  api.version = { major: '1', minor: '', gitVersion: 'v1.28.9' };
  r = await check();
  expect(r.failed).toEqual([]);
  expect(r.checks.find((c) => c.id === 'kubernetes-version')!.status).toBe('warn');
  expect(msg(r.checks, 'kubernetes-version')).toMatch(/v1\.28\.9 is older than 1\.29/);
  api.version = { major: '1', minor: '', gitVersion: 'v1.24.17' };
  r = await check();
  expect(r.failed).toEqual(['kubernetes-version']);
  expect(msg(r.checks, 'kubernetes-version')).toMatch(/v1\.24\.17 is older than 1\.26/);
  (api as { version: unknown }).version = null;
  r = await check();
  expect(r.code).toBe(1);
  expect(r.failed).toEqual(['kubernetes-version']);
  expect(msg(r.checks, 'kubernetes-version')).toBe('the API server reports no usable version (null)');
});

test('certificate validity is judged by the wall clock: after the system clock stepped forward, a CA minted just now is valid', async () => {
  // The wall clock jumps 5 minutes ahead of this process's monotonic time (an NTP or
  // hypervisor step in a long process's life). Another process then mints a CA whose
  // notBefore (its "now" less the backdate, CLOCK_SKEW_MS) is 2 minutes past the monotonic time.
  const real = Date.now();
  const ca = createRootCa({ trustDomain: 'cluster.local', now: new Date(real + 2 * 60_000 + CLOCK_SKEW_MS) });
  api.rawObjects.set(WEBHOOK_PATH, webhookWith(b64(ca.certPem)));
  const t0 = performance.now();
  const stepped = jest.spyOn(Date, 'now').mockImplementation(() => real + 5 * 60_000 + Math.floor(performance.now() - t0));
  try {
    const { checks } = await check();
    expect(checks.find((c) => c.id === 'webhook')).toMatchObject({ status: 'ok' });
    // The serving certificate is not this CA's: the next check still judges the chain.
    expect(checks.find((c) => c.id === 'webhook-cert')).toMatchObject({ status: 'fail', message: expect.stringMatching(/not signed by the webhook's caBundle/) });
  } finally {
    stepped.mockRestore();
  }
});

test('control-plane-pods: an unready replica fails (and is the one named)', async () => {
  api.apply('pods', controlPlanePod('wren-control-plane-b', false));
  try {
    const { code, checks, failed } = await check();
    expect(code).toBe(1);
    expect(failed).toContain('control-plane-pods');
    expect(msg(checks, 'control-plane-pods')).toBe('not ready: wren-control-plane-b (Running)');
  } finally {
    api.delete('pods', 'wren-system', 'wren-control-plane-b');
  }
});

test('trust-anchors, issuer, proxies-synced and proxy-certs fail through the API server too', async () => {
  // The webhook's CA (365 days) fails that bar too.
  expect((await check('--min-days', '9999')).failed).toEqual(['webhook', 'trust-anchors', 'issuer']);
  proxy.reject = () => 'services[0]: bad';
  await replaceFile(join(dir, 'mesh', 'api.yaml'), 'apiVersion: policy.wren.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: default }\nspec:\n  ports:\n    - { name: http, port: 81, protocol: http1, endpoints: [] }\n');
  const nacked = await waitFor(async () => {
    const r = await check();
    return r.failed.includes('proxies-synced') && r;
  }, 'the NACK seen by check', 15_000);
  expect(nacked.failed).toEqual(['proxies-synced']);
  expect(msg(nacked.checks, 'proxies-synced')).toBe('web-0.default NACKED (services[0]: bad)');
  const status = await run(proxyStatusCommand, '--kubeconfig', kubeconfig);
  expect(status.code).toBe(0);
  expect(status.out).toMatch(/^web-0\.default\s+NACKED\s.*wren-system\/wren-control-plane-a$/m);
  proxy.reject = null;
  const other = testPki();
  proxy.client.reportIdentity({ trustAnchorFingerprints: [], chainRootFingerprint: certFingerprint(other.bundlePem), leafSerial: 'cd34', notAfterMs: Date.now() + 86_400_000, startupTrustAnchorFingerprints: [] });
  const rogue = await waitFor(async () => {
    const r = await check();
    return r.failed.includes('proxy-certs') && r;
  }, 'the foreign root seen by check');
  expect(msg(rogue.checks, 'proxy-certs')).toMatch(/web-0\.default's certificate chains to \S+, not a current trust anchor/);
  const certs = await run(proxyConfigCommand, 'web-0.default', 'certs', '--kubeconfig', kubeconfig);
  expect(certs.code).toBe(0);
  expect(certs.out).toContain('serial: CD34');
  expect(certs.out).toContain('(NOT a current trust anchor)');
  // Put back: a new push it ACKs, its own certificate again.
  proxy.client.reportIdentity({ trustAnchorFingerprints: [certFingerprint(pki.bundlePem)], chainRootFingerprint: certFingerprint(pki.bundlePem), leafSerial: 'ab12', notAfterMs: Date.now() + 86_400_000, startupTrustAnchorFingerprints: [] });
  await replaceFile(join(dir, 'mesh', 'api.yaml'), 'apiVersion: policy.wren.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: default }\nspec:\n  ports:\n    - { name: http, port: 80, protocol: http1, endpoints: [] }\n');
  await waitFor(async () => (await check()).code === 0, 'healthy again', 15_000);
});

test('kubernetes-api: an API server that accepts and never answers fails within --timeout', async () => {
  const hang = createServer(() => undefined);
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
  const slow = join(dir, 'slow-kubeconfig');
  await writeFile(slow, (await readFile(kubeconfig, 'utf8')).replace(`127.0.0.1:${api.port}`, `127.0.0.1:${(hang.address() as AddressInfo).port}`));
  try {
    const t0 = performance.now();
    const r = await run(checkCommand, '--kubeconfig', slow, '--output', 'json', '--timeout', '0.3');
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(r.code).toBe(1);
    expect((JSON.parse(r.out) as { checks: CheckOutcome[] }).checks[0]).toMatchObject({ id: 'kubernetes-api', status: 'fail', message: expect.stringContaining('no answer from http://127.0.0.1:') });
  } finally {
    hang.closeAllConnections();
    hang.close();
  }
});

test('kubernetes-api: an API server nobody answers fails and every other check is skipped', async () => {
  const dead = join(dir, 'dead-kubeconfig');
  await writeFile(dead, (await readFile(kubeconfig, 'utf8')).replace(`127.0.0.1:${api.port}`, '127.0.0.1:1'));
  const r = await run(checkCommand, '--kubeconfig', dead, '--output', 'json', '--timeout', '2');
  expect(r.code).toBe(1);
  const checks = (JSON.parse(r.out) as { checks: CheckOutcome[] }).checks;
  expect(checks[0]).toMatchObject({ id: 'kubernetes-api', status: 'fail' });
  expect(checks.slice(1).every((c) => c.status === 'skipped')).toBe(true);
});

describe('--pre', () => {
  test('passes on a cluster where the install may go (our own CRDs already there do not conflict)', async () => {
    const { code, checks } = await check('--pre');
    expect(code).toBe(0);
    expect(checks.map((c) => c.id)).toEqual(['kubernetes-api', 'kubernetes-version', 'clock-skew', 'rbac-install', 'crds-conflict']);
    expect(msg(checks, 'rbac-install')).toMatch(/you may create everything the install creates \(\d+ kinds\)/);
  });

  test('rbac-install fails when a kind the install creates may not be created', async () => {
    api.deniedAccess.add('create customresourcedefinitions.apiextensions.k8s.io');
    api.deniedAccess.add('create deployments.apps wren-system');
    const { code, checks, failed } = await check('--pre');
    expect(code).toBe(1);
    expect(failed).toEqual(['rbac-install']);
    expect(msg(checks, 'rbac-install')).toBe('you may not: create deployments.apps in wren-system, create customresourcedefinitions.apiextensions.k8s.io');
  });

  test('crds-conflict fails on a CRD of the same name that is not Wren\'s', async () => {
    const theirs = structuredClone(crds.get('telemetries.policy.wren.io')) as { metadata: { labels?: Record<string, string> } };
    delete theirs.metadata.labels;
    api.rawObjects.set(CRD_PATH + 'telemetries.policy.wren.io', theirs as unknown as Record<string, unknown>);
    const { code, checks, failed } = await check('--pre');
    expect(code).toBe(1);
    expect(failed).toEqual(['crds-conflict']);
    expect(msg(checks, 'crds-conflict')).toMatch(/telemetries\.policy\.wren\.io exists and is not Wren's/);
  });
});

test('proxy-status and proxy-config --kubeconfig go through the pods proxy of every running control-plane pod', async () => {
  const s = await run(proxyStatusCommand, '--kubeconfig', kubeconfig, '--output', 'json');
  expect(s.code).toBe(0);
  const doc = JSON.parse(s.out) as { controlPlanes: { controlPlane: string; status: { proxies: { pod: string; status: string }[] } }[] };
  expect(doc.controlPlanes).toEqual([expect.objectContaining({ controlPlane: 'wren-system/wren-control-plane-a', error: null })]);
  expect(doc.controlPlanes[0].status.proxies).toEqual([expect.objectContaining({ pod: 'web-0', status: 'SYNCED' })]);
  const c = await run(proxyConfigCommand, 'web-0.default', 'clusters', '--kubeconfig', kubeconfig);
  expect(c.code).toBe(0);
  expect(c.out).toMatch(/^api\.default\s+8[01]\s+http1\s/m);
});
