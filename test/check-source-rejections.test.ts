import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCommand } from '../cli/check/check-command.js';
import type { CheckOutcome } from '../cli/check/check-result.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { KubernetesSource } from '../control-plane/sources/kubernetes-source.js';
import { waitFor } from './control-plane-harness.js';
import { FakeKubeApi, serviceJson, trafficPolicyJson } from './fake-kube-api.js';
import { issuerWithoutCertify } from './helpers/issuer-without-certify.js';
import { testPki } from './helpers/pki.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * `wren check`'s source-rejections: the objects the control plane's source read and rejects
 * now (GET /debug/rejected), each named with its field path and reason. A real control
 * plane (a CA, so every other local check passes) reads the fake Kubernetes API server
 * through @kubernetes/client-node, or a directory; the check fails while a bad object is
 * there (exit 1, that check alone) and passes once it is fixed or deleted.
 */
const pki = testPki();
let root: string;

/** `wren check --admin` as JSON (its exit code and checks) and as text (its exit code and output), one after the other. */
async function check(admin: string): Promise<{ code: number; checks: CheckOutcome[]; textCode: number; text: string }> {
  let json = '';
  const code = await checkCommand(['--admin', admin, '--output', 'json'], (s) => void (json += s), () => undefined);
  let text = '';
  const textCode = await checkCommand(['--admin', admin], (s) => void (text += s), () => undefined);
  return { code, checks: (JSON.parse(json) as { checks: CheckOutcome[] }).checks, textCode, text };
}
const failed = (checks: CheckOutcome[]) => checks.filter((c) => c.status === 'fail').map((c) => c.id);
const rejection = (checks: CheckOutcome[]) => checks.find((c) => c.id === 'source-rejections')!;

const startCp = (source: Parameters<typeof ControlPlane.start>[0]['source']) =>
  ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(11), logger: silentLogger,
    source, identity: issuerWithoutCertify(pki),
  });

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'wren-check-rejected-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('Kubernetes source (the fake API server)', () => {
  let api: FakeKubeApi;
  let cp: ControlPlane;
  const admin = () => `127.0.0.1:${cp.adminPort}`;

  beforeAll(async () => {
    api = await FakeKubeApi.start({ bookmarkIntervalMs: 100 });
    api.apply('services', serviceJson('web', 'shop', [{ name: 'http', port: 80, targetPort: 8080 }], '10.96.0.20'));
    api.apply('trafficpolicies', trafficPolicyJson('web-policy', 'shop', 'web', { loadBalancer: { kind: 'round-robin' } }));
    cp = await startCp((ctx) => new KubernetesSource({ ...ctx, kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }));
    await cp.whenReady();
  });
  afterAll(async () => {
    await cp?.close(100);
    await api?.close();
  });

  test('✓ with no bad object; ✗ naming a bad TrafficPolicy with its field path (exit 1, that check alone); ✓ once fixed', async () => {
    const healthy = await check(admin());
    expect([healthy.code, healthy.textCode]).toEqual([0, 0]);
    expect(rejection(healthy.checks)).toMatchObject({ status: 'ok', message: 'the kubernetes source rejects no object' });
    expect(healthy.text).toMatch(/^✓ source-rejections: the kubernetes source rejects no object$/m);

    api.apply('trafficpolicies', trafficPolicyJson('web-policy', 'shop', 'web', { loadBalancer: { kind: 'fastest' } }));
    const bad = await waitFor(async () => {
      const r = await check(admin());
      return r.code === 1 && r;
    }, 'the rejection seen by check');
    expect(failed(bad.checks)).toEqual(['source-rejections']);
    expect(bad.textCode).toBe(1);
    const c = rejection(bad.checks);
    expect(c.message).toBe('the kubernetes source rejects 1 object(s), so the last good version of each (if any) stays in force: TrafficPolicy shop/web-policy');
    expect(c.details).toEqual([expect.stringMatching(/^TrafficPolicy shop\/web-policy: spec\.policy\.loadBalancer\.kind: expected one of .*got "fastest"$/)]);
    expect(c.hint).toMatch(/kubectl apply/);
    expect(c.docs).toBe('docs/operations.md#check-source-rejections');
    expect(bad.text).toMatch(/^✗ source-rejections: the kubernetes source rejects 1 object\(s\).*\n {4}- TrafficPolicy shop\/web-policy: spec\.policy\.loadBalancer\.kind: .*"fastest"\n {4}hint: .*\n {4}see: {2}docs\/operations\.md#check-source-rejections$/m);
    // The last good version stays in force meanwhile, and /debug/view says the same.
    expect(cp.store.view.services.get('web.shop')!.policy.loadBalancer.kind).toBe('round-robin');
    const view = (await (await fetch(`http://${admin()}/debug/view`)).json()) as { errors: string[] };
    expect(view.errors).toEqual([expect.stringMatching(/^TrafficPolicy shop\/web-policy: spec\.policy\.loadBalancer\.kind: /)]);

    // A second bad object, then the first fixed: only the second is listed.
    api.apply('services', { ...serviceJson('api', 'shop', [{ name: 'http', port: 99999 }]) });
    const two = await waitFor(async () => {
      const r = await check(admin());
      return rejection(r.checks).details?.length === 2 && r;
    }, 'two rejections');
    expect(rejection(two.checks).details![0]).toMatch(/^Service shop\/api: spec\.ports\[0\]\.port: /);
    api.apply('trafficpolicies', trafficPolicyJson('web-policy', 'shop', 'web', { loadBalancer: { kind: 'least-request' } }));
    const one = await waitFor(async () => {
      const r = await check(admin());
      return rejection(r.checks).details?.length === 1 && r;
    }, 'the fixed TrafficPolicy no longer listed');
    expect(rejection(one.checks).message).toMatch(/: Service shop\/api$/);
    // Deleting the bad object clears it too.
    api.delete('services', 'shop', 'api');
    const fixed = await waitFor(async () => {
      const r = await check(admin());
      return r.code === 0 && r;
    }, 'check passing again');
    expect(rejection(fixed.checks).status).toBe('ok');
    expect(cp.store.view.services.get('web.shop')!.policy.loadBalancer.kind).toBe('least-request');
  });
});

