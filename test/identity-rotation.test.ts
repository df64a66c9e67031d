import { readdir, readFile, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { connect as h2connect, createSecureServer, createServer as createH2c, type ClientHttp2Stream, type Http2SecureServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock, systemRandom } from '../common/clock.js';
import { createLogger, silentLogger } from '../common/logger.js';
import { parseService } from '../contract/parse.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { parseProxyConfig } from '../proxy/config/proxy-config.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../proxy/identity/control-plane-credentials.js';
import { RUN_DIR_FILES, tokenFromFile, WorkloadIdentity } from '../proxy/identity/workload-identity.js';
import { Proxy } from '../proxy/proxy.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import { meshService } from './helpers/proxy.js';

/**
 * Real rotation: a control plane issuing 3-second certificates (its own serving
 * certificate rotates too), two real sidecars obtaining and renewing theirs through
 * Certify, and traffic across several rotations: a long-lived HTTP/2 stream and a gRPC
 * bidi stream keep flowing, and new connections present the new certificates.
 */
const TD = 'cluster.local';
const TTL_MS = 3000;
const RUN_FOR_MS = 7500;
const tokenOf = (sa: string) => `bootstrap-token-${sa}-0123456789abcdef`;

interface Sidecar {
  readonly proxy: Proxy;
  readonly identity: WorkloadIdentity;
  readonly client: CertifyClient;
  readonly runDir: string;
}

let dir: string;
let cp: ControlPlane;
let a: Sidecar;
let b: Sidecar;
let grpcApp: FakeGrpc;
let chatApp: Http2Server;
let probe: Http2SecureServer;
let probeIdentity: WorkloadIdentity;
let probeClient: CertifyClient;
let echo: EchoClient;
/** The client certificate serial of every connection the probe accepted. */
const probeSerials: string[] = [];
/** A second probe that keeps its sessions open (so the sidecar's peer pool reuses them), and holds `/hold` streams until told. */
let keep: Http2SecureServer;
const keepSessions: { serial: string; goaway: boolean }[] = [];
const held: { stream: ServerHttp2Stream; serial: string }[] = [];

async function sidecar(sa: string): Promise<Sidecar> {
  const runDir = join(dir, `run-${sa}`);
  await mkdir(runDir);
  await writeFile(join(dir, `${sa}.token`), tokenOf(sa));
  const config = parseProxyConfig({
    identity: { trustDomain: TD, namespace: 'default', serviceAccount: sa, certify: { controlPlane: `127.0.0.1:${cp.grpcPort}`, tokenFile: join(dir, `${sa}.token`), trustBundlePem: bundle(), runDir } },
    listeners: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 }, metrics: { address: '127.0.0.1', ipv6Address: '', port: 0 } },
    shutdown: { gracePeriodMs: 1000 },
    // The probe and keep peers are node:http2 servers standing in for sidecars, so HTTP/2
    // to them takes the peer's HTTP/2 session (ALPN h2), whose rotation this suite checks;
    // the multiplexer's rotation is test/mesh-mux-rotation.test.ts's.
    protocol: { meshHttp2: 'h2' },
  }, 'test');
  const c = config.identity.certify!;
  const client = new CertifyClient(c.controlPlane, controlPlaneCredentials(c.trustBundlePem!, config.discovery.controlPlaneIdentity), CONTROL_PLANE_CHANNEL_OPTIONS);
  const identity = new WorkloadIdentity({
    spiffeId: `spiffe://${TD}/ns/default/sa/${sa}`, certify: client.certify, readToken: tokenFromFile(c.tokenFile),
    clock: systemClock, random: systemRandom, logger: silentLogger, runDir,
  });
  const tls = await identity.obtain(10_000);
  const proxy = await Proxy.start({ config, tls, logger: createLogger({ sink: () => undefined }), staticMesh: false });
  identity.attachMetrics(proxy.metrics.registry);
  identity.start();
  return { proxy, identity, client, runDir };
}

let issuerBundle = '';
const bundle = () => issuerBundle;

async function adminCerts(p: Proxy): Promise<{ identity: string; serial: string; notAfter: string; trustAnchors: unknown[] }> {
  return (await fetch(`http://127.0.0.1:${p.adminPort}/certs`)).json() as Promise<{ identity: string; serial: string; notAfter: string; trustAnchors: unknown[] }>;
}

