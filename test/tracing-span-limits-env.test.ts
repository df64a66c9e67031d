import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlaneTracing } from '../control-plane/tracing.js';
import { NO_TELEMETRY_OVERRIDES, TelemetrySource } from '../proxy/telemetry/telemetry-settings.js';
import { MeshTracer } from '../proxy/tracing/mesh-tracer.js';
import { MAX_SPAN_STRING, parseTracingConfig } from '../proxy/tracing/tracing-config.js';

/**
 * @opentelemetry/sdk-trace-base takes every span limit its config leaves out from the
 * OTEL_*_LIMIT environment variables. A pod-wide setting meant for the app's own SDK must not
 * cut what the sidecar or the control plane exports: Wren gives them all (SPAN_LIMITS,
 * docs/observability.md, Tracing).
 */
const ENV = {
  OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '1',
  OTEL_ATTRIBUTE_COUNT_LIMIT: '1',
  OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '2',
  OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '2',
  OTEL_SPAN_EVENT_COUNT_LIMIT: '0',
  OTEL_SPAN_LINK_COUNT_LIMIT: '0',
  OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT: '0',
};
const saved: Record<string, string | undefined> = {};

/** Keeps what it is given (the SDK's InMemorySpanExporter forgets it at shutdown). */
function keeping(): SpanExporter & { spans: ReadableSpan[] } {
  const spans: ReadableSpan[] = [];
  return { spans, export: (s, done) => { spans.push(...s); done({ code: 0 }); }, shutdown: async () => {} };
}

beforeAll(() => {
  for (const [k, v] of Object.entries(ENV)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});

afterAll(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

test('the sidecar\'s spans keep their attributes, values and events whatever OTEL_*_LIMIT says; strings are still capped at MAX_SPAN_STRING', async () => {
  const exporter = keeping();
  const t = new MeshTracer({
    config: parseTracingConfig({ collector: { address: '127.0.0.1:1', plaintext: true }, scheduledDelayMs: 10 }, 'tracing'),
    settings: new TelemetrySource({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: 100 } }),
    random: seededRandom(1), clock: systemClock, logger: silentLogger,
    registry: new Registry(), selfIdentity: () => 'spiffe://cluster.local/ns/default/sa/me', appAddress: '127.0.0.1', resource: { service: 'me', namespace: 'default', pod: '' },
    exporter,
  });
  await t.ready;
  const long = 'x'.repeat(MAX_SPAN_STRING + 500);
  const span = t.startSpan('client', 'GET', Date.now(), { 'http.request.method': 'GET', 'url.path': '/orders/42', 'server.address': 'orders.shop', 'wren.long': long }, '', '', undefined);
  span.addEvent('first', { 'wren.why': 'one' });
  span.addEvent('second');
  span.end();
  await t.shutdown();
  const [s] = exporter.spans;
  expect(s.attributes).toEqual({ 'http.request.method': 'GET', 'url.path': '/orders/42', 'server.address': 'orders.shop', 'wren.long': long.slice(0, MAX_SPAN_STRING) });
  expect(s.droppedAttributesCount).toBe(0);
  expect(s.events.map((e) => [e.name, e.attributes])).toEqual([['first', { 'wren.why': 'one' }], ['second', {}]]);
});

test('the control plane\'s spans likewise', async () => {
  const exporter = keeping();
  const cpt = new ControlPlaneTracing({ collector: '127.0.0.1:1', plaintext: true, caFile: null, namespace: 'wren-system', clock: systemClock, logger: silentLogger, exporter });
  cpt.certified(cpt.certifyStarted('127.0.0.1:5000'), 'spiffe://cluster.local/ns/shop/sa/web', 7, 'not-allowed');
  await cpt.shutdown();
  const [s] = exporter.spans;
  expect(s.attributes).toEqual({
    'rpc.system': 'grpc', 'rpc.service': 'wren.identity.v1.Identity', 'rpc.method': 'Certify', 'client.address': '127.0.0.1:5000',
    'rpc.grpc.status_code': 7, 'wren.requested.identity': 'spiffe://cluster.local/ns/shop/sa/web', 'wren.refusal.reason': 'not-allowed',
  });
  expect(s.droppedAttributesCount).toBe(0);
});
