import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Clock, Timer } from '../../common/clock.js';

export interface BatchSettings {
  /** Spans held waiting for export; a span ending when it is full is dropped (reason queue-full). */
  readonly maxQueueSize: number;
  /** Spans per export call. */
  readonly maxExportBatchSize: number;
  /** A partial batch is exported after this delay. */
  readonly scheduledDelayMs: number;
  /** One export call's bound (also the exporter's gRPC deadline); past it its spans count as dropped (export-timeout). */
  readonly exportTimeoutMs: number;
}

export type DropReason = 'queue-full' | 'export-failed' | 'export-timeout' | 'shutdown';

/**
 * A bounded batching span processor, the OpenTelemetry SDK's BatchSpanProcessor semantics
 * (the same defaults: 2048 queued, 512 per batch, 5 s delay, 30 s timeout) with every
 * lost span counted by reason: the SDK's processor only logs queue overflows and does not
 * count spans a failed export loses. One export is in flight at a time, so memory is at
 * most maxQueueSize + maxExportBatchSize spans whatever the collector does; ending a span
 * never waits (onEnd is a push or a count).
 */
export class SpanBatcher implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private exporting = false;
  private timer: Timer | undefined;
  private closed = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly exporter: SpanExporter,
    private readonly s: BatchSettings,
    private readonly clock: Clock,
    private readonly dropped: (reason: DropReason, n: number) => void,
    private readonly exported: (n: number) => void,
  ) {}

  /** Spans waiting (for tests and the bound check). */
  get queued(): number {
    return this.queue.length;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.closed) return this.dropped('shutdown', 1);
    if (this.queue.length >= this.s.maxQueueSize) return this.dropped('queue-full', 1);
    this.queue.push(span);
    if (this.queue.length >= this.s.maxExportBatchSize) this.exportNext();
    else this.arm();
  }

  forceFlush(): Promise<void> {
    return this.drain();
  }

  /**
   * Exports what is queued, bounded by `withinMs`; what is left is counted as dropped
   * (shutdown). Never rejects.
   */
  async shutdown(withinMs = this.s.exportTimeoutMs): Promise<void> {
    if (this.closed) return;
    const bound = new Promise<void>((r) => {
      const t = this.clock.setTimeout(r, withinMs);
      t.unref?.();
    });
    await Promise.race([this.drain(), bound]);
    this.closed = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    if (this.queue.length) this.dropped('shutdown', this.queue.length);
    this.queue = [];
    await Promise.race([this.exporter.shutdown().catch(() => undefined), new Promise<void>((r) => this.clock.setTimeout(r, 100).unref?.())]);
  }

  private drain(): Promise<void> {
    if (!this.exporting && this.queue.length === 0) return Promise.resolve();
    return new Promise<void>((r) => {
      this.idle.push(r);
      this.exportNext();
    });
  }

  private arm(): void {
    if (this.timer || this.exporting) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.exportNext();
    }, this.s.scheduledDelayMs);
    this.timer.unref?.();
  }

  private exportNext(): void {
    if (this.exporting) return;
    if (this.timer) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.queue.length === 0) {
      const waiting = this.idle;
      this.idle = [];
      for (const r of waiting) r();
      return;
    }
    const batch = this.queue.length <= this.s.maxExportBatchSize ? this.queue : this.queue.slice(0, this.s.maxExportBatchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
    this.exporting = true;
    let done = false;
    const finish = (reason: DropReason | null) => {
      if (done) return;
      done = true;
      this.clock.clearTimeout(guard);
      if (reason) this.dropped(reason, batch.length);
      else this.exported(batch.length);
      this.exporting = false;
      if (this.queue.length >= this.s.maxExportBatchSize || (this.idle.length && !this.closed)) this.exportNext();
      else if (this.queue.length) this.arm();
      else this.exportNext();
    };
    // The exporter's own deadline should answer first; this guard keeps the batcher going if
    // a callback never comes (the batch is then the exporter's to drop, and counted here).
    const guard = this.clock.setTimeout(() => finish('export-timeout'), this.s.exportTimeoutMs + 1000);
    guard.unref?.();
    try {
      this.exporter.export(batch, (r: ExportResult) => finish(r.code === ExportResultCode.SUCCESS ? null : isDeadline(r.error) ? 'export-timeout' : 'export-failed'));
    } catch {
      finish('export-failed');
    }
  }
}

/** gRPC DEADLINE_EXCEEDED (code 4), what the OTLP/gRPC exporter reports when the collector does not answer in time. */
function isDeadline(e: Error | undefined): boolean {
  return e !== undefined && ((e as Error & { code?: unknown }).code === 4 || /deadline/i.test(e.message));
}
