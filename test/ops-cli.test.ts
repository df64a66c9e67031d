import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as grpcJs from '@grpc/grpc-js';
import { checkCommand } from '../cli/check/check-command.js';
import type { CheckOutcome } from '../cli/check/check-result.js';
import { proxyConfigCommand } from '../cli/proxy-config.js';
import { proxyStatusCommand, type ReplicaStatus } from '../cli/proxy-status.js';
import { WREN_VERSION } from '../common/version.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { certFingerprint } from '../contract/trust-anchors.js';
import type { ControlPlane } from '../control-plane/server.js';
import type { Proxy } from '../proxy/proxy.js';
import { startProxy as startRawClient, waitFor, type TestProxy } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { issuerWithoutCertify } from './helpers/issuer-without-certify.js';
import { meshServiceYaml } from './helpers/mesh-service-yaml.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';

/**
 * `wren proxy-status`, `wren proxy-config` and `wren check` (local mode) against a real
 * control plane (a CA, reading a directory) and real sidecars on loopback that subscribe
 * to it and report their certificates; plus discovery clients that NACK, never ACK, or
 * report a certificate from a foreign root, so each status and each check is seen to fail.
 */
const pki = testPki();
let plane: DirControlPlane;
let root: string;
let meshDir: string;
let cp: ControlPlane;
let web: Proxy;
let client: Proxy;

