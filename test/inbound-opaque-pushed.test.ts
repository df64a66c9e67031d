import { connect as h2connect } from 'node:http2';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { stringify } from 'yaml';
import type { Proxy } from '../proxy/proxy.js';
import { waitFor } from './control-plane-harness.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import { withSidecar } from './helpers/meshed-pod.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { replaceFile } from './helpers/replace-file.js';
import { join } from 'node:path';

/**
 * A server-first protocol (the app speaks first: MySQL, SMTP, a greeting) on a port its
 * Service declares opaque (appProtocol tcp) but that is not in the sidecar's static
 * protocol.opaquePorts: the client sidecar opens the tunnel at once (the route says opaque),
 * and the server sidecar's inbound splices it at once too, because the control plane
 * pushed that target port with the pod's inbound policy (InboundPolicyResource.opaque_ports;
 * Istio's inbound takes each port's protocol from the Services that select the pod).
 * Before, the inbound sniffed it for HTTP and the greeting came only after
 * protocol.detectTimeoutMs. An HTTP port of the same pod is still parsed: raw HTTP with a
 * forged XFCC in a CONNECT gets the session peer's XFCC, whatever the peer claims.
 */
const pki = testPki();
const DETECT_MS = 2000;
const CLUSTER_IP = '10.96.7.7';
let plane: DirControlPlane;
let server: Proxy, client: Proxy, permissive: Proxy;
let greet: FakeApp;
let http: { port: number; close(): Promise<void> };
const seenXfcc: string[] = [];
const serverLogs: string[] = [];
let dstPort = 6000;

const pod = (name: string, proxyPort: number, labels: Record<string, string>) =>
  stringify(withSidecar({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: 'demo', labels: { ...labels, 'wren.io/inject': 'enabled' }, annotations: { 'wren.io/proxy-port': String(proxyPort) } },
    spec: { serviceAccountName: 'db', containers: [{ name: 'app', image: 'x' }] },
  }), { lineWidth: 0 });

const serviceYaml = (name: string, clusterIP: string, ports: object[]) =>
  stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'demo' }, spec: { clusterIP, ports } });

const sliceYaml = (name: string, svc: string, ports: object[], podName: string) =>
  stringify({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name, namespace: 'demo', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4', ports, endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: podName } }],
  });

beforeAll(async () => {
  greet = await fakeTcpApp('220 greeting\n');
  http = await listenOnLoopback(createServer((req, res) => {
    seenXfcc.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('ok');
  }));
  plane = await startDirControlPlane({ prefix: 'wren-opaque-pushed-', trustDomain: 'cluster.local', seed: 56, dirSource: { watchDebounceMs: 10, rescanMs: 200 } });
  const common = { pki, namespace: 'demo', controlPlane: `127.0.0.1:${plane.cp.grpcPort}`, discoveryBackoff: { initialMs: 20, maxMs: 200 }, config: { protocol: { detectTimeoutMs: DETECT_MS } } };
  // Two listener workers: each one's inbound gets the pushed ports inside the snapshot.
  server = await startProxy({ ...common, serviceAccount: 'db', pod: 'db-0', logs: serverLogs, config: { ...common.config, concurrency: 2 } });
  permissive = await startProxy({ ...common, serviceAccount: 'db', pod: 'db-perm-0', inboundOriginalDst: () => ({ address: '127.0.0.1', port: greet.port }) });
  client = await startProxy({ ...common, serviceAccount: 'client', pod: 'client-0', originalDst: () => ({ address: CLUSTER_IP, port: dstPort }) });
  const greetPort = { name: 'greet', port: greet.port };
  await replaceFile(join(plane.dir, 'db.yaml'), [
    pod('db-0', server.inboundPort, { app: 'db' }),
    pod('db-perm-0', permissive.inboundPort, { app: 'db-perm' }),
    // A non-default port declared opaque by appProtocol, and an HTTP port of the same pod.
    serviceYaml('db', CLUSTER_IP, [{ name: 'greet', port: 6000, appProtocol: 'tcp' }, { name: 'http', port: 80 }]),
    sliceYaml('db-1', 'db', [greetPort, { name: 'http', port: http.port }], 'db-0'),
    // The PERMISSIVE pod: declared opaque by its port name (`tcp-`).
    serviceYaml('db-perm', '10.96.7.8', [{ name: 'tcp-greet', port: 6000 }]),
    sliceYaml('db-perm-1', 'db-perm', [{ name: 'tcp-greet', port: greet.port }], 'db-perm-0'),
    stringify({ apiVersion: 'policy.wren.io/v1alpha1', kind: 'PeerAuthentication', metadata: { name: 'perm', namespace: 'demo' }, spec: { selector: { matchLabels: { app: 'db-perm' } }, mtls: { mode: 'PERMISSIVE' } } }),
  ].join('---\n'));
  await waitFor(() => server.policy.opaquePorts?.includes(greet.port), 'the server sidecar got the pushed opaque port');
  const applied = (worker: number) => serverLogs.some((l) => {
    const r = JSON.parse(l) as { msg?: string; worker?: number; policy?: string };
    return r.msg === 'inbound policy applied' && r.worker === worker && r.policy?.endsWith(`opaque=${greet.port}`);
  });
  await waitFor(() => applied(0) && applied(1), 'both listener workers applied the pushed opaque port');
  await waitFor(() => permissive.policy.opaquePorts?.includes(greet.port) && permissive.policy.mtls.mode === 'PERMISSIVE', 'the PERMISSIVE sidecar got its policy and opaque port');
  await waitFor(() => client.snapshot.services.find((s) => s.name === 'db')?.ports.every((p) => p.endpoints.length === 1), 'the client sidecar got db');
});

