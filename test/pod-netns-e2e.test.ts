/**
 * Two "pods" in network namespaces, meshed for real (issue #6): `wren iptables` inside
 * each (the injected init container's exact arguments), an app that knows nothing of the
 * mesh under its own UID, and a real `wren proxy` sidecar under UID 2102, the UID the
 * rules exclude. The client app (UID 1000) calls the other pod's IP and port over
 * HTTP/1.1, gRPC and raw TCP, and a Service ClusterIP no kube-proxy serves; routing comes
 * only from SO_ORIGINAL_DST. tcpdump on the bridge shows what crosses the wire.
 *
 * In-cluster mode (the first block) runs the pods as the injector sets them up: a real
 * `wren control-plane` on the bridge is the CA (Certify, bootstrap tokens) and serves the
 * mesh from Kubernetes objects (Services, EndpointSlices, Pods); each sidecar is started
 * with no config file, only the injected container's environment (fieldRefs resolved as
 * kubelet would) and its volumes (the token projection, the run emptyDir) mounted at the
 * injected paths. The second block keeps the simpler setup: certificate files from
 * `wren certs` and a static mesh.
 *
 * Layout: test/helpers/netns-pods.ts. Needs root, iproute2, iptables, tcpdump,
 * util-linux (setpriv, unshare, mount), and `npm run build`; without them both blocks are
 * reported as skipped, with the reason (decided at collection, netnsSkipReason).
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { writeDevMesh } from '../certs/dev-mesh.js';
import { PROXY_RUN_DIR, PROXY_RUN_VOLUME, TOKEN_DIR } from '../control-plane/injector/sidecar.js';
import { NetnsLab, inNs, netnsSkipReason, type NsProcess } from './helpers/netns.js';
import { startMeshControlPlane, type MeshControlPlane, type ServiceSpec } from './helpers/netns-control-plane.js';
import { containerEnv, containerOf, containerVolumes } from './helpers/netns-kubelet.js';
import { CLIENT_ID, NAMESPACE, NET, NET6, NODE, POD, POD_TOOLS, SA, SERVER_ID, TD, TwoPods, UID, WREN, showStream, type Json } from './helpers/netns-pods.js';

const id = randomBytes(3).toString('hex');
/** Decided when jest collects the file: without namespaces or a tool the suites are skipped, with the reason. */
const SKIP = netnsSkipReason('pod-netns-e2e.test.ts', POD_TOOLS);
const suite = SKIP ? describe.skip : describe;
const title = (t: string) => (SKIP ? `${t} (skipped: ${SKIP})` : t);
const CP_PORT = 15010;
const withData = (p: TwoPods) => p.wire.streams.filter((s) => s.data.length > 0);
const isControlPlane = (s: { src: string; sport: number; dst: string; dport: number }) =>
  (s.dst === NET.controlPlane && s.dport === CP_PORT) || (s.src === NET.controlPlane && s.sport === CP_PORT);
/** Each connection opens with a TLS handshake record (0x16 0x03): ClientHello (type 1) one way, ServerHello (2) back. */
const opensWith = (s: { data: Buffer }) => [s.data[0], s.data[1], s.data[5]];

/** The data path, the same whichever way the sidecars get certificates and mesh. */
/** The web pod's own IP, as its app sees a connection from its sidecar. */
const ownPodIp = new RegExp(`^(::ffff:)?${NET.server.replace(/\./g, '\\.')}$`);

