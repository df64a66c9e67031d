import { readFileSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_K8S_NAMESPACE_NAME, ATTR_RPC_METHOD, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { SpanBatcher, type BatchSettings, type DropReason } from '../proxy/tracing/span-batcher.js';
import { otlpTraceExporter } from '../proxy/tracing/otlp-exporter.js';
import { SPAN_LIMITS, otlpEnvNames } from '../proxy/tracing/tracing-config.js';
import type { PushRecord } from './discovery/discovery-server.js';

/** `--trace-collector` and friends (docs/control-plane.md, Tracing). */
export interface ControlPlaneTracingOptions {
  /** host:port of an OTLP/gRPC collector. */
  readonly collector: string;
  /** Plaintext gRPC (--trace-collector-plaintext); else TLS with `caFile` or the system roots. */
  readonly plaintext: boolean;
  readonly caFile: string | null;
  readonly namespace: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Tests: export here instead of the OTLP/gRPC exporter for `collector`. */
  readonly exporter?: SpanExporter;
}

/**
 * The proxy's batch defaults (docs/observability.md, Export, drops and memory) but a 1 s
 * delay (a control plane makes few spans, and an operator looking at a rollout wants them
 * soon) and a 10 s bound per export (OTLPTraceExporter's own default).
 */
const BATCH: BatchSettings = { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMs: 1000, exportTimeoutMs: 10_000 };

/** gRPC status names per code (RPC semantic conventions: rpc.grpc.status_code is the number). */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

/**
 * The control plane's own spans, off unless a collector is given: a SERVER span per
 * Certify call (wren.identity.v1.Identity/Certify), one per discovery subscription (from
 * Subscribe to the first config written to that proxy, or the stream's end) and one per
 * push, a child of its subscription's. Spans go through the proxy's bounded, counting
 * batcher (proxy/tracing/span-batcher.ts): a collector that is down or slow never holds a
 * Certify call or a push, and what it loses is counted in the control plane's
 * `wren_trace_spans_dropped_total{reason}` (the SDK's own processor only logs overflows).
 */
export class ControlPlaneTracing {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  /** Open subscription spans, and the context pushes are parented to, by subscriber id. */
  private readonly subs = new Map<number, { span: Span | null; ctx: SpanContext }>();
  /** Set by `registerMetrics` (the control plane's registry exists only once it starts); no span ends before. */
  private counters: { readonly dropped: Counter<'reason'>; readonly exported: Counter } | null = null;

  constructor(o: ControlPlaneTracingOptions) {
    const creds = o.plaintext ? credentials.createInsecure() : credentials.createSsl(o.caFile ? readFileSync(o.caFile) : null);
    // --trace-collector alone, as the sidecars' tracing.collector (proxy/tracing/otlp-exporter.ts).
    const exporter = o.exporter ?? otlpTraceExporter(o.collector, o.plaintext, creds, BATCH.exportTimeoutMs);
    const log = o.logger.child({ component: 'tracing' });
    // Names only: a _HEADERS value carries a collector's credentials.
    const ignored = o.exporter ? [] : otlpEnvNames();
    if (ignored.length > 0) log.warn('OTEL_EXPORTER_OTLP_* environment variables are ignored: the collector is --trace-collector', { code: 'OTLP_ENV_IGNORED', variables: ignored, collector: o.collector });
    let warned = false;
    const batcher = new SpanBatcher(exporter, BATCH, o.clock, (reason: DropReason, n: number) => {
      this.counters?.dropped.inc({ reason }, n);
      // Once per outage, not per batch: the metric carries the count.
      if (!warned && reason !== 'shutdown') log.warn('trace spans dropped', { code: 'TRACE_SPANS_DROPPED', reason, spans: n });
      warned = true;
    }, (n) => {
      this.counters?.exported.inc(n);
      warned = false;
    });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'wren-control-plane', [ATTR_K8S_NAMESPACE_NAME]: o.namespace }),
      sampler: new AlwaysOnSampler(),
      spanProcessors: [batcher],
      // As the proxy's (span-recorder.ts): the queue is bounded in spans, so their strings must
      // be too. A Subscribe's pod is the stream's to write (up to a 4 MiB message), and 2048
      // queued subscription spans could hold gigabytes while a collector is slow. All of them,
      // whatever OTEL_*_LIMIT the environment holds.
      spanLimits: { ...SPAN_LIMITS },
    });
    this.tracer = this.provider.getTracer('wren-control-plane');
  }

  /** Counts drops and exports in the control plane's registry (the proxy's metric names). */
  registerMetrics(registry: Registry): void {
    this.counters = {
      dropped: new Counter({
        name: 'wren_trace_spans_dropped_total',
        help: 'Spans recorded but never delivered to the collector, by reason (queue-full, export-failed, export-timeout, shutdown)',
        labelNames: ['reason'] as const,
        registers: [registry],
      }),
      exported: new Counter({ name: 'wren_trace_spans_exported_total', help: 'Spans the collector accepted', registers: [registry] }),
    };
  }

  /** A Certify call: ended by `certified`. */
  certifyStarted(peer: string): Span {
    return this.tracer.startSpan('wren.identity.v1.Identity/Certify', {
      kind: SpanKind.SERVER,
      attributes: { 'rpc.system': 'grpc', 'rpc.service': 'wren.identity.v1.Identity', [ATTR_RPC_METHOD]: 'Certify', 'client.address': peer },
    });
  }

  certified(span: Span, identity: string, grpcStatus: number, reason?: string): void {
    span.setAttribute('rpc.grpc.status_code', grpcStatus);
    span.setAttribute('wren.requested.identity', identity.slice(0, 300));
    if (reason) span.setAttribute('wren.refusal.reason', reason);
    if (GRPC_SERVER_ERRORS.has(grpcStatus)) span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
    span.end();
  }

  subscribed(subscriber: number, identity: string, pod: string): void {
    const span = this.tracer.startSpan('wren.discovery.v1.Discovery/Subscribe', {
      kind: SpanKind.SERVER,
      attributes: { 'rpc.system': 'grpc', 'rpc.service': 'wren.discovery.v1.Discovery', [ATTR_RPC_METHOD]: 'Stream', 'wren.proxy.identity': identity, 'wren.proxy.pod': pod, 'wren.discovery.subscriber': subscriber },
    });
    this.subs.set(subscriber, { span, ctx: span.spanContext() });
  }

  pushed(p: PushRecord): void {
    const sub = this.subs.get(p.subscriber);
    if (sub?.span) {
      sub.span.setAttribute('wren.discovery.first_version', p.version);
      sub.span.end();
      sub.span = null;
    }
    const parent = sub ? trace.setSpanContext(ROOT_CONTEXT, sub.ctx) : ROOT_CONTEXT;
    this.tracer
      .startSpan('wren.discovery.v1.Discovery/Push', {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': 'wren.discovery.v1.Discovery', 'wren.proxy.identity': p.identity, 'wren.discovery.version': p.version, 'wren.discovery.full': p.full, 'wren.discovery.bytes': p.bytes },
      }, parent)
      .end();
  }

  /** The stream ended: a subscription that never got its first config ends as an error. */
  dropped(subscriber: number): void {
    const sub = this.subs.get(subscriber);
    this.subs.delete(subscriber);
    if (!sub?.span) return;
    sub.span.setStatus({ code: SpanStatusCode.ERROR, message: 'stream ended before the first config' });
    sub.span.end();
  }

  /** Flushes what is queued (bounded by the processor's export timeout). */
  async shutdown(): Promise<void> {
    for (const id of [...this.subs.keys()]) this.dropped(id);
    await this.provider.shutdown().catch(() => undefined);
  }
}