afterAll(async () => {
  await Promise.all([client, permissive].map((p) => p?.close()));
  await server?.close();
  await plane?.close(100);
  await greet?.close();
  await http?.close();
});

/** Connects to `port`, and resolves with how long the first line (the app's greeting) took. */
function timeToGreeting(port: number): Promise<{ ms: number; line: string }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const s: Socket = connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\n')) {
        resolve({ ms: Date.now() - t0, line: got });
        s.destroy();
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed before the greeting (got ${JSON.stringify(got)})`)));
  });
}

test('the pushed opaque ports: the app\'s port the Service declares opaque, not its HTTP port; the control plane shows what the proxy ACKed', async () => {
  expect(server.policy.opaquePorts).toEqual([greet.port]);
  const admin = `http://127.0.0.1:${plane.cp.adminPort}`;
  await waitFor(async () => {
    const rows = ((await (await fetch(`${admin}/debug/proxies`)).json()) as { proxies: { identity: { pod: string }; inboundOpaquePorts: number[] }[] }).proxies;
    return rows.find((r) => r.identity.pod === 'db-0')?.inboundOpaquePorts.join() === String(greet.port);
  }, '/debug/proxies shows the ACKed opaque ports');
  const dump = (await (await fetch(`${admin}/debug/proxy-config?pod=demo/db-0`)).json()) as { proxies: { policy: { opaquePorts?: number[] } }[] };
  expect(dump.proxies[0].policy.opaquePorts).toEqual([greet.port]);
  // As the proxy's own /config_dump shows its policy in force.
  const own = (await (await fetch(`http://127.0.0.1:${server.adminPort}/config_dump`)).json()) as { inboundPolicy: { opaquePorts?: number[] } };
  expect(own.inboundPolicy.opaquePorts).toEqual([greet.port]);
});

test('a server-first app behind two sidecars greets at once on a port its Service declares opaque (not after the inbound detection timeout)', async () => {
  dstPort = 6000;
  // Several connections, so both of the server's listener workers are likely to take some.
  for (let i = 0; i < 4; i++) {
    const r = await timeToGreeting(client.outboundPort);
    expect(r.line).toBe('220 greeting\n');
    // Well under the detection timeout either side (2 s): no sniffing wait anywhere.
    expect(r.ms).toBeLessThan(DETECT_MS / 2);
  }
});

test('a plaintext client on a PERMISSIVE port its Service declares opaque (`tcp-` name) is spliced at once too', async () => {
  const r = await timeToGreeting(permissive.inboundPort);
  expect(r.line).toBe('220 greeting\n');
  expect(r.ms).toBeLessThan(DETECT_MS / 2);
});

test('the HTTP port of the same pod is still parsed: a forged XFCC sent raw through a CONNECT is replaced by the session peer\'s', async () => {
  const m = pki.issue('demo', 'mallory');
  const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  const st = s.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${http.port}`, 'wren-target-port': String(http.port) });
  st.on('error', () => undefined);
  st.write('GET / HTTP/1.1\r\nHost: db\r\nX-Forwarded-Client-Cert: By=spiffe://cluster.local/ns/demo/sa/db;URI=spiffe://cluster.local/ns/demo/sa/admin\r\n\r\n');
  let got = '';
  await new Promise<void>((resolve) => {
    st.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.endsWith('ok')) resolve();
    });
    st.on('close', resolve);
  });
  s.destroy();
  expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(seenXfcc.at(-1)).toContain('URI=spiffe://cluster.local/ns/demo/sa/mallory');
  expect(seenXfcc.at(-1)).not.toContain('sa/admin');
});
