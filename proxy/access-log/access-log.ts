import type { Writable } from 'node:stream';
import type { Clock, Random } from '../../common/clock.js';
import type { TelemetrySource } from '../telemetry/telemetry-settings.js';
import { Counter, type Registry } from '../metrics/prom.js';
import type { AccessLogEntry } from './entry.js';

/**
 * Bytes the sink may hold unwritten before lines are dropped. Node writes stdout to a pipe
 * asynchronously (it buffers whatever the reader has not taken), so a reader that stalls
 * (a log shipper that fell behind) would otherwise grow the proxy's memory without bound;
 * past the cap a line is dropped and counted instead (wren_access_log_dropped_total).
 * 4 MiB is some 8000 typical lines.
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 4 << 20;

export interface AccessLogDeps {
  readonly telemetry: TelemetrySource;
  readonly random: Random;
  readonly clock: Clock;
  /** Where lines go: the process's stdout, as Envoy's `/dev/stdout` access log in Istio. */
  readonly sink: Writable;
  readonly registry: Registry;
  readonly maxBufferedBytes?: number;
}

/**
 * The sidecar's access log (docs/observability.md, Access logs): one JSON line per sampled
 * HTTP request and opaque TCP connection. Whether to log is read from the TelemetrySource
 * per request (config, pod annotation or the control plane's Telemetry resource), so it
 * can be switched on and off without a restart.
 */
export class AccessLog {
  readonly clock: Clock;
  private readonly dropped: Counter;
  private readonly max: number;
  /** Lines waiting for this event-loop turn's one write. */
  private pending = '';
  private readonly flush = (): void => {
    const lines = this.pending;
    this.pending = '';
    if (!this.d.sink.destroyed) this.d.sink.write(lines);
  };

  constructor(private readonly d: AccessLogDeps) {
    this.clock = d.clock;
    this.max = d.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.dropped = new Counter({
      name: 'wren_access_log_dropped_total',
      help: 'Access log lines dropped because the sink (stdout) was not keeping up (its write buffer was over the cap)',
      registers: [d.registry],
    });
  }

  /**
   * Log this request or connection? false when access logs are off (the default): one
   * property chain read, no allocation. When on, one random draw decides (the sampling
   * percentage), once per request, at its start.
   */
  sampled(): boolean {
    const s = this.d.telemetry.current.accessLog;
    if (!s.enabled) return false;
    const p = s.samplingPercent;
    return p >= 100 || (p > 0 && this.d.random() * 100 < p);
  }

  /**
   * Queues one line, or drops it (counted) when the sink is already holding more than the
   * cap. The lines of one event-loop turn go out in one write at its end (setImmediate):
   * under load many requests end per turn, and each write to stdout is a system call
   * (Envoy likewise buffers its access log and flushes it in batches).
   */
  write(entry: AccessLogEntry): void {
    const sink = this.d.sink;
    if (sink.writableLength + this.pending.length > this.max || sink.destroyed) {
      this.dropped.inc();
      return;
    }
    if (this.pending === '') setImmediate(this.flush);
    // JSON.stringify escapes quotes, control characters and lone surrogates: a header
    // value cannot break the line or forge another one.
    this.pending += JSON.stringify(entry) + '\n';
  }
}
