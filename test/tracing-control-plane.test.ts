import * as grpc from '@grpc/grpc-js';
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
import { MAX_SPAN_STRING } from '../proxy/tracing/tracing-config.js';
import { ManualSource, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { otlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';
import { closedPort } from './helpers/closed-port.js';

/** The control plane's own spans (--trace-collector): Certify calls, discovery subscriptions and pushes, to a real OTLP receiver. */

/** web.shop:80 with no endpoints: the one service these control planes serve. */
const WEB_SHOP: Service = { name: 'web', namespace: 'shop', clusterIPs: [], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: [] }] };

const TOKEN = 'bootstrap-token-for-web-0123456789';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

let receiver: OtlpReceiver;
let cp: ControlPlane;
let proxy: TestProxy | undefined;

beforeAll(async () => {
  receiver = await otlpReceiver();
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
  await proxy?.client.stop();
  await cp.close(100);
  await receiver.close();
});

test('a SERVER span per Certify call, with the gRPC status and the refusal reason', async () => {
  const client = new CertifyClient(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure(), CONTROL_PLANE_CHANNEL_OPTIONS);
  const { privateKeyPem } = generateKeyPair();
  const csrPem = createCsr(privateKeyPem, WEB);
  await client.certify({ identity: WEB, token: Buffer.from(TOKEN), csrPem, requestedLifetimeMs: 0 }, 5000);
  await expect(client.certify({ identity: WEB, token: Buffer.from('wrong-token-0123456789'), csrPem, requestedLifetimeMs: 0 }, 5000)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
  client.close();
  const spans = await receiver.waitFor(2, 10_000, (s) => s.name === 'wren.identity.v1.Identity/Certify');
  expect(spans.every((s) => s.kind === 'SPAN_KIND_SERVER' && s.resource['service.name'] === 'wren-control-plane')).toBe(true);
  expect(spans.map((s) => s.attributes['rpc.grpc.status_code']).sort()).toEqual([0, grpc.status.UNAUTHENTICATED]);
  expect(spans.find((s) => s.attributes['rpc.grpc.status_code'] === 0)?.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.method': 'Certify', 'wren.requested.identity': WEB });
  expect(spans.find((s) => s.attributes['rpc.grpc.status_code'] !== 0)?.attributes['wren.refusal.reason']).toEqual(expect.any(String));
});

test('a subscription span ends with the first config; each push is its child', async () => {
  proxy = startProxy(`127.0.0.1:${cp.grpcPort}`, { pod: 'cart' });
  await waitFor(() => proxy!.applied.length > 0, 'first snapshot');
  const [sub] = await receiver.waitFor(1, 10_000, (s) => s.name === 'wren.discovery.v1.Discovery/Subscribe');
  const [push] = await receiver.waitFor(1, 10_000, (s) => s.name === 'wren.discovery.v1.Discovery/Push');
  expect(sub.attributes).toMatchObject({ 'wren.proxy.identity': 'spiffe://cluster.local/ns/default/sa/cart', 'wren.proxy.pod': 'default/cart' });
  expect(sub.attributes['wren.discovery.first_version']).toEqual(expect.any(String));
  expect(push.parentSpanId).toBe(sub.spanId);
  expect(push.traceId).toBe(sub.traceId);
  expect(push.attributes).toMatchObject({ 'wren.discovery.full': true });
});

test('a Subscribe of any size makes a span of bounded strings: the pod is the stream\'s to write, and the queue is bounded in spans', async () => {
  // A SPIFFE ID is bounded by its spec (2048 bytes: a longer one is refused); the pod is the stream's own words.
  const long = startProxy(`127.0.0.1:${cp.grpcPort}`, { pod: `p${'x'.repeat(100_000)}`, serviceAccount: 'long' });
  try {
    const [sub] = await receiver.waitFor(1, 10_000, (s) => s.name === 'wren.discovery.v1.Discovery/Subscribe' && String(s.attributes['wren.proxy.pod']).startsWith('default/px'));
    // Clipped where the discovery server reads it (300 characters of pod, as its logs), within the span's own bound.
    expect(sub.attributes['wren.proxy.pod']).toBe(`default/p${'x'.repeat(299)}`);
    expect(String(sub.attributes['wren.proxy.pod']).length).toBeLessThanOrEqual(MAX_SPAN_STRING);
  } finally {
    await long.client.stop();
  }
});

test('a collector that is down costs no Certify call, and the lost spans are counted in the control plane metrics', async () => {
  // A port nobody listens on: every export is refused.
  const port = await closedPort();
  const down = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(2), logger: silentLogger,
    source: (ctx) => new ManualSource(ctx, [WEB_SHOP]),
    identity: { issuer: generateIssuer('cluster.local'), authenticator: new BootstrapTokenAuthenticator([{ token: TOKEN, namespace: 'shop', serviceAccount: 'web' }]) },
    transport: 'insecure',
    tracing: new ControlPlaneTracing({ collector: `127.0.0.1:${port}`, plaintext: true, caFile: null, namespace: 'wren-system', clock: systemClock, logger: silentLogger }),
  });
  try {
    await down.whenReady();
    const client = new CertifyClient(`127.0.0.1:${down.grpcPort}`, grpc.credentials.createInsecure(), CONTROL_PLANE_CHANNEL_OPTIONS);
    const { privateKeyPem } = generateKeyPair();
    const cert = await client.certify({ identity: WEB, token: Buffer.from(TOKEN), csrPem: createCsr(privateKeyPem, WEB), requestedLifetimeMs: 0 }, 5000);
    client.close();
    expect(cert.certChainPem).toContain('BEGIN CERTIFICATE');
    const dropped = async () => (await down.metrics.registry.getSingleMetric('wren_trace_spans_dropped_total')?.get())?.values.find((v) => v.labels.reason === 'export-failed')?.value ?? 0;
    await waitFor(async () => (await dropped()) >= 1, 'the Certify span counted as dropped (export-failed)', 15_000);
    expect((await down.metrics.registry.getSingleMetric('wren_trace_spans_exported_total')?.get())?.values[0]?.value ?? 0).toBe(0);
  } finally {
    await down.close(100);
  }
});
