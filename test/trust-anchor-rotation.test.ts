import { Agent, request as httpRequest } from 'node:http';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, splitPemCerts, type CaMaterial } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger, silentLogger } from '../common/logger.js';
import { bundleFingerprints, certFingerprint, chainRootFingerprint } from '../contract/trust-anchors.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { ReloadingIssuer } from '../control-plane/identity/issuer-reloader.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { trustAnchorsCommand, type CheckResult } from '../cli/trust-anchors.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import { connectControlPlane } from '../proxy/discovery/connect-proxy.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials, controlPlaneTrustOf } from '../proxy/identity/control-plane-credentials.js';
import { tokenFromFile, WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { Proxy } from '../proxy/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';

/**
 * The whole trust-anchor rotation of docs/trust-anchor-rotation.md, file-backed: a real
 * control plane reading --ca-dir (a kubernetes.io/tls Secret layout) and --trust-bundle
 * from disk and re-reading them, two real sidecars with 24 h certificates from Certify,
 * and HTTP requests flowing client -> web through the sidecars the whole time. Each step
 * edits the files; `wren trust-anchors check` must say "not yet" before the proxies
 * follow and "ready" after, and no request may fail.
 */
const TD = 'cluster.local';
const tokenOf = (sa: string) => `bootstrap-token-${sa}-0123456789abcdef`;

interface Sidecar {
  readonly proxy: Proxy;
  readonly workload: WorkloadIdentity;
  readonly certify: CertifyClient;
  readonly discovery: DiscoveryClient;
  readonly cpCredentials: grpc.ChannelCredentials;
}

let dir: string;
let cp: ControlPlane;
let issuer: ReloadingIssuer;
let app: FakeApp;
let client: Sidecar;
let web: Sidecar;
const cpLogs: string[] = [];
const hourAgo = new Date(Date.now() - 3_600_000);
const oldRoot = createRootCa({ trustDomain: TD, commonName: 'old root', now: hourAgo });
const oldIssuer = createIntermediateCa(oldRoot, { trustDomain: TD, commonName: 'old issuer', now: hourAgo });
const newRoot = createRootCa({ trustDomain: TD, commonName: 'new root', now: hourAgo });
const newIssuer = createIntermediateCa(newRoot, { trustDomain: TD, commonName: 'new issuer', now: hourAgo });
const OLD = certFingerprint(oldRoot.certPem);
const NEW = certFingerprint(newRoot.certPem);

/** Like kubelet's atomic writer and `mv`: readers see the old file or the new one, never half of one. */
async function put(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}
const setBundle = (...roots: CaMaterial[]) => put(join(dir, 'trust', 'ca.crt'), roots.map((r) => r.certPem).join(''));
async function setIssuer(ca: CaMaterial, root: CaMaterial): Promise<void> {
  await put(join(dir, 'issuer', 'tls.crt'), ca.certPem);
  await put(join(dir, 'issuer', 'tls.key'), ca.keyPem);
  await put(join(dir, 'issuer', 'ca.crt'), root.certPem);
}

async function sidecar(sa: string): Promise<Sidecar> {
  const address = `127.0.0.1:${cp.grpcPort}`;
  await writeFile(join(dir, `${sa}.token`), tokenOf(sa));
  const config = parseProxyConfig({
    // Started with only the old root, as WREN_TRUST_BUNDLE was when the pod was injected.
    identity: { trustDomain: TD, namespace: 'default', serviceAccount: sa, pod: `${sa}-0`, certify: { tokenFile: join(dir, `${sa}.token`), trustBundlePem: oldRoot.certPem } },
    discovery: { controlPlane: address },
    listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
    shutdown: { gracePeriodMs: 1000 },
  }, 'test');
  const cpCredentials = controlPlaneCredentials(oldRoot.certPem, config.discovery.controlPlaneIdentity);
  const certify = new CertifyClient(address, cpCredentials, CONTROL_PLANE_CHANNEL_OPTIONS);
  const workload = new WorkloadIdentity({
    spiffeId: `spiffe://${TD}/ns/default/sa/${sa}`, certify: certify.certify, readToken: tokenFromFile(join(dir, `${sa}.token`)),
    clock: systemClock, random: Math.random, logger: silentLogger,
  });
  const tls = await workload.obtain(10_000);
  const proxy = await Proxy.start({ config, tls, logger: createLogger({ sink: () => undefined }), staticMesh: false });
  workload.attachMetrics(proxy.metrics.registry);
  workload.start();
  const discovery = connectControlPlane(proxy, { address, namespace: 'default', pod: `${sa}-0`, credentials: cpCredentials });
  await discovery.onFirstSnapshot();
  return { proxy, workload, certify, discovery, cpCredentials };
}

/** `wren trust-anchors check` against the control plane's admin port, in process. */
async function check(...args: string[]): Promise<{ code: number; result: CheckResult }> {
  let text = '';
  const code = await trustAnchorsCommand(['check', '--admin', `127.0.0.1:${cp.adminPort}`, '--json', ...args], (s) => (text += s), (s) => (text += s));
  return { code, result: JSON.parse(text) as CheckResult };
}

/** Polls `check` until it exits 0; the milliseconds it took. */
async function untilReady(args: string[], timeoutMs = 15_000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const { code, result } = await check(...args);
    if (code === 0) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`check ${args.join(' ')} not ready after ${timeoutMs} ms:\n${result.summary}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Requests through the client sidecar, four at a time, until stopped; counted per phase. */
function traffic() {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const counts = new Map<string, { ok: number; failed: string[] }>();
  let phase = 'before';
  let running = true;
  const one = () =>
    new Promise<string | null>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: client.proxy.outboundPort, path: '/name', headers: { host: 'web.default.svc.cluster.local' }, agent }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 && body === 'web' ? null : `${res.statusCode} ${body.slice(0, 200)}`));
      });
      req.on('error', (e) => resolve(e.message));
      req.end();
    });
  const loop = async () => {
    while (running) {
      const p = phase;
      const c = counts.get(p) ?? { ok: 0, failed: [] };
      counts.set(p, c);
      const failure = await one();
      if (failure === null) c.ok++;
      else c.failed.push(failure);
    }
  };
  const loops = Promise.all([loop(), loop(), loop(), loop()]);
  return {
    set phase(p: string) {
      phase = p;
    },
    counts,
    async stop() {
      running = false;
      await loops;
      agent.destroy();
    },
  };
}

const metric = async (p: Proxy, re: RegExp) => re.exec(await p.metrics.registry.metrics());

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-trust-rotation-'));
  await Promise.all(['issuer', 'trust', 'mesh'].map((d) => mkdir(join(dir, d))));
  await setIssuer(oldIssuer, oldRoot);
  await setBundle(oldRoot);
  await writeFile(join(dir, 'new-root.pem'), newRoot.certPem);
  const tokens = ['client', 'web'].map((sa) => `  - { token: ${tokenOf(sa)}, namespace: default, serviceAccount: ${sa} }`).join('\n');
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n${tokens}\n`);
  const logger = createLogger({ level: 'info', sink: (l) => void cpLogs.push(l) });
  issuer = await ReloadingIssuer.load({ dir: join(dir, 'issuer'), trustBundleFile: join(dir, 'trust', 'ca.crt'), trustDomain: TD, clock: systemClock, logger, intervalMs: 100 });
  issuer.start();
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustDomain: TD, clock: systemClock, random: seededRandom(7), logger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh'), watchDebounceMs: 10 }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')) },
    transport: 'tls',
  });
  app = await fakeApp('web');
  web = await sidecar('web');
  client = await sidecar('client');
  await put(join(dir, 'mesh', 'web.yaml'), `kind: MeshService
metadata: { name: web, namespace: default }
spec:
  ports: [{ name: http, port: 80, protocol: http1 }]
  endpoints: [{ address: 127.0.0.1, port: ${app.port}, proxyPort: ${web.proxy.inboundPort}, identity: "${web.proxy.tls.spiffeId}" }]
`);
  const t0 = Date.now();
  while (!client.proxy.snapshot.services.some((s) => s.name === 'web')) {
    if (Date.now() - t0 > 5000) throw new Error('the client sidecar never got the web service');
    await new Promise((r) => setTimeout(r, 10));
  }
}, 30_000);

