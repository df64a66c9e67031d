import { readFileSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_K8S_NAMESPACE_NAME, ATTR_RPC_METHOD, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { PushRecord } from './discovery/discovery-server.js';

/** `--trace-collector` and friends (docs/control-plane.md, Tracing). */
export interface ControlPlaneTracingOptions {
  /** host:port of an OTLP/gRPC collector. */
  readonly collector: string;
  /** Plaintext gRPC (--trace-collector-plaintext); else TLS with `caFile` or the system roots. */
  readonly plaintext: boolean;
  readonly caFile: string | null;
  readonly namespace: string;
}

/** gRPC status names per code (RPC semantic conventions: rpc.grpc.status_code is the number). */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

/**
 * The control plane's own spans, off unless a collector is given: a SERVER span per
 * Certify call (wren.identity.v1.Identity/Certify), one per discovery subscription (from
 * Subscribe to the first config written to that proxy, or the stream's end) and one per
 * push, a child of its subscription's. A few calls per proxy and config change, so the
 * SDK's BatchSpanProcessor (its defaults: 2048 queued, drops logged by the SDK) is enough.
 */
export class ControlPlaneTracing {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  /** Open subscription spans, and the context pushes are parented to, by subscriber id. */
  private readonly subs = new Map<number, { span: Span | null; ctx: SpanContext }>();

  constructor(o: ControlPlaneTracingOptions) {
    const creds = o.plaintext ? credentials.createInsecure() : credentials.createSsl(o.caFile ? readFileSync(o.caFile) : null);
    const exporter = new OTLPTraceExporter({ url: `${o.plaintext ? 'http' : 'https'}://${o.collector}`, credentials: creds });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'wren-control-plane', [ATTR_K8S_NAMESPACE_NAME]: o.namespace }),
      sampler: new AlwaysOnSampler(),
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000 })],
    });
    this.tracer = this.provider.getTracer('wren-control-plane');
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
