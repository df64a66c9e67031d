import { Agent, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { checkCommand } from '../cli/check/check-command.js';
import type { CheckOutcome } from '../cli/check/check-result.js';
import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';
import { adminGet } from './helpers/admin-get.js';

/**
 * Found by the adversarial review (adv9 D5, r8-last-good-restart). The last good version of
 * a refused AuthorizationPolicy lives only in the control plane's memory: a control plane
 * that starts (a restart, a new replica) with the policy already refused had no version of
 * it at all, and the workload whose only ALLOW policy it was became open to every caller.
 *
 * Now a refused AuthorizationPolicy with no last good version fails closed for the
 * workloads it selects (an ALLOW that matches nothing; a DENY of every request), is listed
 * as such on /debug/rejected and by `wren check`, and counted in
 * wren_cp_authorization_policies_fail_closed. Real sidecars, a real control plane
 * reading a directory.
 */
const pki = testPki();
let plane: DirControlPlane, app: FakeApp, server: Proxy, client: Proxy;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

const pod = meshedPodYaml('orders-0', 'demo', 'orders', { app: 'orders' });
const svc = 'apiVersion: policy.wren.io/v1alpha1\nkind: MeshService\nmetadata: { name: orders, namespace: demo }\nspec:\n  ports: [{ name: http, port: 80, protocol: http1, endpoints: [] }]\n';
/** Only the frontend may call orders; the second rule's operation `path:` (misspelt) is refused: the whole object is refused. */
const onlyFrontend = (paths: string, field = 'paths') => `apiVersion: policy.wren.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: only-frontend, namespace: demo }
spec:
  selector: { matchLabels: { app: orders } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/demo/sa/frontend"] } }]
    - to: [{ operation: { ${field}: [${paths}] } }]
`;
/**
 * Accepted by the release before and read as denying nothing: a DENY without rules in the
 * root namespace. Refused, it was enforced fail-closed on every control-plane start, a DENY
 * of every request of the mesh (adv13 D1); it is read as before, with a warning.
 */
const denyNothing = 'apiVersion: policy.wren.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: placeholder, namespace: wren-system }\nspec: { action: DENY }\n';

beforeAll(async () => {
  // The control plane starts with the refused version already there: no last good version exists.
  plane = await startDirControlPlane({
    prefix: 'wren-fail-closed-', trustDomain: 'cluster.local', seed: 5, mesh: { 'pod.yaml': pod, 'svc.yaml': svc, 'authz.yaml': onlyFrontend('"/name"', 'path'), 'placeholder.yaml': denyNothing },
    dirSource: { displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 200 },
  });
  app = await fakeApp('orders');
  server = await startProxy({
    pki, namespace: 'demo', serviceAccount: 'orders', controlPlane: `127.0.0.1:${plane.cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 },
    inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
  });
  await waitFor(() => server.snapshot.source.startsWith('control-plane:'), 'first snapshot');
  // The caller is not the frontend: the policy, had it been read, would refuse it.
  client = await startProxy({ pki, namespace: 'public', serviceAccount: 'crawler', services: [meshService('orders', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  agent.destroy();
  await client.close();
  await server.close();
  await plane.close(100);
  await app.close();
});

function get(path: string): Promise<{ status: number; reason: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'orders' }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.headers['wren-authz-reason'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function check(): Promise<CheckOutcome> {
  let json = '';
  await checkCommand(['--admin', `127.0.0.1:${plane.cp.adminPort}`, '--output', 'json'], (s) => void (json += s), () => undefined);
  return (JSON.parse(json) as { checks: CheckOutcome[] }).checks.find((c) => c.id === 'source-rejections')!;
}

test('a control plane that starts with the only ALLOW policy refused enforces it fail-closed: the caller is denied, not let in', async () => {
  // The DENY without rules is pushed as the release before pushed it: it denies nothing.
  expect(server.policy.authorizationPolicies).toEqual([{ name: 'demo/only-frontend', action: 'ALLOW', rules: [] }, { name: 'wren-system/placeholder', action: 'DENY', rules: [] }]);
  expect(await get('/name')).toEqual({ status: 403, reason: 'no-allow-policy-matched' });

  const failClosed = 'an ALLOW that matches nothing, for the workloads labelled app=orders of namespace demo: they admit only what another ALLOW policy admits';
  const rejected = (await (await fetch(`http://127.0.0.1:${plane.cp.adminPort}/debug/rejected`)).json()) as { rejected: unknown[] };
  expect(rejected.rejected).toEqual([
    { kind: 'AuthorizationPolicy', namespace: 'demo', name: 'only-frontend', path: 'spec.rules[1].to[0].operation.path', reason: expect.stringMatching(/unknown field/), file: 'mesh/authz.yaml', failClosed },
  ]);
  const c = await check();
  expect(c.message).toBe('the dir:' + plane.dir + ' source rejects 1 object(s), so the last good version of each (if any) stays in force (1 AuthorizationPolicy object(s) without one are enforced fail-closed): AuthorizationPolicy demo/only-frontend');
  expect(c.details).toEqual([expect.stringMatching(new RegExp(`^AuthorizationPolicy demo/only-frontend: spec\\.rules\\[1\\]\\.to\\[0\\]\\.operation\\.path: .* \\(mesh/authz\\.yaml\\); no last good version, enforced fail-closed: ${failClosed}$`))]);
  expect(await plane.cp.metrics.registry.metrics()).toMatch(/^wren_cp_authorization_policies_fail_closed 1$/m);
  // The dashboard's service view lists the stand-in with what it enforces and why.
  const view = (await (await adminGet(`http://127.0.0.1:${plane.cp.adminPort}/api/services/orders.demo`)).json()) as { authorizationPolicies: unknown[] };
  expect(view.authorizationPolicies).toEqual([
    { selector: { app: 'orders' }, name: 'demo/only-frontend', action: 'ALLOW', rules: [], failClosed: { refusal: expect.stringMatching(/^spec\.rules\[1\]\.to\[0\]\.operation\.path: /), enforced: failClosed } },
  ]);
});

test('the fixed policy replaces the stand-in; a later refused edit keeps that last good version', async () => {
  await replaceFile(join(plane.dir, 'authz.yaml'), onlyFrontend('"/name"'));
  await waitFor(() => server.policy.authorizationPolicies[0]?.rules.length === 2, 'fixed policy pushed');
  // Now /name is open to every caller (rule 2), the rest to the frontend only; wren-system/placeholder denies nothing.
  expect(await get('/name')).toEqual({ status: 200, reason: undefined });
  expect(await get('/admin')).toEqual({ status: 403, reason: 'no-allow-policy-matched' });
  expect(await plane.cp.metrics.registry.metrics()).toMatch(/^wren_cp_authorization_policies_fail_closed 0$/m);

  await replaceFile(join(plane.dir, 'authz.yaml'), onlyFrontend('"/name"', 'path'));
  await waitFor(() => plane.source.errors().length > 0, 'rejection');
  await new Promise((r) => setTimeout(r, 100));
  expect(server.policy.authorizationPolicies[0].rules).toHaveLength(2);
  expect(await get('/name')).toEqual({ status: 200, reason: undefined });
  expect((await check()).details).toEqual([expect.not.stringMatching(/fail-closed/)]);
});