function dataPathTests(p: TwoPods, withControlPlane: boolean): void {
  test('the pods are wired as injected: init rules, sidecars as UID 2102, apps as other UIDs', () => {
    const init = containerOf(p.injected.server, 'wren-init');
    expect(init.args).toEqual(['iptables', '--proxy-uid', '2102', '--inbound-port', '15006', '--outbound-port', '15001', '--admin-port', '15000', '--metrics-port', '15020', '--ipv6', '--skip-inbound-ports', '7171']);
    for (const n of [p.ns.a, p.ns.b]) {
      const save = inNs(n, ['iptables-save', '-t', 'nat']);
      expect(save).toMatch(/^-A WREN_OUTPUT -m owner --uid-owner 2102 .*-j RETURN$/m);
      expect(save).toMatch(/^-A WREN_OUTPUT -p tcp .*-j REDIRECT --to-ports 15001$/m);
      expect(save).toMatch(/^-A WREN_INBOUND -p tcp .*-j REDIRECT --to-ports 15006$/m);
      expect(save).toMatch(/^-A WREN_INBOUND -p tcp -m multiport --dports 15000,15001,15006,15020 .*-j RETURN$/m);
      expect(/^-A WREN_INBOUND -p tcp -m multiport --dports 7171 .*-j RETURN$/m.test(save)).toBe(n === p.ns.b);
      // Dual-stack pods: `--ipv6` installed the same redirects for IPv6.
      const save6 = inNs(n, ['ip6tables-save', '-t', 'nat']);
      expect(save6).toMatch(/^-A WREN_OUTPUT -p tcp .*-j REDIRECT --to-ports 15001$/m);
      expect(save6).toMatch(/^-A WREN_INBOUND -p tcp .*-j REDIRECT --to-ports 15006$/m);
    }
    expect(NetnsLab.uidOf(p.sidecars.a.child.pid!)).toBe(UID.proxy);
    expect(NetnsLab.uidOf(p.sidecars.b.child.pid!)).toBe(UID.proxy);
    expect(NetnsLab.uidOf(p.server.child.pid!)).toBe(UID.server);
    expect(p.clientResult.uid).toBe(UID.client);
    for (const r of p.probeRuns) expect(r.out).toMatch(/^proxy ready: http:\/\/127\.0\.0\.1:15000\/ready answered 200/);
  });

  test('HTTP/1.1 to the other pod IP:port: through both sidecars, and the callee sees the caller identity', () => {
    const r = p.clientResult.http;
    expect({ r, diag: r.status === 200 ? '' : p.diag() }).toMatchObject({ r: { status: 200, proxyError: null }, diag: '' });
    expect(r.body).toMatchObject({ app: 'web', uid: UID.server, method: 'POST', url: '/orders', host: `${NET.server}:8080`, marker: p.marks.httpHeader, body: p.marks.httpBody, reply: p.marks.reply });
    // Delivered by the web pod's own sidecar to the pod IP (Istio's inbound since 1.10), not straight from the other pod.
    expect(r.body.from).toMatch(ownPodIp);
    expect(r.body.xfcc).toContain(`URI=${CLIENT_ID}`);
    expect(r.body.xfcc).toContain(`By=${SERVER_ID}`);
  });

  test('HTTP to the Service ClusterIP: no kube-proxy, the client sidecar resolves it from the original destination', () => {
    const r = p.clientResult.vip;
    expect({ r, diag: r.status === 200 ? '' : p.diag() }).toMatchObject({ r: { status: 200 }, diag: '' });
    expect(r.body).toMatchObject({ app: 'web', host: NET.webClusterIP, marker: p.marks.vip, body: p.marks.vip });
    expect(r.body.xfcc).toContain(`URI=${CLIENT_ID}`);
  });

  test('gRPC to the other pod IP:port, with the caller identity', () => {
    const r = p.clientResult.grpc;
    expect({ r, diag: r.error ? p.diag() : '' }).toMatchObject({ r: { message: `echo ${p.marks.grpc} reply=${p.marks.reply}` }, diag: '' });
    expect(r.caller).toContain(`URI=${CLIENT_ID}`);
  });

  test('raw TCP to the other pod IP:port, tunnelled through the sidecars', () => {
    const r = p.clientResult.tcp;
    expect({ r, diag: r.error ? p.diag() : '' }).toMatchObject({ r: { reply: { port: 7070, uid: UID.server, got: p.marks.tcp, reply: p.marks.reply } }, diag: '' });
    expect(r.reply.from).toMatch(ownPodIp);
  });

  test('a port the app binds to 127.0.0.1 only stays private to its pod: the sidecar delivers to the pod IP, where nothing listens', () => {
    const r = p.clientResult.localOnly;
    // Before, the inbound delivered to 127.0.0.1, so any authorized peer reached the pod's localhost-only ports.
    expect({ status: r.status, proxyError: r.proxyError }).toEqual({ status: 502, proxyError: 'connect-refused' });
    expect(JSON.stringify(r.body)).not.toContain('web-localhost-only');
  });

  test('IPv6: HTTP/1.1 and raw TCP to the other pod IPv6 address go through both sidecars, with the caller identity', () => {
    const [h, t] = [p.clientResult.http6, p.clientResult.tcp6];
    expect({ h, t, diag: h.status === 200 && !t.error ? '' : p.diag() }).toMatchObject({ h: { status: 200, proxyError: null }, t: { reply: { port: 7070, uid: UID.server, got: p.marks.tcp6, reply: p.marks.reply } }, diag: '' });
    expect(h.body).toMatchObject({ app: 'web', uid: UID.server, host: `[${NET6.server}]:8080`, marker: p.marks.http6, body: p.marks.http6, reply: p.marks.reply });
    expect(h.body.xfcc).toBe(`By=${SERVER_ID};URI=${CLIENT_ID}`);
    // Delivered by the web pod's own sidecar to the pod IP (app.address), not straight from the other pod.
    for (const from of [h.body.from, t.reply.from]) expect(from).toMatch(ownPodIp);
    // On the wire: the client sidecar dialled the web sidecar's IPv6 address, port 15006, with TLS.
    const v6 = withData(p).filter((s) => s.src === NET6.client && s.dst === NET6.server && s.dport === 15006);
    expect(v6.length).toBeGreaterThanOrEqual(1);
    for (const s of v6) expect([showStream(s), ...opensWith(s)]).toEqual([showStream(s), 0x16, 0x03, 0x01]);
  });

  test('on the wire: only mTLS to port 15006 between the pods, and no plaintext the apps exchanged', () => {
    expect(p.wire.droppedByKernel).toBe(0);
    // The control connection went to an inbound skip port: plaintext, directly between the pods.
    // It proves the capture sees payloads, so the absence of the other markers means something.
    expect(p.clientResult.control).toMatchObject({ reply: { port: 7171, got: p.control } });
    expect(p.clientResult.control.reply.from).toMatch(new RegExp(`^(::ffff:)?${NET.client.replace(/\./g, '\\.')}$`));
    expect(withData(p).some((s) => s.dport === 7171 && s.data.includes(p.control))).toBe(true);
    // Sidecar <-> control plane is checked by the in-cluster block; with files there is none.
    expect(withData(p).some(isControlPlane)).toBe(withControlPlane);

    // Everything else that carried data went between the pods to or from the inbound port 15006.
    const meshed = withData(p).filter((s) => s.dport !== 7171 && s.sport !== 7171 && !isControlPlane(s));
    expect(meshed.map(showStream).filter((x) => !/:15006 \(|:15006 >/.test(x))).toEqual([]);
    const toInbound = meshed.filter((s) => s.src === NET.client && s.dst === NET.server && s.dport === 15006);
    const fromInbound = meshed.filter((s) => s.src === NET.server && s.sport === 15006 && s.dst === NET.client);
    expect(toInbound.length).toBeGreaterThanOrEqual(1);
    expect(fromInbound.length).toBeGreaterThanOrEqual(1);
    for (const s of toInbound) expect([showStream(s), ...opensWith(s)]).toEqual([showStream(s), 0x16, 0x03, 0x01]);
    for (const s of fromInbound) expect([showStream(s), ...opensWith(s)]).toEqual([showStream(s), 0x16, 0x03, 0x02]);
    // ... and then only TLS records: application data (0x17), never a readable request.
    for (const s of meshed) expect([showStream(s), s.data.includes(Buffer.from('HTTP/1.1')), s.data.includes(Buffer.from('PRI * HTTP/2.0'))]).toEqual([showStream(s), false, false]);

    const everything = Buffer.concat([...p.wire.frames, ...meshed.map((s) => s.data)]);
    for (const [what, marker] of Object.entries(p.marks)) expect([what, everything.includes(Buffer.from(marker))]).toEqual([what, false]);
  });
}

suite(title('in-cluster mode: certificates from the control plane (Certify), mesh from Services, EndpointSlices and Pods'), () => {
  const p = new TwoPods(`wren-e2e-${id}-k`);
  let cp: MeshControlPlane;
  let admin: Record<'a' | 'b', { certs: Json; dump: Json }>;
  let cpMetrics: Map<string, number>;
  /** The server pod's metrics port as Prometheus reaches it: from outside the pod (the bridge), on the pod IP. */
  let scraped: { status: number; body: string }[];
  /** kubelet's view from the node (the bridge): the rewritten probes on the pod IP:15020, and the app port itself in plaintext. */
  let kubelet: { status: number; body: string }[];
  const pods = () => ({ a: p.injected.client, b: p.injected.server });
  /** Host directory of a pod's volume (what kubelet mounts at the injected mountPath). */
  const volume = (pod: V1Pod, name: string) => join(p.dir, 'kubelet', pod.metadata!.name!, name);
  const SERVICES: ServiceSpec[] = [
    { name: SA.server, clusterIP: NET.webClusterIP, pod: POD.server, podIP: NET.server, podIP6: NET6.server, ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'grpc', port: 9090, targetPort: 9090 }, { name: 'tcp', port: 7070, targetPort: 7070 }, { name: 'http-debug', port: 8181, targetPort: 8181 }] },
    { name: SA.client, clusterIP: NET.frontendClusterIP, pod: POD.client, podIP: NET.client, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  ];

  /** The injected wren-proxy container, run as kubelet would: its args on the image's entrypoint, its env, its volumes, its UID. */
  function startInjectedSidecar(which: 'a' | 'b', pod: V1Pod, token: string): NsProcess {
    const c = containerOf(pod, 'wren-proxy');
    const uid = c.securityContext!.runAsUser!;
    const mounts = containerVolumes(pod, c, join(p.dir, 'kubelet', pod.metadata!.name!), { uid, serviceAccountToken: token });
    // A writable working directory inside the test dir, so a stray relative write would be seen by the no-key check.
    const cwd = volume(pod, 'workdir');
    mkdirSync(cwd);
    chownSync(cwd, uid, uid);
    // The image's ENTRYPOINT is `node /app/dist/cli/wren.js` (Dockerfile); the container only adds args.
    return p.lab.spawn(`${pod.metadata!.name} sidecar`, p.ns[which], [NODE, WREN, ...(c.args ?? [])], { uid, env: containerEnv(pod, c), mounts, cwd });
  }

  beforeAll(async () => {
    await p.setUp();
    cp = await startMeshControlPlane(p.lab, {
      ns: p.ns.br, ip: NET.controlPlane, dir: p.dir, namespace: NAMESPACE, trustDomain: TD, serviceAccounts: [SA.client, SA.server], services: SERVICES, wren: [NODE, WREN],
    });
    p.companions.push(cp.proc);
    // The injector webhook is served by the control plane and hands out its address and trust bundle (control-plane/main.ts).
    const injected = p.inject({ trustDomain: TD, controlPlaneAddress: cp.address, trustBundlePem: cp.trustBundlePem });
    // The pods are "created": the API server's view now has them, so their endpoints route (5: web's 4 ports, frontend's 1;
    // the dual-stack web pod is one endpoint per port, its IPv6 address carried along, control-plane/translate/translate.ts).
    await cp.addPods([injected.client, injected.server], 5);
    await p.runInit();
    const serverUp = p.startServerApp();
    // Capture from before the sidecars start, so their Certify calls are on it.
    await p.startCapture();
    p.sidecars = { a: startInjectedSidecar('a', injected.client, cp.tokens[SA.client]), b: startInjectedSidecar('b', injected.server, cp.tokens[SA.server]) };
    await serverUp;
    await p.runProbes();
    await p.runClient();
    const [a, b] = await Promise.all([p.admin('a', ['/certs', '/config_dump']), p.admin('b', ['/certs', '/config_dump'])]);
    admin = { a: { certs: a[0], dump: a[1] }, b: { certs: b[0], dump: b[1] } };
    cpMetrics = await cp.metrics();
    const app = containerOf(injected.server, 'app');
    kubelet = await p.lab.httpGet(p.ns.br, [
      ...[app.readinessProbe!, app.livenessProbe!].map((probe) => `http://${NET.server}:${probe.httpGet!.port}${probe.httpGet!.path}`),
      `http://${NET.server}:8080/healthz`,
    ]);
    // The proxy's own readinessProbe, as kubelet runs it (from the node, on the pod IP) once the startup probe passed.
    const ready = containerOf(injected.server, 'wren-proxy').readinessProbe!.httpGet!;
    scraped = await p.lab.httpGet(p.ns.br, [
      ...['/stats/prometheus', '/healthz/ready', '/config_dump'].map((path) => `http://${NET.server}:15020${path}`),
      `http://${NET.server}:${ready.port}${ready.path}`,
    ]);
  }, 120_000);

  afterAll(async () => {
    // WREN_E2E_LOGS=1 shows what the control plane and the sidecars said, pass or fail.
    if (process.env.WREN_E2E_LOGS === '1') console.log(p.diag());
    await p.cleanup();
  }, 20_000);

  dataPathTests(p, true);

  test('Prometheus scrapes the injected sidecar on the pod IP:15020 (never redirected to 15006); nothing of the admin port there; kubelet\'s readiness probe of the proxy passes there', () => {
    expect(scraped.map((r) => r.status)).toEqual([200, 200, 404, 200]);
    expect(scraped[0].body).toMatch(/^istio_requests_total\{reporter="destination".*response_code="200".*\} [1-9]/m);
  });

  test('kubelet\'s probes, rewritten to the pod IP:15020, pass through the sidecar (UID 2102 reaches the app on the pod IP unredirected); the probed port itself stays behind STRICT mTLS', () => {
    const app = containerOf(p.injected.server, 'app');
    expect([app.readinessProbe!.httpGet, app.livenessProbe!.httpGet]).toEqual([
      { path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' },
      { path: '/app-health/app/livez', port: 15020, scheme: 'HTTP' },
    ]);
    expect(kubelet.slice(0, 2)).toEqual([{ status: 200, body: 'ok\n' }, { status: 200, body: 'ok\n' }]);
    // Plaintext from the node to the app's own port is redirected to 15006 and refused: no probe port was skipped.
    expect(kubelet[2].status).not.toBe(200);
    expect(kubelet[2].body).not.toContain(p.marks.reply);
    expect(scraped[0].body).toMatch(/^wren_app_probes_total\{probe="app\/readyz",result="success"\} 1$/m);
  });

  test('each sidecar runs from the injected environment alone: no config file, mesh and certificate from the control plane', () => {
    for (const [which, ip, sa, spiffe] of [['a', NET.client, SA.client, CLIENT_ID], ['b', NET.server, SA.server, SERVER_ID]] as const) {
      const pod = pods()[which];
      const c = containerOf(pod, 'wren-proxy');
      expect([c.command, c.args]).toEqual([undefined, ['proxy']]);
      const pid = p.sidecars[which].child.pid!;
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)).toEqual([NODE, WREN, 'proxy']);
      const environ = Object.fromEntries(
        readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      // Exactly the injected variables (plus PATH), the fieldRefs resolved from the pod.
      expect(Object.keys(environ).sort()).toEqual([...c.env!.map((e) => e.name), 'PATH'].sort());
      expect(environ).toMatchObject({
        POD_NAME: pod.metadata!.name, POD_NAMESPACE: NAMESPACE, POD_IP: ip, WREN_SERVICE_ACCOUNT: sa, WREN_TRUST_DOMAIN: TD,
        WREN_CONTROL_PLANE: cp.address, WREN_TRUST_BUNDLE: cp.trustBundlePem, WREN_TOKEN_FILE: `${TOKEN_DIR}/token`, WREN_RUN_DIR: PROXY_RUN_DIR,
      });
      expect(admin[which].certs.identity).toBe(spiffe);
      expect(admin[which].dump.source).toBe(`control-plane:${cp.address}`);
      const web = (admin[which].dump.services as Json[]).find((s) => s.name === SA.server && s.namespace === NAMESPACE);
      expect(web).toMatchObject({ clusterIPs: [NET.webClusterIP] });
      // The dual-stack web pod (one EndpointSlice per family) is one endpoint per port, at its IPv4 address (the
      // Service's family), its IPv6 address carried along (control-plane/translate/translate.ts).
      expect(web!.ports.map((x: Json) => [x.port, x.protocol, x.endpoints.map((e: Json) => [e.address, e.port, e.proxyPort, e.identity, e.additionalAddresses])])).toEqual([
        [80, 'http1', [[NET.server, 8080, 15006, SERVER_ID, [NET6.server]]]],
        [9090, 'grpc', [[NET.server, 9090, 15006, SERVER_ID, [NET6.server]]]],
        [7070, 'opaque', [[NET.server, 7070, 15006, SERVER_ID, [NET6.server]]]],
        [8181, 'http1', [[NET.server, 8181, 15006, SERVER_ID, [NET6.server]]]],
      ]);
      // POD_IP is where the sidecar delivers inbound traffic (Istio's INSTANCE_IP), not 127.0.0.1.
      expect(admin[which].dump.bootstrap.app).toEqual({ address: ip });
    }
  });

  test('the identity the callee sees was issued by the control plane, under the root it wrote with --write-trust-bundle', () => {
    const pems = (text: string) => text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const anchors = pems(readFileSync(cp.trustBundleFile, 'utf8'));
    expect(anchors).toHaveLength(1);
    const root = new X509Certificate(anchors[0] ?? '');
    expect([root.ca, root.subject === root.issuer, root.verify(root.publicKey)]).toEqual([true, true, true]);
    for (const [which, spiffe] of [['a', CLIENT_ID], ['b', SERVER_ID]] as const) {
      const run = volume(pods()[which], PROXY_RUN_VOLUME);
      const leaf = new X509Certificate(pems(readFileSync(join(run, 'identity.crt'), 'utf8'))[0] ?? '');
      expect(leaf.subjectAltName).toBe(`URI:${spiffe}`);
      expect([leaf.checkIssued(root), leaf.verify(root.publicKey)]).toEqual([true, true]);
      // The certificate in the sidecar's run dir is the one it serves, and it trusts only the control plane's root.
      expect(admin[which].certs).toMatchObject({ identity: spiffe, serial: leaf.serialNumber, issuer: root.subject, trustAnchors: [{ fingerprint256: root.fingerprint256 }] });
      expect(pems(readFileSync(join(run, 'trust-bundle.crt'), 'utf8'))).toEqual(anchors);
    }
    // The web sidecar put URI= from the peer certificate it verified against that root alone.
    expect(p.clientResult.http.body.xfcc).toBe(`By=${SERVER_ID};URI=${CLIENT_ID}`);
    expect(p.clientResult.grpc.caller).toBe(`By=${SERVER_ID};URI=${CLIENT_ID}`);
    // One Certify per sidecar, none refused.
    expect([cpMetrics.get('wren_identity_certificates_issued_total'), cpMetrics.get('wren_identity_certificates_refused_total') ?? 0]).toEqual([2, 0]);
  });

  test('no private key on disk: the run directories hold certificates only, and nothing in the test directory holds a PRIVATE KEY', () => {
    for (const pod of Object.values(pods())) expect(readdirSync(volume(pod, PROXY_RUN_VOLUME)).sort()).toEqual(['identity.crt', 'trust-bundle.crt']);
    const files = readdirSync(p.dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => join(d.parentPath, d.name));
    // The walk covers the control plane's files, the tokens and both run dirs (so an empty result means something).
    expect(files).toEqual(expect.arrayContaining([cp.trustBundleFile, join(volume(pods().a, PROXY_RUN_VOLUME), 'identity.crt'), join(volume(pods().b, 'wren-identity-token'), 'token')]));
    expect(files.filter((f) => readFileSync(f).includes('PRIVATE KEY'))).toEqual([]);
    // Nor in what the processes printed, and no token either.
    for (const proc of [p.sidecars.a, p.sidecars.b, cp.proc]) {
      const said = proc.out + proc.err;
      expect([proc.name, said.includes('PRIVATE KEY'), ...Object.values(cp.tokens).map((t) => said.includes(t))]).toEqual([proc.name, false, false, false]);
    }
  });

  test('Certify and discovery between the sidecars and the control plane are TLS on the wire too', () => {
    const streams = withData(p).filter(isControlPlane);
    for (const ip of [NET.client, NET.server]) {
      const out = streams.filter((s) => s.src === ip);
      const back = streams.filter((s) => s.dst === ip);
      expect([ip, out.length >= 1, back.length >= 1]).toEqual([ip, true, true]);
      for (const s of out) expect([showStream(s), ...opensWith(s)]).toEqual([showStream(s), 0x16, 0x03, 0x01]);
      for (const s of back) expect([showStream(s), ...opensWith(s)]).toEqual([showStream(s), 0x16, 0x03, 0x02]);
    }
    // In the clear, a Certify request carries the token and the CSR PEM; gRPC starts with the HTTP/2 preface.
    const all = Buffer.concat([...p.wire.frames, ...streams.map((s) => s.data)]);
    for (const needle of [...Object.values(cp.tokens), '-----BEGIN CERTIFICATE REQUEST-----', 'PRIVATE KEY', 'PRI * HTTP/2.0']) expect([needle, all.includes(needle)]).toEqual([needle, false]);
  });
});