async function run(cmd: (a: string[], o: (s: string) => void, e: (s: string) => void) => Promise<number>, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await cmd(args, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}
const admin = () => `127.0.0.1:${cp.adminPort}`;
const status = async () => {
  const r = await run(proxyStatusCommand, '--control-plane', admin(), '--output', 'json');
  expect(r.code).toBe(0);
  return (JSON.parse(r.out) as { controlPlanes: ReplicaStatus[] }).controlPlanes[0].status!.proxies;
};
const check = async (...args: string[]) => {
  const r = await run(checkCommand, '--output', 'json', ...args);
  return { code: r.code, checks: (JSON.parse(r.out) as { ok: boolean; checks: CheckOutcome[] }).checks };
};
const byId = (checks: CheckOutcome[], id: string) => checks.find((c) => c.id === id)!;

beforeAll(async () => {
  const api = meshServiceYaml('api', [{ port: 9, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/default/sa/api' }], { loadBalancer: { kind: 'round-robin' } });
  const mtls = 'apiVersion: policy.wren.io/v1alpha1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: default }\nspec:\n  mtls: { mode: PERMISSIVE }\n';
  plane = await startDirControlPlane({
    prefix: 'wren-ops-cli-', trustDomain: pki.trustDomain, seed: 3, mesh: { 'api.yaml': api, 'mtls.yaml': mtls },
    dirSource: { watchDebounceMs: 10, rescanMs: 5_000 }, control: { identity: issuerWithoutCertify(pki) },
  });
  ({ cp, root, dir: meshDir } = plane);
  web = await startProxy({ pki, serviceAccount: 'web', controlPlane: `127.0.0.1:${cp.grpcPort}` });
  client = await startProxy({ pki, serviceAccount: 'client', controlPlane: `127.0.0.1:${cp.grpcPort}` });
  // Both ACKed and reported their certificates.
  await waitFor(async () => {
    const p = await status();
    return p.length === 2 && p.every((x) => x.status === 'SYNCED' && x.cert !== null);
  }, 'both sidecars SYNCED with a reported certificate');
});

afterAll(async () => {
  await Promise.all([web?.close(), client?.close()]);
  await plane?.close(100);
});

test('proxy-status: every sidecar SYNCED at the version it was sent, with its release, certificate and a current root', async () => {
  const rows = await status();
  const w = rows.find((r) => r.pod === 'web-0')!;
  expect(w).toMatchObject({ namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/web', status: 'SYNCED', proxyVersion: WREN_VERSION, nack: null, pendingForMs: null });
  expect(w.ackedVersion).toBe(w.sentVersion);
  // The JSON says since when (ISO) and for how long (the control plane's clock) its stream is up.
  expect(Date.parse(w.connectedSince)).toBeLessThanOrEqual(Date.now());
  expect(w.connectedForMs).toBeGreaterThanOrEqual(0);
  expect(w.connectedForMs).toBeLessThan(120_000);
  const certs = (await (await fetch(`http://127.0.0.1:${web.adminPort}/certs`)).json()) as { serial: string; notAfter: string };
  expect(w.cert).toMatchObject({ serial: certs.serial, notAfter: certs.notAfter, chainRoot: certFingerprint(pki.bundlePem), chainsToCurrentAnchor: true });
  const table = await run(proxyStatusCommand, '--control-plane', admin());
  expect(table.code).toBe(0);
  expect(table.out).toMatch(/^NAME\s+STATUS\s+ACKED\s+SENT\s+CERT EXPIRES\s+ROOT\s+VERSION\s+CONNECTED\s+LAST SEEN\s+CONTROL PLANE$/m);
  // CONNECTED: an age like kubectl's AGE (seconds, this stream is young), then LAST SEEN.
  expect(table.out).toMatch(new RegExp(`^web-0\\.default\\s+SYNCED\\s+${w.ackedVersion}\\s+${w.sentVersion}\\s+\\d+h\\d+m\\s+\\S+\\s+${WREN_VERSION.replace(/\./g, '\\.')}\\s+\\d+s\\s+\\d+s ago\\s`, 'm'));
});

test('proxy-status: a control plane that accepts and never answers is exit 1 within --timeout', async () => {
  const hang = createServer(() => undefined);
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
  try {
    const t0 = performance.now();
    const r = await run(proxyStatusCommand, '--control-plane', `127.0.0.1:${(hang.address() as AddressInfo).port}`, '--timeout', '0.3');
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/unreachable: no answer from 127\.0\.0\.1:\d+ within 300 ms/);
  } finally {
    hang.closeAllConnections();
    hang.close();
  }
});

test('/debug/proxy-config: 400 without a namespace/name pod, 404 for one not connected', async () => {
  expect((await fetch(`http://${admin()}/debug/proxy-config`)).status).toBe(400);
  expect((await fetch(`http://${admin()}/debug/proxy-config?pod=web-0`)).status).toBe(400);
  const missing = await fetch(`http://${admin()}/debug/proxy-config?pod=default/nope-0`);
  expect(missing.status).toBe(404);
  expect(await missing.json()).toEqual({ error: 'no proxy of pod default/nope-0 is connected to this control plane' });
});

test('proxy-status: an unreachable control plane is exit 1, bad usage exit 2', async () => {
  const down = await run(proxyStatusCommand, '--control-plane', '127.0.0.1:1', '--timeout', '2');
  expect(down.code).toBe(1);
  expect(down.out).toMatch(/control plane 127\.0\.0\.1:1: unreachable/);
  expect((await run(proxyStatusCommand, '--output', 'yaml')).code).toBe(2);
});

test('proxy-config: clusters, policy and certs from the control plane match what the sidecar itself has (--admin)', async () => {
  const fromCp = await run(proxyConfigCommand, 'web-0.default', 'clusters', '--control-plane', admin());
  expect(fromCp.code).toBe(0);
  expect(fromCp.out).toMatch(/^api\.default\s+80\s+http1\s+round-robin\s+1\s+1\s+1$/m);
  const fromProxy = await run(proxyConfigCommand, 'default/web-0', 'clusters', '--admin', `127.0.0.1:${web.adminPort}`);
  expect(fromProxy.code).toBe(0);
  expect(fromProxy.out).toMatch(/^# from proxy admin/m);
  expect(fromProxy.out).toMatch(/^api\.default\s+80\s+http1\s+round-robin\s+1\s+1\s+1$/m);
  const certs = (await (await fetch(`http://127.0.0.1:${web.adminPort}/certs`)).json()) as { serial: string };
  const c = await run(proxyConfigCommand, 'web-0', 'certs', '--control-plane', admin());
  expect(c.out).toContain(`serial: ${certs.serial}`);
  expect(c.out).toContain('(a current trust anchor)');
  const json = await run(proxyConfigCommand, 'web-0', 'policy', '--control-plane', admin(), '--output', 'json');
  expect(JSON.parse(json.out)).toEqual([expect.objectContaining({ policy: expect.objectContaining({ mtls: { mode: 'PERMISSIVE' } }) })]);
  const policy = await run(proxyConfigCommand, 'web-0', 'policy', '--admin', `127.0.0.1:${web.adminPort}`);
  expect(policy.out).toMatch(/^mTLS: PERMISSIVE\nauthorization policies: none\nJWT rules: 0\n/m);
  const routes = await run(proxyConfigCommand, 'web-0', 'routes', '--control-plane', admin());
  expect(routes.out).toContain('no routes');
  expect((await run(proxyConfigCommand, 'nope-0', 'clusters', '--control-plane', admin())).code).toBe(1);
  expect((await run(proxyConfigCommand, 'web-0', 'listeners', '--control-plane', admin())).code).toBe(2);
});

test('check (local): every check passes on a healthy mesh, text and json, exit 0', async () => {
  const text = await run(checkCommand, '--source', `dir:${meshDir}`, '--admin', admin());
  expect(text.code).toBe(0);
  for (const id of ['manifests', 'control-plane', 'source-rejections', 'trust-anchors', 'issuer', 'proxies-synced', 'proxy-certs']) expect(text.out).toMatch(new RegExp(`^✓ ${id}: `, 'm'));
  const { code, checks } = await check('--source', `dir:${meshDir}`, '--admin', admin());
  expect(code).toBe(0);
  expect(checks.every((c) => c.status === 'ok')).toBe(true);
});

test('NACKED: a proxy that rejects its config shows NACKED with the reason; check fails proxies-synced with a hint and a docs link', async () => {
  const nacker: TestProxy = startRawClient(`127.0.0.1:${cp.grpcPort}`, { pod: 'nacker-0' });
  nacker.reject = () => 'services[0].ports[0]: unsupported protocol';
  try {
    const row = await waitFor(async () => (await status()).find((r) => r.pod === 'nacker-0' && r.status === 'NACKED'), 'NACKED');
    expect(row.nack?.detail).toContain('unsupported protocol');
    expect(row.ackedVersion).toBeNull();
    const table = await run(proxyStatusCommand, '--control-plane', admin());
    expect(table.out).toMatch(/^nacker-0\.default\s+NACKED/m);
    expect(table.out).toMatch(/nacker-0\.default: NACKED version \S+: .*unsupported protocol/);
    const text = await run(checkCommand, '--admin', admin());
    expect(text.code).toBe(1);
    expect(text.out).toMatch(/^✗ proxies-synced: nacker-0\.default NACKED \(.*unsupported protocol\)\n {4}hint: .+\n {4}see: {2}docs\/operations\.md#check-proxies-synced$/m);
  } finally {
    nacker.client.stop();
  }
  await waitFor(async () => (await status()).length === 2, 'the NACKing client gone');
  expect((await check('--admin', admin())).code).toBe(0);
});

test('STALE: a proxy that never ACKs is STALE with how long it waits; check fails proxies-synced', async () => {
  const { Client } = loadDiscoveryProto();
  const c = new Client(`127.0.0.1:${cp.grpcPort}`, grpcJs.credentials.createInsecure()) as unknown as grpc.Client & { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> };
  const stream = c.Stream();
  stream.on('error', () => undefined);
  stream.on('data', () => undefined); // read, never ACK
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/default/sa/slow', namespace: 'default', pod: 'slow-0', labels: {} }, services: [], lastVersion: '' } });
  try {
    const row = await waitFor(async () => (await status()).find((r) => r.pod === 'slow-0' && r.sentVersion !== null), 'sent to slow-0');
    expect(row.status).toBe('STALE');
    expect(row.pendingForMs).not.toBeNull();
    expect(row.proxyVersion).toBeNull(); // sent none
    const { code, checks } = await check('--admin', admin());
    expect(code).toBe(1);
    expect(byId(checks, 'proxies-synced')).toMatchObject({ status: 'fail', message: expect.stringMatching(/slow-0\.default STALE \(waiting \d+ s for its ACK\)/) });
    // It has not reported a certificate either.
    expect(byId(checks, 'proxy-certs')).toMatchObject({ status: 'fail', message: expect.stringContaining('slow-0.default has not reported its certificate') });
  } finally {
    stream.end();
    c.close();
  }
  await waitFor(async () => (await status()).length === 2, 'the slow client gone');
});

test('proxy-certs: a proxy whose certificate chains to a root that is not a current anchor fails the check', async () => {
  const other = testPki();
  const raw = startRawClient(`127.0.0.1:${cp.grpcPort}`, { pod: 'rogue-0' });
  raw.client.reportIdentity({ trustAnchorFingerprints: [certFingerprint(other.bundlePem)], chainRootFingerprint: certFingerprint(other.bundlePem), leafSerial: '01', notAfterMs: Date.now() + 3_600_000, startupTrustAnchorFingerprints: [] });
  try {
    await waitFor(async () => (await status()).find((r) => r.pod === 'rogue-0' && r.cert && r.status === 'SYNCED'), 'rogue reported');
    const { code, checks } = await check('--admin', admin());
    expect(code).toBe(1);
    expect(byId(checks, 'proxy-certs')).toMatchObject({ status: 'fail', message: expect.stringMatching(/rogue-0\.default's certificate chains to \S+, not a current trust anchor/) });
    expect(byId(checks, 'proxies-synced').status).toBe('ok');
    const certs = await run(proxyConfigCommand, 'rogue-0', 'certs', '--control-plane', admin());
    expect(certs.out).toContain('(NOT a current trust anchor)');
  } finally {
    raw.client.stop();
  }
  await waitFor(async () => (await status()).length === 2, 'the rogue client gone');
});

test('trust-anchors and issuer fail when they expire within --min-days', async () => {
  const { code, checks } = await check('--admin', admin(), '--min-days', '9999');
  expect(code).toBe(1);
  expect(byId(checks, 'trust-anchors')).toMatchObject({ status: 'fail', message: expect.stringMatching(/expires in \d+ day\(s\)/) });
  expect(byId(checks, 'issuer')).toMatchObject({ status: 'fail', message: expect.stringMatching(/expires in \d+ day\(s\)/) });
  expect(byId(checks, 'proxies-synced').status).toBe('ok');
});

test('manifests: a manifest that does not parse fails the check with its file and field path', async () => {
  const bad = join(root, 'bad');
  await mkdir(bad);
  await replaceFile(join(bad, 'web.yaml'), 'apiVersion: policy.wren.io/v1alpha1\nkind: MeshService\nmetadata: { name: web }\nspec:\n  ports:\n    - { name: http, port: 99999, protocol: http1, endpoints: [] }\n');
  const { code, checks } = await check('--source', `dir:${bad}`);
  expect(code).toBe(1);
  expect(byId(checks, 'manifests')).toMatchObject({ status: 'fail', message: expect.stringMatching(/web\.yaml: .*port/) });
  expect((await check('--source', `dir:${join(root, 'missing')}`)).code).toBe(1);
});

test('control-plane: an admin address nobody answers fails, and the checks behind it are skipped', async () => {
  const { code, checks } = await check('--admin', '127.0.0.1:1', '--timeout', '2');
  expect(code).toBe(1);
  expect(byId(checks, 'control-plane').status).toBe('fail');
  expect(checks.filter((c) => c.status === 'skipped').map((c) => c.id)).toEqual(['source-rejections', 'trust-anchors', 'issuer', 'proxies-synced', 'proxy-certs']);
  expect((await run(checkCommand, '--admin', admin(), '--pre')).code).toBe(2);
});
