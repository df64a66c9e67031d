import { readFileSync } from 'node:fs';
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { ROOT_CONTEXT, SpanKind, TraceFlags, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_K8S_NAMESPACE_NAME, ATTR_K8S_POD_NAME, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { Counter, type Registry } from 'prom-client';
import type { Clock, Random } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { TelemetrySource } from '../telemetry/telemetry-settings.js';
import { SpanBatcher, type DropReason } from './span-batcher.js';
import { TraceIds } from './trace-ids.js';
import type { CollectorConfig, TracingConfig } from './tracing-config.js';

/** Longest string attribute value and span name (characters), as the access log caps its path. */
const MAX_SPAN_STRING = 1024;

export interface MeshTracerOptions {
  readonly config: TracingConfig;
  /** Read per request: `current.tracing.samplingPercent` (local config > control plane > 1 %). */
  readonly settings: TelemetrySource;
  readonly random: Random;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registry: Registry;
  /** This workload's SPIFFE ID (the certificate rotates, the identity does not). */
  readonly selfIdentity: () => string;
  /** Where the inbound side delivers to the app (wren.upstream.address = appAddress:targetPort). */
  readonly appAddress: string;
  /** service.name, k8s.namespace.name, k8s.pod.name (OpenTelemetry resource semantic conventions). */
  readonly resource: { readonly service: string; readonly namespace: string; readonly pod: string };
  /** Tests: export somewhere else than the configured collector. */
  readonly exporter?: SpanExporter;
}

/**
 * The sidecar's tracing state, shared by the outbound and inbound trace layers: the
 * sampling draw, id generation, and, when a collector is configured, an SDK tracer whose
 * spans go through a bounded batcher to the OTLP/gRPC exporter. Without a collector there
 * is no tracer: sampling is still decided and propagated, no span is recorded.
 */
export class MeshTracer {
  readonly ids = new TraceIds();
  readonly random: Random;
  readonly selfIdentity: () => string;
  readonly appAddress: string;
  private readonly settings: TelemetrySource;
  private readonly tracer: Tracer | null;
  private readonly provider: BasicTracerProvider | null;
  private readonly batcher: SpanBatcher | null;
  private readonly shutdownMs: number;

  constructor(o: MeshTracerOptions) {
    this.settings = o.settings;
    this.random = o.random;
    this.selfIdentity = o.selfIdentity;
    this.appAddress = o.appAddress;
    this.shutdownMs = o.config.shutdownTimeoutMs;
    const dropped = new Counter({
      name: 'wren_trace_spans_dropped_total',
      help: 'Spans recorded but never delivered to the collector, by reason (queue-full, export-failed, export-timeout, shutdown)',
      labelNames: ['reason'],
      registers: [o.registry],
    });
    const exported = new Counter({ name: 'wren_trace_spans_exported_total', help: 'Spans the collector accepted', registers: [o.registry] });
    const exporter = o.exporter ?? (o.config.collector ? otlpExporter(o.config.collector, o.config.exportTimeoutMs) : undefined);
    if (!exporter) {
      this.tracer = this.provider = this.batcher = null;
      return;
    }
    const log = o.logger.child({ component: 'tracing' });
    let warned = false;
    this.batcher = new SpanBatcher(exporter, o.config, o.clock, (reason: DropReason, n: number) => {
      dropped.inc({ reason }, n);
      // Once per outage, not per batch: the metric carries the count.
      if (!warned && reason !== 'shutdown') log.warn('trace spans dropped', { code: 'TRACE_SPANS_DROPPED', reason, spans: n });
      warned = true;
    }, (n) => {
      exported.inc(n);
      warned = false;
    });
    const ids = this.ids;
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: o.resource.service, [ATTR_K8S_NAMESPACE_NAME]: o.resource.namespace, ...(o.resource.pod ? { [ATTR_K8S_POD_NAME]: o.resource.pod } : {}) }),
      // The layer has decided already (sampling percent, the caller's flag): every span asked for is recorded.
      sampler: new AlwaysOnSampler(),
      idGenerator: { generateTraceId: () => ids.traceId(), generateSpanId: () => ids.spanId() },
      spanProcessors: [this.batcher],
      // The path and authority come from the client: a span must stay small whatever it
      // sends, or the queue's bound in spans (maxQueueSize) would not bound its memory.
      spanLimits: { attributeValueLengthLimit: MAX_SPAN_STRING },
    });
    this.tracer = this.provider.getTracer('wren-proxy');
  }

  /** True when spans are recorded (a collector is configured). */
  get recording(): boolean {
    return this.tracer !== null;
  }

  /** The sampling draw for a request that brings no decision: the injected Random against the percent in force. */
  sample(): boolean {
    return this.random() * 100 < this.settings.current.tracing.samplingPercent;
  }

  /**
   * Starts a span: a child of the caller's span when `parentTraceId` is set (a remote
   * parent, sampled), else the root of a new trace.
   */
  startSpan(kind: 'client' | 'server', name: string, startTime: number, attributes: Attributes, parentTraceId: string, parentSpanId: string, traceState: string | undefined): Span {
    const parent = parentTraceId
      ? trace.setSpanContext(ROOT_CONTEXT, { traceId: parentTraceId, spanId: parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: traceState ? new TraceState(traceState) : undefined })
      : ROOT_CONTEXT;
    if (name.length > MAX_SPAN_STRING) name = name.slice(0, MAX_SPAN_STRING);
    return this.tracer!.startSpan(name, { kind: kind === 'client' ? SpanKind.CLIENT : SpanKind.SERVER, startTime, attributes }, parent);
  }

  /** Exports what is queued within the config's shutdownTimeoutMs; the rest is counted as dropped. */
  async shutdown(): Promise<void> {
    if (!this.batcher) return;
    await this.batcher.shutdown(this.shutdownMs);
    await this.provider?.shutdown().catch(() => undefined);
  }
}

function otlpExporter(c: CollectorConfig, timeoutMs: number): OTLPTraceExporter {
  let creds: ChannelCredentials;
  if (c.plaintext) creds = credentials.createInsecure();
  else {
    // Read once at start; an unreadable file fails start-up with its name.
    const read = (f: string | undefined) => (f === undefined ? null : readFileSync(f));
    creds = credentials.createSsl(read(c.tls.caFile), read(c.tls.keyFile), read(c.tls.certFile));
  }
  return new OTLPTraceExporter({ url: `${c.plaintext ? 'http' : 'https'}://${c.address}`, credentials: creds, timeoutMillis: timeoutMs });
}