describe('directory source', () => {
  let cp: ControlPlane;
  let dir: string;
  const admin = () => `127.0.0.1:${cp.adminPort}`;
  const good = 'apiVersion: policy.wren.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: default }\nspec:\n  ports:\n    - { name: http, port: 80, protocol: http1, endpoints: [] }\n';

  beforeAll(async () => {
    dir = join(root, 'mesh');
    await mkdir(dir);
    await replaceFile(join(dir, 'api.yaml'), good);
    cp = await startCp((ctx) => new DirSource({ ...ctx, dir, watchDebounceMs: 10, rescanMs: 200 }));
    await cp.whenReady();
  });
  afterAll(async () => {
    await cp?.close(100);
  });

  test('✗ names the object, its field path and its file; a file that is not YAML is named by file; ✓ once fixed', async () => {
    expect((await check(admin())).code).toBe(0);
    await replaceFile(join(dir, 'api.yaml'), good.replace('port: 80', 'port: 99999'));
    await replaceFile(join(dir, 'broken.yaml'), 'kind: [unclosed\n');
    const bad = await waitFor(async () => {
      const r = await check(admin());
      return rejection(r.checks).details?.length === 2 && r;
    }, 'both rejections seen by check');
    expect(bad.code).toBe(1);
    expect(failed(bad.checks)).toEqual(['source-rejections']);
    const c = rejection(bad.checks);
    expect(c.message).toMatch(new RegExp(`^the dir:${dir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} source rejects 2 object\\(s\\), .*: ${join(dir, 'broken.yaml').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, MeshService default/api$`));
    expect(c.details![0]).toMatch(/^YAML: .* \(.*broken\.yaml\)$/);
    expect(c.details![1]).toMatch(/^MeshService default\/api: spec\.ports\[0\]\.port: expected a number in 1\.\.65535, got 99999 \(.*api\.yaml\)$/);
    expect(c.hint).toMatch(/wren check --source dir:DIR/);
    await rm(join(dir, 'broken.yaml'));
    await replaceFile(join(dir, 'api.yaml'), good);
    await waitFor(async () => (await check(admin())).code === 0, 'check passing again');
  });
});

test('the endpoint: GET /debug/rejected on a control plane with nothing rejected', async () => {
  const dir = join(root, 'empty');
  await mkdir(dir);
  const cp = await startCp((ctx) => new DirSource({ ...ctx, dir, watch: false, rescanMs: 60_000 }));
  try {
    await cp.whenReady();
    const res = await fetch(`http://127.0.0.1:${cp.adminPort}/debug/rejected`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ source: `dir:${dir}`, ready: true, rejected: [] });
  } finally {
    await cp.close(100);
  }
});
