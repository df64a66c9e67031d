/**
 * Two "pods" in network namespaces, meshed for real: `wren iptables` inside each (the
 * injected init container's exact arguments), an app that knows nothing of the mesh, and
 * a real `wren proxy` sidecar under UID 2102, the UID the rules exclude. The client app
 * (UID 1000) calls the other pod's IP and port over HTTP/1.1, gRPC and raw TCP, and a
 * Service ClusterIP no kube-proxy serves; routing comes only from SO_ORIGINAL_DST
 * matched against the static mesh. tcpdump on the bridge shows what crosses the wire.
 *
 *   pod netns …-a ("frontend")       bridge netns …-br          pod netns …-b ("web")
 *   eth0 10.77.0.2/24 <--veth--> va [ br0 ] vb <--veth--> eth0 10.77.0.3/24
 *   default route via eth0 (10.77.100.0/24 ClusterIPs)       app :8080 http, :9090 grpc, :7070 tcp,
 *   app UID 1000, sidecar UID 2102                           :7171 tcp (inbound skip port, plaintext)
 *                                                             app UID 1001, sidecar UID 2102
 *
 * Needs root, iproute2, iptables, tcpdump and setpriv (util-linux), and `npm run build`.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import fjp from 'fast-json-patch';
import { writeDevMesh } from '../certs/dev-mesh.js';
import { injectPod } from '../control-plane/injector/inject-pod.js';
import { NetnsLab, inNs, netnsUnavailable, type NsProcess } from './helpers/netns.js';
import { clientAppSource, serverAppSource } from './helpers/netns-apps.js';
import { startCapture, type TcpStream } from './helpers/netns-pcap.js';

const ROOT = join(import.meta.dirname, '..');
const WREN = join(ROOT, 'dist', 'cli', 'wren.js');
const NODE = process.execPath;
const PROTO = join(ROOT, 'test', 'fixtures', 'echo.proto');
const id = randomBytes(3).toString('hex');
const lab = new NetnsLab(`wren-e2e-${id}`);

const PROXY_UID = 2102;
const CLIENT_UID = 1000;
const SERVER_UID = 1001;
const CLIENT_IP = '10.77.0.2';
const SERVER_IP = '10.77.0.3';
const CLUSTER_IP = '10.77.100.10';
const TD = 'cluster.local';
const CLIENT_ID = `spiffe://${TD}/ns/shop/sa/frontend`;
const SERVER_ID = `spiffe://${TD}/ns/shop/sa/web`;

// Unique plaintext the apps exchange; none of it may ever be seen on the wire.
const tag = (what: string) => `wren-plaintext-${what}-${randomBytes(6).toString('hex')}`;
const MARK = { httpHeader: tag('h1-header'), httpBody: tag('h1-body'), vip: tag('vip'), grpc: tag('grpc'), tcp: tag('tcp'), reply: tag('reply') };
/** Sent on purpose in plaintext to an inbound skip port: proves the capture sees plaintext at all. */
const CONTROL = tag('control-passthrough');

let available = false;
let dir = '';
let ns = { a: '', b: '', br: '' };
let clientResult: Json;
let wire: { streams: TcpStream[]; frames: Buffer[]; droppedByKernel: number };
let sidecars: { a: NsProcess; b: NsProcess };
let apps: { server: NsProcess };
let injected: { client: V1Pod; server: V1Pod };
let probeRuns: { code: number | null; out: string; err: string }[] = [];

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const port = (p: number, name: string) => ({
  name,
  port: p,
  protocol: 'detect',
  endpoints: [{ address: SERVER_IP, port: p === 80 ? 8080 : p, proxyPort: 15006, identity: SERVER_ID }],
});
/** What a control plane would send: the web Service (ClusterIP + the pod's endpoint on each port). */
const MESH = [{ name: 'web', namespace: 'shop', clusterIPs: [CLUSTER_IP], ports: [port(80, 'http'), port(9090, 'grpc'), port(7070, 'tcp')] }];

/** A pod as a user would write it, put through the injector (offline, same code as the webhook). */
function inject(name: string, annotations: Record<string, string>): V1Pod {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', labels: { 'wren.io/inject': 'enabled' }, annotations },
    spec: { serviceAccountName: name, containers: [{ name: 'app', image: `${name}:1` }] },
  } as V1Pod;
  const r = injectPod(pod, { wrenCommand: [NODE, WREN], namespaceLabels: {} });
  if (!r.injected) throw new Error(`injector did not inject ${name}: ${r.reason}`);
  return fjp.applyPatch(structuredClone(pod), r.patch as fjp.Operation[], true, false).newDocument;
}
const container = (pod: V1Pod, name: string): V1Container => [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].find((c) => c.name === name)!;

