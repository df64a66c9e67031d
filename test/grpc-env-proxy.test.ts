import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { createCsr, generateKeyPair } from '../certs/index.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { DEFAULT_POLICY } from '../contract/defaults.js';
import type { Service } from '../contract/model.js';
import { BootstrapTokenAuthenticator } from '../control-plane/identity/bootstrap-token-authenticator.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane } from '../control-plane/server.js';
import { ControlPlaneTracing } from '../control-plane/tracing.js';
import { CertifyClient } from '../proxy/identity/certify-client.js';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../proxy/identity/control-plane-credentials.js';
import { createGrpcHealthClient } from '../proxy/resilience/health-probes.js';
import { NO_TELEMETRY_OVERRIDES, TelemetrySource } from '../proxy/telemetry/telemetry-settings.js';
import { MeshTracer } from '../proxy/tracing/mesh-tracer.js';
import { parseTracingConfig } from '../proxy/tracing/tracing-config.js';
import { ManualSource, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { grpcHealthApp, type GrpcHealthApp } from './helpers/health-app.js';
import { otlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';
import { testPki } from './helpers/pki.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';

/**
 * A pod-wide grpc_proxy / https_proxy / http_proxy (set on every container of a pod for the
 * app's calls out, common in corporate clusters) must not carry the mesh's own gRPC: Certify,
 * discovery, gRPC health probes and the OTLP trace exports of the sidecar and the control
 * plane go direct (common/grpc-env-proxy.ts; Envoy reads no proxy from the environment
 * either). The "proxy" is a real TCP listener that counts and drops what
 * reaches it; the last test shows grpc-js does send a channel there when nothing says not to.
 */

/** web.shop:80 with no endpoints: the one service these control planes serve. */
const WEB_SHOP: Service = { name: 'web', namespace: 'shop', clusterIPs: [], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: [] }] };

const TOKEN = 'bootstrap-token-for-web-0123456789';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const VARIABLES = ['grpc_proxy', 'https_proxy', 'http_proxy', 'no_grpc_proxy', 'no_proxy'] as const;

