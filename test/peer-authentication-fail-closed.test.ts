import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCommand } from '../cli/check/check-command.js';
import type { CheckOutcome } from '../cli/check/check-result.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { meshedPodYaml } from './helpers/meshed-pod.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * Left open by the adversarial review (adv9 D5, r8-last-good-restart), for PeerAuthentication:
 * the last good version of a refused object lives only in the control plane's memory. A
 * namespace PeerAuthentication STRICT under a mesh-wide PERMISSIVE one, refused by an edit,
 * kept its last good version while the control plane ran; after a restart it was simply
 * absent, the mesh-wide PERMISSIVE applied, and the workload's port took plaintext from anyone.
 *
 * Now a refused PeerAuthentication with no last good version is enforced as mTLS STRICT on
 * every port in its place, listed as such on /debug/rejected and by `wren check`, and counted
 * in wren_cp_peer_authentications_fail_closed. A real control plane reading a directory,
 * restarted on the same port, and a real sidecar; plaintext is sent to its inbound port.
 */
const pki = testPki();
let root: string, dir: string, cp: ControlPlane, app: FakeApp, server: Proxy;

const pod = meshedPodYaml('orders-0', 'demo', 'orders', { app: 'orders' });
const meshPermissive = 'apiVersion: policy.wren.io/v1alpha1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: wren-system }\nspec: { mtls: { mode: PERMISSIVE } }\n';
/** The namespace's PeerAuthentication. With `ports`, it is refused: portLevelMtls needs a selector. */
const demo = (mode: string, ports = false) =>
  `apiVersion: policy.wren.io/v1alpha1\nkind: PeerAuthentication\nmetadata: { name: strict, namespace: demo }\nspec:\n  mtls: { mode: ${mode} }\n${ports ? '  portLevelMtls: { "8080": { mode: STRICT } }\n' : ''}`;

const start = async (port = 0): Promise<ControlPlane> => {
  cp = await ControlPlane.start({
    listen: `127.0.0.1:${port}`, admin: '127.0.0.1:0', trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(17), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir, displayDir: 'mesh', watchDebounceMs: 10, rescanMs: 200 }),
  });
  await cp.whenReady();
  return cp;
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'wren-peer-fail-closed-'));
  dir = join(root, 'mesh');
  await mkdir(dir);
  await replaceFile(join(dir, 'pod.yaml'), pod);
  await replaceFile(join(dir, 'mesh.yaml'), meshPermissive);
  await replaceFile(join(dir, 'demo.yaml'), demo('STRICT'));
  await start();
  app = await fakeApp('orders');
  server = await startProxy({
    pki, namespace: 'demo', serviceAccount: 'orders', controlPlane: `127.0.0.1:${cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 },
    inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
  });
  await waitFor(() => server.snapshot.source.startsWith('control-plane:'), 'first snapshot');
});

afterAll(async () => {
  await server.close();
  await cp.close(100);
  await app.close();
  await rm(root, { recursive: true, force: true });
});

/** A plaintext HTTP request to the sidecar's inbound port (an unmeshed caller): its status, or 'closed' when the port refuses plaintext. */
const plain = () =>
  new Promise<number | 'closed'>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.inboundPort, path: '/name', headers: { host: 'orders' }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve('closed'));
    req.end();
  });

async function check(): Promise<CheckOutcome> {
  let json = '';
  await checkCommand(['--admin', `127.0.0.1:${cp.adminPort}`, '--output', 'json'], (s) => void (json += s), () => undefined);
  return (JSON.parse(json) as { checks: CheckOutcome[] }).checks.find((c) => c.id === 'source-rejections')!;
}

/** The mTLS mode of the inbound policy the proxy ACKed from the control plane now running (after a restart: from that one). */
async function acked(): Promise<string | undefined> {
  const r = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/proxies`)).json()) as { proxies: { inboundPolicy: 'default' | { mtls: { mode: string } } | null }[] };
  const p = r.proxies[0]?.inboundPolicy;
  // 'default': the default inbound policy (mode STRICT, nothing else), sent as such.
  return p === 'default' ? 'STRICT' : p?.mtls.mode;
}

test('a refused STRICT PeerAuthentication keeps plaintext refused after a control-plane restart; a valid version replaces the stand-in', async () => {
  expect(server.policy.mtls.mode).toBe('STRICT');
  expect(await plain()).toBe('closed');

  // Refused while the control plane runs: the last good version (STRICT) stays.
  await replaceFile(join(dir, 'demo.yaml'), demo('STRICT', true));
  await waitFor(async () => (await check()).status === 'fail', 'the refusal listed');
  expect(server.policy.mtls.mode).toBe('STRICT');
  expect((await check()).details).toEqual([expect.not.stringMatching(/fail-closed/)]);

  // The control plane restarts (a rollout, a crash) on the same port: it never read a good version of demo/strict.
  const port = cp.grpcPort;
  await cp.close(100);
  await start(port);
  await waitFor(async () => (await acked()) !== undefined, 'the proxy reconnected and ACKed the new control plane\'s policy');
  // Without the stand-in the mesh-wide PERMISSIVE applied here, and the plaintext request got 200.
  expect(await acked()).toBe('STRICT');
  expect(server.policy.mtls.mode).toBe('STRICT');
  expect(await plain()).toBe('closed');

  // Visible: /debug/rejected, wren check, the gauge, /debug/view.
  const enforced = 'mTLS STRICT on every port, for every workload of namespace demo: plaintext is refused';
  const rejected = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/rejected`)).json()) as { rejected: { reason: string }[] };
  expect(rejected.rejected).toEqual([
    { kind: 'PeerAuthentication', namespace: 'demo', name: 'strict', path: 'spec.selector', reason: expect.stringMatching(/^is required when portLevelMtls is set/), file: 'mesh/demo.yaml', failClosed: enforced },
  ]);
  const c = await check();
  expect(c.message).toMatch(/ source rejects 1 object\(s\), so the last good version of each \(if any\) stays in force \(1 PeerAuthentication object\(s\) without one are enforced fail-closed\): PeerAuthentication demo\/strict$/);
  expect(c.details).toEqual([`PeerAuthentication demo/strict: spec.selector: ${rejected.rejected[0].reason} (mesh/demo.yaml); no last good version, enforced fail-closed: ${enforced}`]);
  const metrics = await cp.metrics.registry.metrics();
  expect(metrics).toMatch(/^wren_cp_peer_authentications_fail_closed 1$/m);
  expect(metrics).toMatch(/^wren_cp_authorization_policies_fail_closed 0$/m);
  const view = (await (await fetch(`http://127.0.0.1:${cp.adminPort}/debug/view`)).json()) as { peerAuthentications: { name: string; failClosed?: unknown }[] };
  expect(view.peerAuthentications.find((p) => p.name === 'strict')?.failClosed).toEqual({ refusal: expect.stringMatching(/^spec\.selector: /), enforced });

  // The author's fix (here: PERMISSIVE on purpose) replaces the stand-in at once.
  await replaceFile(join(dir, 'demo.yaml'), demo('PERMISSIVE'));
  await waitFor(() => server.policy.mtls.mode === 'PERMISSIVE', 'the valid version pushed');
  expect(await plain()).toBe(200);
  expect(await cp.metrics.registry.metrics()).toMatch(/^wren_cp_peer_authentications_fail_closed 0$/m);
});