afterAll(async () => {
  for (const s of [client, web]) {
    s?.workload.stop();
    s?.certify.close();
    await s?.discovery.stop();
    await s?.proxy.close();
  }
  issuer?.stop();
  await app?.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
});

test('add the new root, switch the issuer, remove the old root: check gates each step and no request fails', async () => {
  const load = traffic();
  const figures: Record<string, number> = {};
  await new Promise((r) => setTimeout(r, 300));

  // Before anything: not a single proxy trusts the new root, and check says so.
  let c = await check('--root', NEW);
  expect(c.code).toBe(1);
  expect(c.result.proxies.map((p) => [p.identity, p.trustsRoot, p.usesRoot])).toEqual(
    expect.arrayContaining([[`spiffe://${TD}/ns/default/sa/web`, false, false], [`spiffe://${TD}/ns/default/sa/client`, false, false]]),
  );
  expect(c.result.controlPlanes[0].handsOutRoot).toBe(false);
  expect(c.result.summary).toMatch(/0\/2 proxies trust the new root/);

  // Step 2: bundle = old + new. Proxies renew at once (push), so check turns ready in about a second.
  load.phase = 'bundle old+new';
  await setBundle(oldRoot, newRoot);
  figures.trustNewMs = await untilReady(['--root', join(dir, 'new-root.pem')]);
  c = await check('--root', NEW, '--uses');
  expect(c.code).toBe(1);
  expect(c.result.controlPlanes[0].signsUnderRoot).toBe(false);
  expect(c.result.proxies.every((p) => p.trustsRoot === true && p.usesRoot === false)).toBe(true);
  expect((await check('--old', OLD)).code).toBe(1);
  // Both sidecars were started with only the old root configured: a restart would not reach the control plane once the issuer moves.
  c = await check('--root', NEW, '--restart-safe');
  expect(c.code).toBe(1);
  expect(c.result.proxies.map((p) => p.restartSafe)).toEqual([false, false]);

  // Step 3: the issuer now is an intermediate of the new root. tls.crt lands first: the
  // reloader refuses the mismatched pair (keeping the old issuer) and takes the complete one.
  load.phase = 'new issuer';
  await put(join(dir, 'issuer', 'tls.crt'), newIssuer.certPem);
  while (!cpLogs.some((l) => l.includes('ISSUER_RELOAD_REJECTED'))) await new Promise((r) => setTimeout(r, 20));
  expect((await check('--root', NEW, '--uses')).result.controlPlanes[0].signsUnderRoot).toBe(false);
  await setIssuer(newIssuer, newRoot);
  figures.useNewMs = await untilReady(['--root', NEW, '--uses']);
  expect((await check('--old', OLD)).code).toBe(0);
  c = await check('--old', OLD, '--removed');
  expect(c.code).toBe(1);
  expect(c.result.proxies.every((p) => p.trustsOld === true && p.usesOld === false)).toBe(true);
  // The control plane's own serving certificate moved to the new issuer too.
  expect(chainRootFingerprint([cp.serving!.certificate.certPem, ...cp.serving!.certificate.chainPems], [oldRoot.certPem, newRoot.certPem])).toBe(NEW);

  // Step 4: bundle = new only.
  load.phase = 'bundle new';
  await setBundle(newRoot);
  figures.removeOldMs = await untilReady(['--old', OLD, '--removed']);
  await new Promise((r) => setTimeout(r, 300));
  await load.stop();

  // Not one request failed, and requests flowed in every phase.
  for (const [phase, n] of load.counts) {
    expect({ phase, failed: n.failed.slice(0, 3) }).toEqual({ phase, failed: [] });
    expect(n.ok).toBeGreaterThan(10);
  }
  expect([...load.counts.keys()]).toEqual(['before', 'bundle old+new', 'new issuer', 'bundle new']);
  for (const s of [client, web]) {
    expect(await metric(s.proxy, /^wren_proxy_errors_total\{.*\} [1-9]/m)).toBeNull();
    // Certificates: obtained once, renewed by each of the three pushes (not by the 24 h schedule).
    expect((await metric(s.proxy, /^wren_identity_cert_renewals_total\{result="success"\} (\d+)/m))?.[1]).toBe('4');
    const m = s.proxy.tls.material;
    expect(splitPemCerts(m.trustBundlePem).map((p) => certFingerprint(p))).toEqual([NEW]);
    expect(chainRootFingerprint(splitPemCerts(m.certChainPem), [newRoot.certPem])).toBe(NEW);
    // The channel to the control plane now verifies it with the new root only.
    expect(bundleFingerprints(controlPlaneTrustOf(s.cpCredentials) ?? '')).toEqual([NEW]);
  }
  expect(await metric(client.proxy, /^wren_retries_total\{.*\} [1-9]/m)).toBeNull();

  // A new connection to the control plane: fine with the credentials that followed the
  // bundle, refused with the old root the pod was started with.
  const csrPem = createCsr(generateKeyPair().privateKeyPem, client.proxy.tls.spiffeId);
  const req = { identity: client.proxy.tls.spiffeId, token: Buffer.from(tokenOf('client')), csrPem, requestedLifetimeMs: 0 };
  const fresh = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, client.cpCredentials, CONTROL_PLANE_CHANNEL_OPTIONS);
  const stale = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneCredentials(oldRoot.certPem, client.proxy.tls.spiffeId.replace(/ns\/.*/, 'ns/wren-system/sa/wren-control-plane')), CONTROL_PLANE_CHANNEL_OPTIONS);
  try {
    expect(bundleFingerprints((await fresh.certify(req, 5000)).trustBundlePem)).toEqual([NEW]);
    await expect(stale.certify(req, 5000)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  } finally {
    fresh.close();
    stale.close();
  }
  process.stdout.write(`trust-anchor rotation: every proxy trusted the new root ${Math.round(figures.trustNewMs)} ms after the bundle file changed; used it ${Math.round(figures.useNewMs)} ms after the issuer changed; dropped the old root ${Math.round(figures.removeOldMs)} ms after the bundle changed (reload poll 100 ms, reissue spread 1 s); requests: ${[...load.counts].map(([p, n]) => `${p} ${n.ok}`).join(', ')}\n`);
}, 60_000);