/** The serial a fresh TLS connection to the sidecar's inbound port is served with (the probe's own certificate as client cert). */
function inboundSerial(p: Proxy): Promise<string> {
  const m = probeIdentity.tls.material;
  return new Promise((resolve, reject) => {
    const s: TLSSocket = tlsConnect({ host: '127.0.0.1', port: p.inboundPort, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    s.once('secureConnect', () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.end();
    });
    s.once('error', reject);
  });
}

/** GET http://probe/ through a sidecar's outbound: the probe answers with the client certificate serial it saw. */
async function viaOutbound(p: Proxy, authority: string, path = '/'): Promise<string> {
  const s = h2connect(`http://127.0.0.1:${p.outboundPort}`);
  try {
    return await new Promise<string>((resolve, reject) => {
      const req = s.request({ ':path': path, ':authority': authority });
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => resolve(body));
      req.on('error', reject);
      req.end();
    });
  } finally {
    s.close();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-rotation-'));
  await mkdir(join(dir, 'mesh'));
  const tokens = ['client', 'web', 'probe'].map((sa) => `  - { token: ${tokenOf(sa)}, namespace: default, serviceAccount: ${sa} }`).join('\n');
  await writeFile(join(dir, 'tokens.yaml'), `tokens:\n${tokens}\n`);
  const issuer = generateIssuer(TD, new Date(Date.now() - 3_600_000));
  issuerBundle = issuer.trustBundlePem;
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(5), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    identity: { issuer, authenticator: BootstrapTokenAuthenticator.fromFile(join(dir, 'tokens.yaml')), certTtlMs: TTL_MS },
    transport: 'tls',
  });
  // The probe: a stand-in peer sidecar (mTLS, h2) that reports the client certificate of each connection, then closes it.
  probeClient = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneCredentials(bundle(), cp.serving!.spiffeId), CONTROL_PLANE_CHANNEL_OPTIONS);
  await writeFile(join(dir, 'probe.token'), tokenOf('probe'));
  probeIdentity = new WorkloadIdentity({
    spiffeId: `spiffe://${TD}/ns/default/sa/probe`, certify: probeClient.certify, readToken: tokenFromFile(join(dir, 'probe.token')),
    clock: systemClock, random: systemRandom, logger: silentLogger,
  });
  const ptls = await probeIdentity.obtain(10_000);
  probeIdentity.start();
  probe = createSecureServer({ ...ptls.contextOptions, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] });
  ptls.onRotate(() => probe.setSecureContext(ptls.contextOptions));
  probe.on('session', (session) => probeSerials.push((session.socket as TLSSocket).getPeerCertificate().serialNumber));
  probe.on('stream', (stream) => {
    const serial = (stream.session!.socket as TLSSocket).getPeerCertificate().serialNumber;
    stream.respond({ ':status': 200 });
    stream.end(serial);
    stream.session!.close();
  });
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  keep = createSecureServer({ ...ptls.contextOptions, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] });
  ptls.onRotate(() => keep.setSecureContext(ptls.contextOptions));
  keep.on('session', (session) => {
    const rec = { serial: (session.socket as TLSSocket).getPeerCertificate().serialNumber.toLowerCase(), goaway: false };
    keepSessions.push(rec);
    session.on('goaway', () => (rec.goaway = true));
  });
  keep.on('stream', (stream, headers) => {
    const serial = (stream.session!.socket as TLSSocket).getPeerCertificate().serialNumber.toLowerCase();
    if (headers[':path'] === '/hold') return void held.push({ stream, serial });
    stream.respond({ ':status': 200 });
    stream.end(serial);
  });
  await new Promise<void>((r) => keep.listen(0, '127.0.0.1', () => r()));

  grpcApp = await fakeGrpc();
  // A long-lived HTTP/2 stream: every chunk the client sends is echoed back on the same stream.
  chatApp = createH2c();
  chatApp.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.on('data', (d: Buffer) => stream.write(`echo:${d}`));
    stream.on('end', () => stream.end());
  });
  await new Promise<void>((r) => chatApp.listen(0, '127.0.0.1', () => r()));

  b = await sidecar('web');
  a = await sidecar('client');
  const probePort = (probe.address() as AddressInfo).port;
  a.proxy.applySnapshot({
    version: '1', source: 'test', services: [
      meshService('echo', 9090, [{ appPort: grpcApp.port, proxy: b.proxy }], { protocol: 'grpc' }),
      meshService('chat', 8080, [{ appPort: (chatApp.address() as AddressInfo).port, proxy: b.proxy }], { protocol: 'http2' }),
      parseService({ name: 'probe', namespace: 'default', ports: [{ port: 80, protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: 1, proxyPort: probePort, identity: probeIdentity.tls.spiffeId }] }] }, 'test'),
      parseService({ name: 'keep', namespace: 'default', ports: [{ port: 80, protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: 1, proxyPort: (keep.address() as AddressInfo).port, identity: probeIdentity.tls.spiffeId }] }] }, 'test'),
    ],
  });
  b.proxy.applySnapshot({ version: '1', source: 'test', services: [] });
  echo = echoClient(a.proxy.outboundPort, 'echo:9090');
}, 30_000);