suite(title('certificates from files (wren certs) and a static mesh'), () => {
  const p = new TwoPods(`wren-e2e-${id}-f`);
  /** What a control plane would send: the web Service (ClusterIP + the pod's endpoint on each port). */
  const port = (n: number, name: string) => ({
    name, port: n, protocol: 'detect',
    endpoints: [NET.server, NET6.server].map((address) => ({ address, port: n === 80 ? 8080 : n, proxyPort: 15006, identity: SERVER_ID })),
  });
  const MESH = [{ name: SA.server, namespace: NAMESPACE, clusterIPs: [NET.webClusterIP], ports: [port(80, 'http'), port(9090, 'grpc'), port(7070, 'tcp'), port(8181, 'http-debug')] }];

  beforeAll(async () => {
    await p.setUp();
    const pki = await writeDevMesh(join(p.dir, 'pki'), {
      trustDomain: TD,
      workloads: [SA.client, SA.server].map((sa) => ({ namespace: NAMESPACE, serviceAccount: sa, name: sa })),
    });
    chmodSync(join(p.dir, 'pki'), 0o755);
    const files = Object.fromEntries(pki.workloads.map((w) => [w.name, w]));
    // The proxy's key is its own: 0600 and owned by the proxy UID, as in its emptyDir.
    for (const w of pki.workloads) chownSync(w.keyFile, UID.proxy, UID.proxy);
    const injected = p.inject();
    await p.runInit();
    const serverUp = p.startServerApp();
    await p.startCapture();
    const start = (which: 'a' | 'b', sa: string, pod: V1Pod) => {
      const cfg = {
        identity: { trustDomain: TD, namespace: NAMESPACE, serviceAccount: sa, pod: pod.metadata!.name },
        tls: { certFile: files[sa].certFile, keyFile: files[sa].keyFile, trustBundleFile: pki.caCertFile },
        shutdown: { gracePeriodMs: '1s' },
        mesh: { services: MESH },
        // What the injector's POD_IP gives in-cluster: inbound traffic to the pod IP, not 127.0.0.1.
        app: { address: which === 'a' ? NET.client : NET.server },
      };
      const file = join(p.dir, `${sa}-proxy.json`);
      writeFileSync(file, JSON.stringify(cfg, null, 2));
      return p.lab.spawn(`${sa} sidecar`, p.ns[which], [NODE, WREN, 'proxy', '--config', file], { uid: containerOf(pod, 'wren-proxy').securityContext!.runAsUser! });
    };
    p.sidecars = { a: start('a', SA.client, injected.client), b: start('b', SA.server, injected.server) };
    await serverUp;
    await p.runProbes();
    await p.runClient();
  }, 120_000);

  afterAll(async () => {
    if (process.env.WREN_E2E_LOGS === '1') console.log(p.diag());
    await p.cleanup();
  }, 20_000);

  dataPathTests(p, false);
});
