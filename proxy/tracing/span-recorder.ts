import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { ROOT_CONTEXT, SpanKind, TraceFlags, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_K8S_NAMESPACE_NAME, ATTR_K8S_POD_NAME, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Clock } from '../../common/clock.js';
import { SpanBatcher, type DropReason } from './span-batcher.js';
import type { TraceIds } from './trace-ids.js';
import { otlpTraceExporter } from './otlp-exporter.js';
import { SPAN_LIMITS, type TracingConfig } from './tracing-config.js';

/** The collector's TLS files, read by MeshTracer at start (an unreadable one fails start-up with its name). */
export interface CollectorCredentials {
  readonly plaintext: boolean;
  readonly ca: Buffer | null;
  readonly key: Buffer | null;
  readonly cert: Buffer | null;
}

export interface SpanRecorderOptions {
  readonly config: TracingConfig;
  readonly clock: Clock;
  readonly ids: TraceIds;
  readonly resource: { readonly service: string; readonly namespace: string; readonly pod: string };
  /** The exporter to use (tests), else an OTLP/gRPC one to `config.collector` with these credentials. */
  readonly exporter: SpanExporter | undefined;
  readonly credentials: CollectorCredentials | undefined;
  readonly dropped: (reason: DropReason, n: number) => void;
  readonly exported: (n: number) => void;
}

/**
 * The part of tracing that records spans: the OpenTelemetry SDK's tracer, the bounded
 * batcher and the OTLP/gRPC exporter. MeshTracer imports this module only when a collector
 * (or a test's exporter) is configured: the SDK, the exporter and what they pull in
 * (grpc-js, otlp-transformer, sdk-metrics, semantic-conventions...) cost a sidecar about
 * 10 MB of resident memory (docs/benchmarks.md, "Resident memory"), and most sidecars record no span.
 */
export class SpanRecorder {
  private readonly tracer: Tracer;
  private readonly provider: BasicTracerProvider;
  private readonly batcher: SpanBatcher;

  constructor(o: SpanRecorderOptions) {
    const c = o.config.collector;
    const exporter = o.exporter ?? otlpExporter(c!.address, o.credentials!, o.config.exportTimeoutMs);
    this.batcher = new SpanBatcher(exporter, o.config, o.clock, o.dropped, o.exported);
    const ids = o.ids;
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: o.resource.service, [ATTR_K8S_NAMESPACE_NAME]: o.resource.namespace, ...(o.resource.pod ? { [ATTR_K8S_POD_NAME]: o.resource.pod } : {}) }),
      // The layer has decided already (sampling percent, the caller's flag): every span asked for is recorded.
      sampler: new AlwaysOnSampler(),
      idGenerator: { generateTraceId: () => ids.traceId(), generateSpanId: () => ids.spanId() },
      spanProcessors: [this.batcher],
      // The path and authority come from the client: a span must stay small whatever it
      // sends, or the queue's bound in spans (maxQueueSize) would not bound its memory. Every
      // limit is given, so that no OTEL_*_LIMIT variable of the pod changes them (SPAN_LIMITS).
      spanLimits: { ...SPAN_LIMITS },
    });
    this.tracer = this.provider.getTracer('wren-proxy');
  }

  /** See MeshTracer.startSpan. */
  startSpan(kind: 'client' | 'server', name: string, startTime: number, attributes: Attributes, parentTraceId: string, parentSpanId: string, traceState: string | undefined): Span {
    const parent = parentTraceId
      ? trace.setSpanContext(ROOT_CONTEXT, { traceId: parentTraceId, spanId: parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: traceState ? new TraceState(traceState) : undefined })
      : ROOT_CONTEXT;
    return this.tracer.startSpan(name, { kind: kind === 'client' ? SpanKind.CLIENT : SpanKind.SERVER, startTime, attributes }, parent);
  }

  async shutdown(timeoutMs: number): Promise<void> {
    await this.batcher.shutdown(timeoutMs);
    await this.provider.shutdown().catch(() => undefined);
  }
}

function otlpExporter(address: string, c: CollectorCredentials, timeoutMs: number): SpanExporter {
  const creds: ChannelCredentials = c.plaintext ? credentials.createInsecure() : credentials.createSsl(c.ca, c.key, c.cert);
  return otlpTraceExporter(address, c.plaintext, creds, timeoutMs);
}
