import { request as httpRequest, Agent } from 'node:http';
import { mkdtemp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import type { DiscoveryClient } from '../proxy/discovery/discovery-client.js';
import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * The whole mesh on loopback, with nothing faked: a control plane reading a directory of
 * MeshService manifests, a client sidecar subscribed to it, server sidecars (mTLS) in front
 * of real apps. Manifests change while a steady stream of requests flows; no request may fail.
 */
const pki = testPki();
const logs: string[] = [];
const pods: { app: FakeApp; proxy: Proxy }[] = [];
let root: string, meshDir: string, cpPort: number;
let cp: ControlPlane | null = null;
let client: Proxy;
let discovery: DiscoveryClient;
const agent = new Agent({ keepAlive: true });

type Ep = { pod: number; ready?: boolean };

/** Writes mesh/web.yaml atomically (the dir source skips hidden files, so the temp file is never read half-written). */
async function writeWeb(eps: Ep[]): Promise<number> {
  const lines = eps.map(({ pod, ready }) => {
    const p = pods[pod];
    return `    - { address: 127.0.0.1, port: ${p.app.port}, proxyPort: ${p.proxy.inboundPort}, identity: "${p.proxy.tls.spiffeId}", ready: ${ready ?? true} }`;
  });
  const yaml = `kind: MeshService
metadata: { name: web, namespace: default }
spec:
  ports:
    - { name: http, port: 80, protocol: http1 }
  endpoints:
${lines.join('\n')}
`;
  await writeFile(join(meshDir, '.web.yaml.tmp'), yaml);
  await rename(join(meshDir, '.web.yaml.tmp'), join(meshDir, 'web.yaml'));
  return performance.now();
}

/** Ready endpoints of web:80 in the client sidecar's current config, as pod indexes. */
function routed(): number[] {
  const svc = client.snapshot.services.find((s) => s.name === 'web' && s.namespace === 'default');
  const eps = svc?.ports.find((p) => p.port === 80)?.endpoints.filter((e) => e.ready) ?? [];
  return eps.map((e) => pods.findIndex((p) => p.app.port === e.port)).sort();
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<number> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    // With the client sidecar's endpoint state (EWMA, ejection, health): why traffic did not go where it was awaited.
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}; the client's clusters: ${client ? await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).text() : '(no client)'}`);
    await new Promise((r) => setTimeout(r, 1));
  }
  return performance.now();
}

/** The client sidecar's wren_retries_total for web:80. */
const retries = (): Promise<number> => metric(client, /^wren_retries_total\{cluster="web\.default:80"\} (\d+)/m);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ status: -1, body: e.message }));
    });
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

/** Two workers sending GET /name through the client sidecar, each pausing 5 ms between requests. */
function startLoad() {
  const state = { running: true, total: 0, failures: [] as string[], hits: new Map<string, number>() };
  const deadline = performance.now() + 15_000; // bounded even if a test forgets to stop it
  const worker = async () => {
    while (state.running && performance.now() < deadline) {
      const r = await get(client.outboundPort, '/name', 'web.default.svc.cluster.local');
      state.total++;
      if (r.status === 200) state.hits.set(r.body, (state.hits.get(r.body) ?? 0) + 1);
      else state.failures.push(`${r.status} ${r.body.slice(0, 200)}`);
      await sleep(5);
    }
  };
  const done = Promise.all([worker(), worker()]);
  return Object.assign(state, {
    hitsOf: (pod: number) => state.hits.get(pods[pod].app.name) ?? 0,
    stop: async () => {
      state.running = false;
      await done;
    },
  });
}

async function startControlPlane(): Promise<ControlPlane> {
  const c = await ControlPlane.start({
    listen: `127.0.0.1:${cpPort}`, admin: '127.0.0.1:0', trustDomain: pki.trustDomain, clock: systemClock, random: seededRandom(Math.floor(Math.random() * 1e6)), logger: silentLogger,
    // Defaults of `wren control-plane --source dir:` (fs.watch + 30 ms debounce, 2 s rescan).
    source: (ctx) => new DirSource({ ...ctx, dir: meshDir, displayDir: 'mesh' }),
  });
  await c.whenReady();
  return c;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'wren-e2e-'));
  meshDir = join(root, 'mesh');
  await mkdir(meshDir);
  for (let i = 0; i < 3; i++) {
    const app = await fakeApp(`web-${i}`);
    pods.push({ app, proxy: await startProxy({ pki, serviceAccount: 'web', logs }) });
  }
  await writeWeb([{ pod: 0 }]);
  // A free port for the control plane, which is started only after the client sidecar.
  cpPort = await closedPort();
  client = await startProxy({
    pki, serviceAccount: 'client', logs, controlPlane: `127.0.0.1:${cpPort}`,
    discoveryBackoff: { initialMs: 50, maxMs: 1000 },
    onDiscovery: (c) => (discovery = c),
  });
});

afterAll(async () => {
  // E2E_LOGS=1 prints the sidecars' notable log lines (diagnosing a failed request).
  if (process.env.E2E_LOGS) console.log(logs.filter((l) => /refus|retr|goaway|error|fail|drain|warn|eject/i.test(l)).join('\n'));
  agent.destroy();
  await client?.close();
  for (const p of pods) {
    if (!p.proxy.isDraining) await p.proxy.close();
    await p.app.close();
  }
  await cp?.kill();
  await rm(root, { recursive: true, force: true });
});

