import type { Attributes, Span } from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Clock, Random } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { Counter, type Registry } from '../metrics/prom.js';
import type { TelemetrySource } from '../telemetry/telemetry-settings.js';
import type { DropReason } from './span-batcher.js';
import type { CollectorCredentials, SpanRecorder } from './span-recorder.js';
import { TraceIds } from './trace-ids.js';
import { MAX_SPAN_STRING, otlpEnvNames, readCollectorTls, type TracingConfig } from './tracing-config.js';

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
 * is no tracer: sampling is still decided and propagated, no span is recorded, and the
 * SDK is never loaded (span-recorder.ts).
 */
export class MeshTracer {
  readonly ids = new TraceIds();
  readonly random: Random;
  readonly selfIdentity: () => string;
  readonly appAddress: string;
  /**
   * Settles when spans can be recorded: at once without a collector; with one, once the
   * SDK and the exporter (span-recorder.ts, imported only then) are loaded. Proxy.start
   * waits for it before any listener binds, so no request's span is lost to the load.
   */
  readonly ready: Promise<void>;
  private readonly settings: TelemetrySource;
  private recorder: SpanRecorder | null = null;
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
    const collector = o.config.collector;
    if (!o.exporter && !collector) {
      this.ready = Promise.resolve();
      return;
    }
    // Read here, synchronously: an unreadable file fails start-up with its field's name, as before the SDK was loaded lazily.
    const credentials: CollectorCredentials | undefined = o.exporter || !collector ? undefined : { plaintext: collector.plaintext, ...readCollectorTls(collector.tls) };
    const log = o.logger.child({ component: 'tracing' });
    // Names only: a _HEADERS value carries a collector's credentials.
    const ignored = o.exporter ? [] : otlpEnvNames();
    if (ignored.length > 0) log.warn('OTEL_EXPORTER_OTLP_* environment variables are ignored: the collector is tracing.collector of the proxy config', { code: 'OTLP_ENV_IGNORED', variables: ignored, collector: collector!.address });
    let warned = false;
    const onDropped = (reason: DropReason, n: number) => {
      dropped.inc({ reason }, n);
      // Once per outage, not per batch: the metric carries the count.
      if (!warned && reason !== 'shutdown') log.warn('trace spans dropped', { code: 'TRACE_SPANS_DROPPED', reason, spans: n });
      warned = true;
    };
    const onExported = (n: number) => {
      exported.inc(n);
      warned = false;
    };
    this.ready = import('./span-recorder.js').then(({ SpanRecorder }) => {
      this.recorder = new SpanRecorder({
        config: o.config, clock: o.clock, ids: this.ids, resource: o.resource, exporter: o.exporter, credentials, dropped: onDropped, exported: onExported,
      });
    });
  }

  /** True when spans are recorded (a collector is configured and the recorder is loaded). */
  get recording(): boolean {
    return this.recorder !== null;
  }

  /** The sampling draw for a request that brings no decision: the injected Random against the percent in force. */
  sample(): boolean {
    return this.random() * 100 < this.settings.current.tracing.samplingPercent;
  }

  /**
   * Starts a span: a child of the caller's span when `parentTraceId` is set (a remote
   * parent, sampled), else the root of a new trace. Only when `recording`.
   */
  startSpan(kind: 'client' | 'server', name: string, startTime: number, attributes: Attributes, parentTraceId: string, parentSpanId: string, traceState: string | undefined): Span {
    if (name.length > MAX_SPAN_STRING) name = name.slice(0, MAX_SPAN_STRING);
    return this.recorder!.startSpan(kind, name, startTime, attributes, parentTraceId, parentSpanId, traceState);
  }

  /** Exports what is queued within the config's shutdownTimeoutMs; the rest is counted as dropped. */
  async shutdown(): Promise<void> {
    await this.ready.catch(() => undefined);
    await this.recorder?.shutdown(this.shutdownMs);
  }
}
