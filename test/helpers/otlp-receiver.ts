import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, loadPackageDefinition, type ServiceDefinition, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const PROTOS = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'otlp');

type Value = string | number | boolean | null;

/** One span as the collector received it: ids in hex, attributes flattened. */
export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** SPAN_KIND_CLIENT, SPAN_KIND_SERVER... */
  readonly kind: string;
  readonly attributes: Readonly<Record<string, Value>>;
  /** STATUS_CODE_UNSET, STATUS_CODE_ERROR... */
  readonly status: { readonly code: string; readonly message: string };
  readonly traceState: string;
  readonly resource: Readonly<Record<string, Value>>;
}

export interface OtlpReceiver {
  /** host:port to configure as `tracing.collector.address` (plaintext). */
  readonly address: string;
  readonly spans: ReceivedSpan[];
  /** Export calls received. */
  readonly exports: { count: number };
  /** Resolves once `n` spans (matching `pred`) have arrived; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs?: number, pred?: (s: ReceivedSpan) => boolean): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

interface AnyValue { stringValue?: string; boolValue?: boolean; intValue?: string; doubleValue?: number; value?: string }
interface KeyValue { key: string; value: AnyValue | null }
interface RawSpan {
  traceId: Buffer; spanId: Buffer; parentSpanId: Buffer; name: string; kind: string; traceState: string;
  attributes: KeyValue[]; status: { code: string; message: string } | null;
}
interface ExportRequest { resourceSpans: { resource: { attributes: KeyValue[] } | null; scopeSpans: { spans: RawSpan[] }[] }[] }

function value(v: AnyValue | null): Value {
  if (!v || !v.value) return null;
  if (v.value === 'intValue') return Number(v.intValue);
  return (v as Record<string, Value>)[v.value];
}

function flatten(kvs: KeyValue[]): Record<string, Value> {
  const out: Record<string, Value> = {};
  for (const kv of kvs) out[kv.key] = value(kv.value);
  return out;
}

/**
 * An OTLP/gRPC collector for tests: a grpc-js server implementing
 * opentelemetry.proto.collector.trace.v1.TraceService/Export from the official protos
 * (test/fixtures/otlp), on loopback port 0, plaintext (or with `credentials`), keeping every span it receives.
 */
export async function otlpReceiver(credentials: ServerCredentials = ServerCredentials.createInsecure()): Promise<OtlpReceiver> {
  const def = loadSync(join(PROTOS, 'opentelemetry/proto/collector/trace/v1/trace_service.proto'), {
    includeDirs: [PROTOS], longs: String, enums: String, defaults: true, oneofs: true,
  });
  const pkg = loadPackageDefinition(def) as unknown as { opentelemetry: { proto: { collector: { trace: { v1: { TraceService: { service: ServiceDefinition } } } } } } };
  const spans: ReceivedSpan[] = [];
  const exports = { count: 0 };
  let notify = () => {};
  const server = new Server();
  server.addService(pkg.opentelemetry.proto.collector.trace.v1.TraceService.service, {
    Export: (call: ServerUnaryCall<ExportRequest, object>, cb: sendUnaryData<object>) => {
      exports.count++;
      for (const rs of call.request.resourceSpans) {
        const resource = flatten(rs.resource?.attributes ?? []);
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            spans.push({
              traceId: s.traceId.toString('hex'), spanId: s.spanId.toString('hex'), parentSpanId: s.parentSpanId.toString('hex'),
              name: s.name, kind: s.kind, attributes: flatten(s.attributes), status: { code: s.status?.code ?? 'STATUS_CODE_UNSET', message: s.status?.message ?? '' },
              traceState: s.traceState, resource,
            });
      }
      cb(null, {});
      notify();
    },
  });
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', credentials, (e, p) => (e ? rej(e) : res(p))));
  return {
    address: `127.0.0.1:${port}`,
    spans,
    exports,
    waitFor(n, timeoutMs = 10_000, pred = () => true) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const got = spans.filter(pred);
          if (got.length < n) return false;
          clearTimeout(t);
          notify = () => {};
          resolve(got);
          return true;
        };
        const t = setTimeout(() => reject(new Error(`expected ${n} span(s), got ${spans.filter(pred).length}: ${JSON.stringify(spans.map((s) => [s.kind, s.name]))}`)), timeoutMs);
        if (!check()) notify = () => void check();
      });
    },
    // forceShutdown: a sidecar's exporter keeps its channel open (it is meant to), which tryShutdown would wait for.
    close: async () => server.forceShutdown(),
  };
}

/** A "collector" that accepts TCP connections and never says a word (a hung collector). */
export async function silentCollector(): Promise<{ readonly address: string; readonly connections: { count: number }; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const connections = { count: 0 };
  const server: NetServer = createServer((s) => {
    connections.count++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    connections,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
