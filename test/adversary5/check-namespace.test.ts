import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { checkCommand } from '../../cli/check/check-command.js';
import type { CheckOutcome } from '../../cli/check/check-result.js';
import { manifestsDir } from '../../cli/check/expected.js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';
import { FakeKubeApi } from '../fake-kube-api.js';
import { issuerWithoutCertify } from '../helpers/issuer-without-certify.js';
import { shippedCrds } from '../helpers/shipped-crds.js';
import { testPki } from '../helpers/pki.js';

/**
 * ADV5-7: `wren check --namespace NS` checks the webhook's serving certificate in the
 * hard-coded `wren-system` namespace (cli/check/kube-checks.ts: WEBHOOK_SECRET and
 * WEBHOOK_HOST use CONTROL_PLANE_NAMESPACE; so do the rbac check's reads), while the control
 * plane, its pods and the webhook's Service are in NS. A documented option that is half
 * ignored (`--namespace NS  the control plane's namespace`).
 *
 * What an operator does: moves the mesh to `mesh-system` (kustomize namespace override),
 * and a leftover `wren-system/wren-webhook-tls` from the old install is still there. The new
 * control plane's Secret `mesh-system/wren-webhook-tls` is missing, so the injector never
 * serves TLS and every pod creation in injected namespaces fails (failurePolicy) or goes
 * unmeshed. What happens: `wren check --namespace mesh-system` reports ✓ webhook-cert
 * ("serving certificate for wren-control-plane.wren-system.svc valid ...") from the leftover
 * Secret and exits 0. What should happen: the Secret and the DNS name of the namespace
 * asked about are checked: ✗ "Secret mesh-system/wren-webhook-tls (tls.crt) not found".
 */
const NS = 'mesh-system';
const pki = testPki();
let dir: string;
let kubeconfig: string;
let api: FakeKubeApi;
let cp: ControlPlane;
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A certificate for `host`, self-signed or (with `ca`) signed by that one's key. */
function cert(name: string, host: string, ca?: string): string {
  const crt = join(dir, `${name}.crt`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '365',
    '-subj', `/CN=${host}/O=${name}`, '-addext', `subjectAltName=DNS:${host}`, '-keyout', join(dir, `${name}.key`), '-out', crt,
    ...(ca ? ['-CA', join(dir, `${ca}.crt`), '-CAkey', join(dir, `${ca}.key`)] : []),
  ], { stdio: 'pipe' });
  return execFileSync('cat', [crt], { encoding: 'utf8' });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv5-ns-'));
  api = await FakeKubeApi.start();
  kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, api.kubeConfig().exportConfig());
  for (const [name, crd] of await shippedCrds()) api.rawObjects.set(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`, crd);
  // The webhook configuration of the install, moved to mesh-system, with the injector CA as caBundle.
  const ca = cert('injector-ca', 'wren injector CA');
  const webhook = parseAllDocuments(await readFile(join(manifestsDir(), 'install', '40-injector-webhook.yaml'), 'utf8'))[0].toJS() as { webhooks: { clientConfig: { caBundle?: string; service: { namespace: string } } }[] };
  for (const h of webhook.webhooks) {
    h.clientConfig.caBundle = b64(ca);
    h.clientConfig.service.namespace = NS;
  }
  api.rawObjects.set('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/wren-sidecar-injector', webhook as unknown as Record<string, unknown>);
  // Only the OLD install's serving Secret exists (wren-system); mesh-system has none.
  const old = cert('old-serving', 'wren-control-plane.wren-system.svc', 'injector-ca');
  api.rawObjects.set('/api/v1/namespaces/wren-system/secrets/wren-webhook-tls', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'wren-webhook-tls', namespace: 'wren-system' }, data: { 'tls.crt': b64(old), 'tls.key': '' } });
  api.version = { major: '1', minor: '31', gitVersion: 'v1.31.2' };
  // The control plane runs in mesh-system.
  await mkdir(join(dir, 'mesh'));
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(4), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh'), rescanMs: 5_000 }),
    identity: issuerWithoutCertify(pki),
  });
  await cp.whenReady();
  api.apply('pods', {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'wren-control-plane-a', namespace: NS, labels: { 'app.kubernetes.io/name': 'wren-control-plane', 'app.kubernetes.io/part-of': 'wren' } },
    spec: { containers: [{ name: 'control-plane', image: 'wren:0.1.0' }] },
    status: { phase: 'Running', podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: 'True' }] },
  });
  api.podProxies.set(`${NS}/wren-control-plane-a:15014`, `127.0.0.1:${cp.adminPort}`);
});

afterAll(async () => {
  await cp?.close(100);
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

test('ADV5-7: wren check --namespace checks the webhook Secret of that namespace, not wren-system', async () => {
  // ADVERSARY: ADV5-7
  let out = '';
  const code = await checkCommand(['--kubeconfig', kubeconfig, '--namespace', NS, '--output', 'json'], (s) => (out += s), () => undefined);
  const checks = (JSON.parse(out) as { checks: CheckOutcome[] }).checks;
  // The control plane itself was found in mesh-system (the option works there).
  expect(checks.find((c) => c.id === 'control-plane-pods')?.status).toBe('ok');
  // The webhook configuration itself checks out (its caBundle is valid): else webhook-cert is skipped, and this says why.
  const config = checks.find((c) => c.id === 'webhook');
  expect({ status: config?.status, message: config?.message }).toEqual({ status: 'ok', message: expect.any(String) });
  const serving = checks.find((c) => c.id === 'webhook-cert')!;
  // On main: ✓ "serving certificate for wren-control-plane.wren-system.svc valid for 364 more days", exit 0.
  expect({ code, status: serving.status, message: serving.message }).toEqual({ code: 1, status: 'fail', message: expect.stringContaining(`${NS}/wren-webhook-tls`) });
});