let outside: Server;
/** The CONNECT request line of each connection the proxy saw ('' until it is read). */
const reached: string[] = [];
let receiver: OtlpReceiver;
let cp: ControlPlane;
let app: GrpcHealthApp;
let sidecar: TestProxy | undefined;
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  outside = createServer((s: Socket) => {
    const i = reached.push('') - 1;
    s.once('data', (d) => {
      reached[i] = d.toString('latin1').split('\r\n')[0];
      s.destroy();
    });
  });
  await new Promise<void>((r) => outside.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(outside.address() as { port: number }).port}`;
  for (const k of VARIABLES) saved[k] = process.env[k];
  process.env.grpc_proxy = process.env.https_proxy = process.env.http_proxy = url;
  delete process.env.no_grpc_proxy;
  delete process.env.no_proxy;
  receiver = await otlpReceiver();
  app = await grpcHealthApp();
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(1), logger: silentLogger,
    source: (ctx) => new ManualSource(ctx, [WEB_SHOP]),
    identity: { issuer: generateIssuer('cluster.local'), authenticator: new BootstrapTokenAuthenticator([{ token: TOKEN, namespace: 'shop', serviceAccount: 'web' }]) },
    transport: 'insecure',
    tracing: new ControlPlaneTracing({ collector: receiver.address, plaintext: true, caFile: null, namespace: 'wren-system', clock: systemClock, logger: silentLogger }),
  });
  await cp.whenReady();
});

afterAll(async () => {
  for (const k of VARIABLES) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  await sidecar?.client.stop();
  await cp.close(100);
  await app.close();
  await receiver.close();
  await new Promise<void>((r) => outside.close(() => r()));
});

test('Certify (TLS options and discovery.insecure\'s none), discovery, a gRPC health probe and both OTLP exporters go direct', async () => {
  const { privateKeyPem } = generateKeyPair();
  for (const options of [CONTROL_PLANE_CHANNEL_OPTIONS, {}]) {
    const client = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure(), options);
    const cert = await client.certify({ identity: WEB, token: Buffer.from(TOKEN), csrPem: createCsr(privateKeyPem, WEB), requestedLifetimeMs: 0 }, 5000);
    client.close();
    expect(cert.certChainPem).toContain('BEGIN CERTIFICATE');
  }

  sidecar = startProxy(`127.0.0.1:${cp.grpcPort}`, { pod: 'cart' });
  await waitFor(() => sidecar!.applied.length > 0, 'first snapshot');

  const health = createGrpcHealthClient({ address: '127.0.0.1', port: app.port });
  expect(await health.status('', new AbortController().signal)).toBe('SERVING');
  health.close();

  const tracer = new MeshTracer({
    config: parseTracingConfig({ collector: { address: receiver.address, plaintext: true }, scheduledDelayMs: 10 }, 'tracing'),
    settings: new TelemetrySource({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: 100 } }),
    random: seededRandom(1), clock: systemClock, logger: silentLogger,
    registry: new Registry(), selfIdentity: () => 'spiffe://cluster.local/ns/default/sa/me', appAddress: '127.0.0.1', resource: { service: 'me', namespace: 'default', pod: '' },
  });
  await tracer.ready;
  tracer.startSpan('client', 'GET', Date.now(), {}, '', '', undefined).end();
  await receiver.waitFor(1, 10_000, (s) => s.resource['service.name'] === 'me');
  await tracer.shutdown();
  // The control plane's spans of those Certify calls and that subscription.
  await receiver.waitFor(2, 10_000, (s) => s.name === 'wren.identity.v1.Identity/Certify');
  await receiver.waitFor(1, 10_000, (s) => s.name === 'wren.discovery.v1.Discovery/Subscribe');

  expect(reached).toHaveLength(0);
  // The environment is as it was: only the channels did not use it.
  expect([process.env.grpc_proxy, process.env.https_proxy, process.env.http_proxy]).toEqual(Array(3).fill(`http://127.0.0.1:${(outside.address() as { port: number }).port}`));
});

test('a `wren proxy` process started with those variables (the built CLI) subscribes to the control plane direct', async () => {
  assertBuilt(['proxy/discovery/discovery-client.ts', 'common/grpc-env-proxy.ts']);
  const dir = await mkdtemp(join(tmpdir(), 'wren-env-proxy-'));
  let sidecarProcess: ProxyProcess | undefined;
  try {
    // The test's environment, the proxy variables included, given to the child explicitly (jest's process.env is the sandbox's own).
    sidecarProcess = await startProxyProcess(testPki(), dir, 'env-proxied', {
      discovery: { controlPlane: `127.0.0.1:${cp.grpcPort}`, insecure: true },
      tracing: { collector: { address: receiver.address, plaintext: true } },
    }, [], undefined, { ...process.env });
    const id = sidecarProcess.spiffeId;
    await receiver.waitFor(1, 20_000, (s) => s.name === 'wren.discovery.v1.Discovery/Subscribe' && s.attributes['wren.proxy.identity'] === id);
    expect(reached).toHaveLength(0);
  } finally {
    await sidecarProcess?.close();
    await rm(dir, { recursive: true, force: true });
  }
}, 30_000);

test('(the environment\'s proxy is live: a grpc-js channel that does not opt out connects to it)', async () => {
  const client = new grpc.Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
  // Its request line is read (by the listener registered first) before this hears the data.
  const hit = new Promise<void>((r) => outside.once('connection', (c: Socket) => c.once('data', () => r())));
  client.waitForReady(Date.now() + 5000, () => undefined);
  await hit;
  client.close();
  expect(reached.filter((l) => l === `CONNECT 127.0.0.1:${app.port} HTTP/1.1`).length).toBeGreaterThan(0);
});