test('(a) /ready is 503 until the first snapshot, then 200; /config_dump shows the control plane version', async () => {
  const admin = `http://127.0.0.1:${client.adminPort}`;
  expect((await fetch(`${admin}/ready`)).status).toBe(503);
  expect((await get(client.outboundPort, '/name', 'web.default.svc.cluster.local')).status).not.toBe(200);
  cp = await startControlPlane();
  await discovery.onFirstSnapshot();
  expect((await fetch(`${admin}/ready`)).status).toBe(200);
  const dump = (await (await fetch(`${admin}/config_dump`)).json()) as { version: string; source: string; services: { name: string }[] };
  expect(dump.version).toBe(cp.store.view.version);
  expect(dump.source).toBe(`control-plane:127.0.0.1:${cpPort}`);
  expect(dump.services.map((s) => s.name)).toEqual(['web']);
  const r = await get(client.outboundPort, '/name', 'web.default.svc.cluster.local');
  expect(r).toEqual({ status: 200, body: 'web-0' });
  // The control plane sees the subscriber at the version it ACKed.
  const seen = await until(() => cp!.discovery.debugProxies().some((p) => p.ackedVersion === dump.version), 'the ACK');
  expect(seen).toBeGreaterThan(0);
  const proxies = cp.discovery.debugProxies();
  expect(proxies).toEqual([expect.objectContaining({ identity: expect.objectContaining({ spiffeId: client.tls.spiffeId, pod: 'client-0' }) })]);
});

test('(b) scale up, mark unready and scale down with a dying pod under traffic: no request fails', async () => {
  const load = startLoad();
  await until(() => load.hitsOf(0) >= 5, 'traffic to web-0');

  // Scale up: the new pod gets traffic.
  let t0 = await writeWeb([{ pod: 0 }, { pod: 1 }]);
  const upMs = (await until(() => routed().join() === '0,1', 'web-1 routed')) - t0;
  await until(() => load.hitsOf(1) >= 5, 'traffic to web-1');

  // Readiness flips to false: the endpoint leaves the client's config and gets no more requests.
  t0 = await writeWeb([{ pod: 0 }, { pod: 1, ready: false }]);
  const unreadyMs = (await until(() => routed().join() === '0', 'web-1 unready')) - t0;
  await sleep(50); // requests that picked web-1 before the switch finish
  const frozen = load.hitsOf(1);
  const before = load.total;
  // Traffic goes on (20 more requests, however slow the machine) and none of it reaches web-1.
  await until(() => load.total > before + 20, '20 more requests');
  expect(load.hitsOf(1)).toBe(frozen);

  // Scale up to pod 2, then delete it with the endpoints update lagging the pod's death:
  // its sidecar drains (stops accepting, GOAWAY) and the manifest drops it 100 ms later.
  // Meanwhile the client still picks a sidecar that refuses connections; the always-safe
  // connect retry moves those requests to pod 0.
  await writeWeb([{ pod: 0 }, { pod: 2 }]);
  await until(() => routed().join() === '0,2', 'web-2 routed');
  await until(() => load.hitsOf(2) >= 5, 'traffic to web-2');
  const retriesBefore = await retries();
  const drained = pods[2].proxy.drain();
  await sleep(100);
  t0 = await writeWeb([{ pod: 0 }]);
  const downMs = (await until(() => routed().join() === '0', 'web-2 removed')) - t0;
  const retried = (await retries()) - retriesBefore;
  await drained;
  await pods[2].app.close();
  const afterDown = load.hitsOf(0);
  await until(() => load.hitsOf(0) > afterDown + 10, 'web-0 to keep serving');

  await load.stop();
  console.log(`e2e convergence (manifest rename -> client sidecar applied): scale-up ${upMs.toFixed(0)} ms, unready ${unreadyMs.toFixed(0)} ms, scale-down ${downMs.toFixed(0)} ms (${retried} connect retries while web-2 was gone but listed); ${load.total} requests, ${load.failures.length} failed`);
  expect(load.failures).toEqual([]);
  expect(retried).toBeGreaterThan(0); // the gap was really exercised
});

test('(c) the control plane dies mid-traffic: the last config keeps serving; after a restart the proxy converges', async () => {
  const load = startLoad();
  await until(() => load.total >= 10, 'traffic');
  const version = client.snapshot.version;
  const killedAt = performance.now();
  const totalAtKill = load.total;
  await cp!.kill();
  cp = null;
  await until(() => !discovery.connected, 'the stream to drop');
  // A change made while the control plane is down: pod 1 becomes ready again.
  await writeWeb([{ pod: 0 }, { pod: 1 }]);
  // The proxy keeps serving from its last config: 20 more requests however slow the machine.
  await until(() => load.total > totalAtKill + 20, 'requests served during the outage');
  await sleep(400);
  expect(client.snapshot.version).toBe(version);
  expect(routed()).toEqual([0]);
  expect((await fetch(`http://127.0.0.1:${client.adminPort}/ready`)).status).toBe(200);
  const servedWhileDown = load.total - totalAtKill;

  const restartedAt = performance.now();
  cp = await startControlPlane();
  const convergedMs = (await until(() => routed().join() === '0,1', 'convergence after restart')) - restartedAt;
  expect(client.snapshot.version).toBe(cp.store.view.version);
  expect(client.snapshot.version).not.toBe(version);
  const h1 = load.hitsOf(1);
  await until(() => load.hitsOf(1) >= h1 + 5, 'traffic to web-1 again');
  await load.stop();
  console.log(`e2e control plane outage: ${(restartedAt - killedAt).toFixed(0)} ms down, converged ${convergedMs.toFixed(0)} ms after restart; ${load.total} requests (${servedWhileDown} during the outage), ${load.failures.length} failed`);
  expect(servedWhileDown).toBeGreaterThan(20);
  expect(load.failures).toEqual([]);
});