function checkBuild(): void {
  for (const f of ['cli/wren.ts', 'cli/proxy-await.ts', 'cli/iptables.ts', 'cli/proxy-command.ts']) {
    const built = join(ROOT, 'dist', f.replace(/\.ts$/, '.js'));
    if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
    if (statSync(join(ROOT, f)).mtimeMs > statSync(built).mtimeMs) throw new Error(`${built} is older than ${f}: run \`npm run build\` first`);
  }
  if (!existsSync(join(ROOT, 'dist', 'proxy', 'native', 'build', 'original-dst.node'))) throw new Error('the SO_ORIGINAL_DST addon is not built: run `npm run build`');
}

beforeAll(async () => {
  const first = lab.add('a');
  if (first instanceof Error) return netnsUnavailable('pod-netns-e2e.test.ts', first.message);
  available = true;
  checkBuild();
  ns = { a: first, b: lab.add('b') as string, br: lab.add('br') as string };
  lab.veth({ ns: ns.a, dev: 'eth0', addrs: [`${CLIENT_IP}/24`] }, { ns: ns.br, dev: 'va' });
  lab.veth({ ns: ns.b, dev: 'eth0', addrs: [`${SERVER_IP}/24`] }, { ns: ns.br, dev: 'vb' });
  lab.bridge(ns.br, 'br0', ['va', 'vb']);
  // ClusterIPs live in their own range, reachable via the pod's default route, as in a cluster.
  for (const n of [ns.a, ns.b]) inNs(n, ['ip', 'route', 'add', 'default', 'dev', 'eth0']);

  dir = mkdtempSync(join(tmpdir(), 'wren-pod-e2e-'));
  chmodSync(dir, 0o755);
  const pki = await writeDevMesh(join(dir, 'pki'), {
    trustDomain: TD,
    workloads: [
      { namespace: 'shop', serviceAccount: 'frontend', name: 'frontend' },
      { namespace: 'shop', serviceAccount: 'web', name: 'web' },
    ],
  });
  chmodSync(join(dir, 'pki'), 0o755);
  const files = Object.fromEntries(pki.workloads.map((w) => [w.name, w]));
  // The proxy's key is its own: 0600 and owned by the proxy UID, as in its emptyDir.
  for (const w of pki.workloads) chownSync(w.keyFile, PROXY_UID, PROXY_UID);
  writeFileSync(join(dir, 'server-app.mjs'), serverAppSource(ROOT, PROTO));
  writeFileSync(join(dir, 'client-app.mjs'), clientAppSource(ROOT, PROTO));

  injected = { client: inject('frontend', {}), server: inject('web', { 'wren.io/skip-inbound-ports': '7171' }) };

  // 1. wren-init: the injected init container's arguments, as root, inside each pod.
  for (const [n, pod] of [[ns.a, injected.client], [ns.b, injected.server]] as const) {
    const init = container(pod, 'wren-init');
    const r = await lab.run(`wren-init in ${n}`, n, [NODE, WREN, ...init.args!], { uid: init.securityContext!.runAsUser! });
    if (r.code !== 0) throw new Error(`wren iptables failed in ${n} (exit ${r.code}): ${r.err}${r.out}`);
  }

  // 2. The apps, under their own UIDs.
  apps = { server: lab.spawn('web app', ns.b, [NODE, join(dir, 'server-app.mjs'), MARK.reply], { uid: SERVER_UID }) };
  const serverUp = apps.server.waitForOutput(/^ready$/m, 15_000);

  // 3. The sidecars, as the proxy container's UID, with a static mesh and file-based certificates.
  const start = (n: string, name: 'frontend' | 'web', pod: V1Pod) => {
    const cfg = {
      identity: { trustDomain: TD, namespace: 'shop', serviceAccount: name, pod: `${name}-0` },
      tls: { certFile: files[name].certFile, keyFile: files[name].keyFile, trustBundleFile: pki.caCertFile },
      shutdown: { gracePeriodMs: '1s' },
      mesh: { services: MESH },
    };
    const file = join(dir, `${name}-proxy.json`);
    writeFileSync(file, JSON.stringify(cfg, null, 2));
    return lab.spawn(`${name} sidecar`, n, [NODE, WREN, 'proxy', '--config', file], { uid: container(pod, 'wren-proxy').securityContext!.runAsUser! });
  };
  sidecars = { a: start(ns.a, 'frontend', injected.client), b: start(ns.b, 'web', injected.server) };
  await serverUp;

  // 4. The native sidecar's startupProbe, run as kubelet would: exec in the pod, the proxy's UID.
  probeRuns = await Promise.all(
    ([[ns.a, injected.client], [ns.b, injected.server]] as const).map(([n, pod]) => {
      const probe = container(pod, 'wren-proxy').startupProbe!.exec!.command!;
      // The probe's own --timeout is 2s with failureThreshold 120: retry like kubelet does.
      const sidecar = n === ns.a ? sidecars.a : sidecars.b;
      return (async () => {
        for (let i = 0; ; i++) {
          const r = await lab.run(`startupProbe in ${n}`, n, probe, { uid: PROXY_UID });
          if (r.code === 0 || i >= 5 || !sidecar.running) return r;
        }
      })();
    }),
  );
  for (const [i, r] of probeRuns.entries())
    if (r.code !== 0) throw new Error(`startupProbe failed in ${[ns.a, ns.b][i]}: ${r.err}${r.out}\n${sidecars.a.log()}\n${sidecars.b.log()}`);

  // 5. Capture the bridge, then let the client app make its calls.
  const capture = await startCapture(ns.br, 'br0');
  const client = await lab.run('frontend app', ns.a, [NODE, join(dir, 'client-app.mjs'), SERVER_IP, CLUSTER_IP, JSON.stringify({ ...MARK, control: CONTROL })], {
    uid: CLIENT_UID,
    timeoutMs: 20_000,
  });
  wire = await capture.stop();
  if (client.code !== 0) throw new Error(`client app failed (exit ${client.code}): ${client.err}\n${sidecars.a.log()}\n${sidecars.b.log()}`);
  clientResult = JSON.parse(client.out.trim().split('\n').pop()!);
}, 60_000);

