import { createServer, constants, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { ControlPlaneTracing } from '../control-plane/tracing.js';
import { NO_TELEMETRY_OVERRIDES, TelemetrySource } from '../proxy/telemetry/telemetry-settings.js';
import { MeshTracer } from '../proxy/tracing/mesh-tracer.js';
import { parseTracingConfig } from '../proxy/tracing/tracing-config.js';
import { otlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';

/**
 * The sidecar's span exporter goes where its config's tracing.collector says (the control
 * plane's where --trace-collector says), with what it says, whatever OTEL_EXPORTER_OTLP_* the
 * container's environment holds (an operator or a
 * policy that sets them on every container of a pod, for the app): explicit configuration
 * wins (OpenTelemetry SDK configuration), as Istio's sidecar takes its collector from the mesh
 * config alone. A real OTLP/gRPC exporter to real collectors (docs/observability.md, Tracing).
 */
const ENV = {
  OTEL_EXPORTER_OTLP_ENDPOINT: '',
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '',
  OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer vendor-secret,x-tenant=acme',
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-api-key=s3cret-key',
  OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '1',
  OTEL_EXPORTER_OTLP_INSECURE: 'false',
};

/**
 * The configured collector: a bare HTTP/2 server answering TraceService/Export with an empty
 * ExportTraceServiceResponse, so that the request's own headers are seen as they came
 * (grpc-js's server takes grpc-encoding out of a call's metadata).
 */
let ours: { server: Http2Server; address: string; calls: { path: string; headers: IncomingHttpHeaders; bytes: number }[] };
let theirs: OtlpReceiver;
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  const calls: { path: string; headers: IncomingHttpHeaders; bytes: number }[] = [];
  const server = createServer();
  server.on('stream', (stream, headers) => {
    let bytes = 0;
    stream.on('data', (d: Buffer) => (bytes += d.length));
    stream.on('end', () => {
      calls.push({ path: String(headers[':path']), headers, bytes });
      stream.respond({ [constants.HTTP2_HEADER_STATUS]: 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      // One length-prefixed message of 0 bytes: an empty ExportTraceServiceResponse.
      stream.end(Buffer.alloc(5));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ours = { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
  theirs = await otlpReceiver();
  ENV.OTEL_EXPORTER_OTLP_ENDPOINT = ENV.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `http://${theirs.address}`;
  for (const [k, v] of Object.entries(ENV)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});

afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  ours.server.close();
  await theirs.close();
});

/** What the configured collector saw of the one export expected: no header, compression or timeout of the environment's. */
function expectOnlyConfig(timeoutFloorMs: number): void {
  expect(theirs.exports.count).toBe(0);
  expect(ours.calls.map((c) => c.path)).toEqual(['/opentelemetry.proto.collector.trace.v1.TraceService/Export']);
  expect(ours.calls[0].bytes).toBeGreaterThan(5);
  const h = ours.calls[0].headers;
  for (const header of ['authorization', 'x-tenant', 'x-api-key']) expect([header, h[header]]).toEqual([header, undefined]);
  // Not gzip: the config sets no compression.
  expect(h['grpc-encoding'] ?? 'identity').toBe('identity');
  // The deadline left (gRPC PROTOCOL-HTTP2.md Timeout) is the config's, not the environment's 1 ms.
  const [, n, unit] = /^(\d+)([HMSmun])$/.exec(String(h['grpc-timeout']))!;
  expect(Number(n) * { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[unit]!).toBeGreaterThan(timeoutFloorMs);
}

function expectNamesLogged(logs: string[], collector: string): void {
  const warned = logs.filter((l) => l.includes('OTLP_ENV_IGNORED'));
  expect(warned).toHaveLength(1);
  expect(JSON.parse(warned[0])).toMatchObject({ level: 'warn', code: 'OTLP_ENV_IGNORED', variables: Object.keys(ENV).sort(), collector });
  // Header values carry credentials: never logged.
  for (const secret of ['vendor-secret', 's3cret-key', 'acme']) expect(logs.join('\n')).not.toContain(secret);
}

/** The environment is the container's as it was: only the exporter did not see it. */
const envAsSet = () => Object.fromEntries(Object.keys(ENV).map((k) => [k, process.env[k]]));

async function counted(registry: Registry, name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((n, v) => n + v.value, 0);
}

beforeEach(() => {
  ours.calls.length = 0;
});

test('tracing.collector wins over OTEL_EXPORTER_OTLP_*: endpoint, headers, compression and timeout of the environment are not used, and only their names are logged', async () => {
  const logs: string[] = [];
  const registry = new Registry();
  const t = new MeshTracer({
    config: parseTracingConfig({ collector: { address: ours.address, plaintext: true }, scheduledDelayMs: 10 }, 'tracing'),
    settings: new TelemetrySource({ ...NO_TELEMETRY_OVERRIDES, tracing: { samplingPercent: 100 } }),
    random: seededRandom(1), clock: systemClock, logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
    registry, selfIdentity: () => 'spiffe://cluster.local/ns/default/sa/me', appAddress: '127.0.0.1', resource: { service: 'me', namespace: 'default', pod: '' },
  });
  await t.ready;
  expect(envAsSet()).toEqual(ENV);
  t.startSpan('client', 'GET', Date.now(), {}, '', '', undefined).end();
  await t.shutdown();
  // The config's export timeout is 30 s.
  expectOnlyConfig(20_000);
  expect([await counted(registry, 'wren_trace_spans_exported_total'), await counted(registry, 'wren_trace_spans_dropped_total')]).toEqual([1, 0]);
  expectNamesLogged(logs, ours.address);
});

test('the control plane\'s spans likewise go to --trace-collector alone', async () => {
  const logs: string[] = [];
  const cpt = new ControlPlaneTracing({ collector: ours.address, plaintext: true, caFile: null, namespace: 'wren-system', clock: systemClock, logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }) });
  expect(envAsSet()).toEqual(ENV);
  cpt.certified(cpt.certifyStarted('127.0.0.1:1'), 'spiffe://cluster.local/ns/shop/sa/web', 0);
  await cpt.shutdown();
  // The control plane's export timeout is 10 s.
  expectOnlyConfig(5_000);
  expectNamesLogged(logs, ours.address);
});