afterAll(async () => {
  echo?.close();
  for (const s of [a, b]) {
    s?.identity.stop();
    s?.client.close();
    await s?.proxy.close();
  }
  probeIdentity?.stop();
  probeClient?.close();
  probe?.close();
  for (const h of held) h.stream.close();
  keep?.close();
  chatApp?.close();
  await grpcApp?.close();
  await cp?.kill();
  // maxRetries: a renewal that finished just before stop() may still be writing the run dir.
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

test('long-lived HTTP/2 and gRPC bidi streams survive several rotations; new connections use the new certificates', async () => {
  const bidi = echo.Bidi();
  const bidiGot: { message: string; caller: string }[] = [];
  bidi.on('data', (m: { message: string; caller: string }) => bidiGot.push(m));
  const session = h2connect(`http://127.0.0.1:${a.proxy.outboundPort}`);
  const chat: ClientHttp2Stream = session.request({ ':path': '/chat', ':method': 'POST', ':authority': 'chat:8080' });
  let chatGot = '';
  chat.on('data', (d: Buffer) => (chatGot += d));

  const serials = { a: new Set<string>(), b: new Set<string>(), cp: new Set<string>() };
  // Each time a sidecar shows a new certificate, a new connection must present it: the one
  // /certs reports just before connecting, or (if a rotation landed in between) just after.
  const checks = { inbound: [] as boolean[], outbound: [] as boolean[] };
  const fresh = async (p: Proxy, before: string, connect: () => Promise<string>) => {
    const seen = (await connect()).toLowerCase();
    const after = (await adminCerts(p)).serial.toLowerCase();
    return seen === before.toLowerCase() || seen === after;
  };
  const start = Date.now();
  let sent = 0;
  while (Date.now() - start < RUN_FOR_MS) {
    sent++;
    bidi.write({ message: `m${sent}` });
    chat.write(`c${sent};`);
    const [certsA, certsB] = await Promise.all([adminCerts(a.proxy), adminCerts(b.proxy)]);
    serials.cp.add(cp.serving!.certificate.serial);
    if (!serials.b.has(certsB.serial)) {
      serials.b.add(certsB.serial);
      checks.inbound.push(await fresh(b.proxy, certsB.serial, () => inboundSerial(b.proxy)));
    }
    if (!serials.a.has(certsA.serial)) {
      serials.a.add(certsA.serial);
      // The probe closes every connection after one request, so this one is new.
      checks.outbound.push(await fresh(a.proxy, certsA.serial, () => viaOutbound(a.proxy, 'probe:80')));
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  // Several rotations on each side (3 s certificates, renewed at ~70%), the control plane's own included.
  expect(serials.a.size).toBeGreaterThanOrEqual(3);
  expect(serials.b.size).toBeGreaterThanOrEqual(3);
  expect(serials.cp.size).toBeGreaterThanOrEqual(3);
  expect(checks.inbound).toEqual(Array(serials.b.size).fill(true));
  expect(checks.outbound).toEqual(Array(serials.a.size).fill(true));
  // One probe connection per check: every outbound check really was a new TLS handshake.
  expect(probeSerials).toHaveLength(checks.outbound.length);

  // Both long-lived streams are the ones opened at the start, and every message came back in order.
  const ended = Promise.all([new Promise((r) => bidi.once('end', r)), new Promise((r) => chat.once('end', r))]);
  bidi.end();
  chat.end();
  await ended;
  session.close();
  expect(bidiGot.map((m) => m.message)).toEqual(Array.from({ length: sent }, (_, i) => `echo m${i + 1}`));
  expect(new Set(bidiGot.map((m) => m.caller))).toEqual(new Set([`By=spiffe://${TD}/ns/default/sa/web;URI=spiffe://${TD}/ns/default/sa/client`]));
  expect(chatGot).toBe(Array.from({ length: sent }, (_, i) => `echo:c${i + 1};`).join(''));

  const metrics = await a.proxy.metrics.registry.metrics();
  expect(metrics).toMatch(/^wren_identity_cert_renewals_total\{result="success"\} ([3-9]|\d\d)/m);
  expect(metrics).toMatch(/^wren_identity_cert_expiry_timestamp_seconds \d+/m);
}, 30_000);

test('the private key never leaves the process: the run dir holds only public certificates', async () => {
  for (const s of [a, b]) {
    // Renewals keep running (3 s certificates): a write-then-rename temp file (".name.tmp")
    // may be there for a moment, and may be gone before it is read. It is checked too.
    const names = (await readdir(s.runDir)).sort();
    expect(names.filter((n) => !/^\..*\.tmp$/.test(n))).toEqual([RUN_DIR_FILES.chain, RUN_DIR_FILES.bundle].sort());
    for (const n of names) {
      const text = await readFile(join(s.runDir, n), 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' && n.endsWith('.tmp') ? null : Promise.reject(e)));
      if (text === null) continue;
      if (!n.endsWith('.tmp')) expect(text).toContain('BEGIN CERTIFICATE');
      expect(text).not.toContain('PRIVATE KEY');
    }
  }
  // The /certs admin endpoint shows identity, serial, expiry and anchors, never key material.
  const certs = await adminCerts(a.proxy);
  expect(certs.identity).toBe(`spiffe://${TD}/ns/default/sa/client`);
  expect(certs.trustAnchors).toHaveLength(1);
  expect(JSON.stringify(certs)).not.toContain('PRIVATE KEY');
});

test('after a rotation the next request rides a new peer session with the new certificate; a stream in flight on the old session completes', async () => {
  const serialOf = async () => (await adminCerts(a.proxy)).serial.toLowerCase();
  const nextRotation = async (from: string) => {
    const t0 = Date.now();
    while ((await serialOf()) === from) {
      if (Date.now() - t0 > 5000) throw new Error('no rotation within 5 s');
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  // Start right after a rotation, so the next one (~2 s away with 3 s certificates) comes after the setup.
  await nextRotation(await serialOf());
  const before = await serialOf();
  const sessionsBefore = keepSessions.length;
  expect(await viaOutbound(a.proxy, 'keep:80')).toBe(before);
  // A stream in flight on that pooled session: the probe holds its response.
  const heldBody = viaOutbound(a.proxy, 'keep:80', '/hold');
  while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
  expect(held[0].serial).toBe(before);
  expect(keepSessions.length).toBe(sessionsBefore + 1); // the request and the held stream share one session
  const oldSession = keepSessions[keepSessions.length - 1];

  await nextRotation(before);
  const after = await serialOf();
  const seen = await viaOutbound(a.proxy, 'keep:80');
  // A new session, presenting the new certificate (or a later one if another rotation slipped in).
  expect(seen).not.toBe(before);
  expect([after, await serialOf()]).toContain(seen);
  expect(keepSessions.length).toBe(sessionsBefore + 2);
  expect(keepSessions[keepSessions.length - 1].serial).toBe(seen);
  // The old session got a GOAWAY (retired by the pool), yet its held stream still completes.
  expect(oldSession.goaway).toBe(true);
  held[0].stream.respond({ ':status': 200 });
  held[0].stream.end('held stream done');
  expect(await heldBody).toBe('held stream done');
  held.length = 0;
}, 20_000);