afterAll(async () => {
  await lab.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 20_000);

/** On failure, show what the sidecars said. */
const diag = () => (available ? `\n${sidecars?.a?.log()}\n${sidecars?.b?.log()}\n${apps?.server?.log()}` : '');

test('the pods are wired as injected: init rules, sidecars as UID 2102, apps as other UIDs', () => {
  if (!available) return;
  const init = container(injected.server, 'wren-init');
  expect(init.args).toEqual(['iptables', '--proxy-uid', '2102', '--inbound-port', '15006', '--outbound-port', '15001', '--skip-inbound-ports', '7171']);
  for (const n of [ns.a, ns.b]) {
    const save = inNs(n, ['iptables-save', '-t', 'nat']);
    expect(save).toMatch(/^-A WREN_OUTPUT -m owner --uid-owner 2102 .*-j RETURN$/m);
    expect(save).toMatch(/^-A WREN_OUTPUT -p tcp .*-j REDIRECT --to-ports 15001$/m);
    expect(save).toMatch(/^-A WREN_INBOUND -p tcp .*-j REDIRECT --to-ports 15006$/m);
    expect(/^-A WREN_INBOUND -p tcp -m multiport --dports 7171 .*-j RETURN$/m.test(save)).toBe(n === ns.b);
  }
  expect(NetnsLab.uidOf(sidecars.a.child.pid!)).toBe(PROXY_UID);
  expect(NetnsLab.uidOf(sidecars.b.child.pid!)).toBe(PROXY_UID);
  expect(NetnsLab.uidOf(apps.server.child.pid!)).toBe(SERVER_UID);
  expect(clientResult.uid).toBe(CLIENT_UID);
  for (const r of probeRuns) expect(r.out).toMatch(/^proxy ready: http:\/\/127\.0\.0\.1:15000\/ready answered 200/);
});

test('HTTP/1.1 to the other pod IP:port: through both sidecars, and the callee sees the caller identity', () => {
  if (!available) return;
  const r = clientResult.http;
  expect({ r, diag: r.status === 200 ? '' : diag() }).toMatchObject({ r: { status: 200, proxyError: null }, diag: '' });
  expect(r.body).toMatchObject({ app: 'web', uid: SERVER_UID, method: 'POST', url: '/orders', host: `${SERVER_IP}:8080`, marker: MARK.httpHeader, body: MARK.httpBody, reply: MARK.reply });
  // Delivered by the web pod's sidecar over loopback, not straight from the other pod.
  expect(r.body.from).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
  expect(r.body.xfcc).toContain(`URI=${CLIENT_ID}`);
  expect(r.body.xfcc).toContain(`By=${SERVER_ID}`);
});

test('HTTP to the Service ClusterIP: no kube-proxy, the client sidecar resolves it from the original destination', () => {
  if (!available) return;
  const r = clientResult.vip;
  expect({ r, diag: r.status === 200 ? '' : diag() }).toMatchObject({ r: { status: 200 }, diag: '' });
  expect(r.body).toMatchObject({ app: 'web', host: CLUSTER_IP, marker: MARK.vip, body: MARK.vip });
  expect(r.body.xfcc).toContain(`URI=${CLIENT_ID}`);
});

test('gRPC to the other pod IP:port, with the caller identity', () => {
  if (!available) return;
  const r = clientResult.grpc;
  expect({ r, diag: r.error ? diag() : '' }).toMatchObject({ r: { message: `echo ${MARK.grpc} reply=${MARK.reply}` }, diag: '' });
  expect(r.caller).toContain(`URI=${CLIENT_ID}`);
});

test('raw TCP to the other pod IP:port, tunnelled through the sidecars', () => {
  if (!available) return;
  const r = clientResult.tcp;
  expect({ r, diag: r.error ? diag() : '' }).toMatchObject({ r: { reply: { port: 7070, uid: SERVER_UID, got: MARK.tcp, reply: MARK.reply } }, diag: '' });
  expect(r.reply.from).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
});

test('on the wire: only mTLS to port 15006, and no plaintext the apps exchanged', () => {
  if (!available) return;
  expect(wire.droppedByKernel).toBe(0);
  const withData = wire.streams.filter((s) => s.data.length > 0);
  const show = (s: TcpStream) => `${s.src}:${s.sport} > ${s.dst}:${s.dport} (${s.data.length} bytes)`;
  // The control connection went to an inbound skip port: plaintext, directly between the pods.
  // It proves the capture sees payloads, so the absence of the other markers means something.
  expect(clientResult.control).toMatchObject({ reply: { port: 7171, got: CONTROL } });
  expect(clientResult.control.reply.from).toMatch(new RegExp(`^(::ffff:)?${CLIENT_IP.replace(/\./g, '\\.')}$`));
  expect(withData.some((s) => s.dport === 7171 && s.data.includes(CONTROL))).toBe(true);

  // Everything else that carried data went between the pods to or from the inbound port 15006.
  const meshed = withData.filter((s) => s.dport !== 7171 && s.sport !== 7171);
  expect(meshed.map(show).filter((x) => !/:15006 \(|:15006 >/.test(x))).toEqual([]);
  const toInbound = meshed.filter((s) => s.src === CLIENT_IP && s.dst === SERVER_IP && s.dport === 15006);
  const fromInbound = meshed.filter((s) => s.src === SERVER_IP && s.sport === 15006 && s.dst === CLIENT_IP);
  expect(toInbound.length).toBeGreaterThanOrEqual(1);
  expect(fromInbound.length).toBeGreaterThanOrEqual(1);
  // Each connection opens with a TLS handshake record (0x16 0x03): ClientHello one way, ServerHello back.
  for (const s of toInbound) expect([show(s), s.data[0], s.data[1], s.data[5]]).toEqual([show(s), 0x16, 0x03, 0x01]);
  for (const s of fromInbound) expect([show(s), s.data[0], s.data[1], s.data[5]]).toEqual([show(s), 0x16, 0x03, 0x02]);
  // ... and then only TLS records: application data (0x17), never a readable request.
  for (const s of meshed) expect([show(s), s.data.includes(Buffer.from('HTTP/1.1')), s.data.includes(Buffer.from('PRI * HTTP/2.0'))]).toEqual([show(s), false, false]);

  const everything = Buffer.concat([...wire.frames, ...meshed.map((s) => s.data)]);
  for (const [what, marker] of Object.entries(MARK)) expect([what, everything.includes(Buffer.from(marker))]).toEqual([what, false]);
});
