import type { Writable } from 'node:stream';
import type { Clock, Random, Timer } from '../../common/clock.js';
import type { TelemetrySource } from '../telemetry/telemetry-settings.js';
import { Counter, type Registry } from '../metrics/prom.js';
import { refusedRequestEntry, type AccessLogEntry, type RefusedProtocol } from './entry.js';
import { CLIENT_CANCELLED_LABEL, type ProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest } from '../http/exchange.js';

/**
 * Bytes the sink may hold unwritten before lines are dropped. Node writes stdout to a pipe
 * asynchronously (it buffers whatever the reader has not taken), so a reader that stalls
 * (a log shipper that fell behind) would otherwise grow the proxy's memory without bound;
 * past the cap a line is dropped and counted instead (wren_access_log_dropped_total).
 * 4 MiB is some 8000 typical lines.
 */
const DEFAULT_MAX_BUFFERED_BYTES = 4 << 20;

/**
 * When buffered lines are written (config `accessLogFlush`): as Envoy's access log files
 * (its `--file-flush-min-size-kb`, 64 by default, and `--file-flush-interval-msec`), the
 * buffer goes out once it holds `minBytes`, or `intervalMs` after its first line,
 * whichever comes first, and when the proxy stops. Envoy waits 10 s by default; Wren 1 s,
 * so that `kubectl logs -f` on a quiet workload still looks live.
 */
export interface AccessLogFlush {
  readonly intervalMs: number;
  readonly minBytes: number;
}

export const DEFAULT_ACCESS_LOG_FLUSH: AccessLogFlush = Object.freeze({ intervalMs: 1000, minBytes: 64 * 1024 });

export interface AccessLogDeps {
  readonly telemetry: TelemetrySource;
  readonly random: Random;
  readonly clock: Clock;
  /** Where lines go: the process's stdout, as Envoy's `/dev/stdout` access log in Istio. */
  readonly sink: Writable;
  readonly registry: Registry;
  readonly maxBufferedBytes?: number;
  /** Default DEFAULT_ACCESS_LOG_FLUSH. */
  readonly flush?: AccessLogFlush;
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
  private readonly flushes: Counter<'reason'>;
  private readonly max: number;
  private readonly policy: AccessLogFlush;
  /** Lines waiting for the next write (see AccessLogFlush). */
  private pending = '';
  private timer: Timer | null = null;
  /** Stopped (close()): a line that still comes (a request cut as the listeners closed) is written at once. */
  private stopped = false;
  private readonly onInterval = (): void => {
    this.timer = null;
    this.flush('interval');
  };

  constructor(private readonly d: AccessLogDeps) {
    this.clock = d.clock;
    this.max = d.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.policy = d.flush ?? DEFAULT_ACCESS_LOG_FLUSH;
    this.dropped = new Counter({
      name: 'wren_access_log_dropped_total',
      help: 'Access log lines dropped because the sink (stdout) was not keeping up (its write buffer was over the cap)',
      registers: [d.registry],
    });
    this.flushes = new Counter({
      name: 'wren_access_log_flushes_total',
      help: 'Writes of buffered access log lines to the sink, by what triggered them: size (accessLogFlush.minBytes reached), interval (accessLogFlush.intervalMs after the first line), shutdown',
      labelNames: ['reason'],
      registers: [d.registry],
    });
  }

  /** Writes what is buffered now (`reason` for wren_access_log_flushes_total); the proxy calls it with 'shutdown' when it stops. */
  flush(reason: 'size' | 'interval' | 'shutdown'): void {
    if (this.timer !== null) {
      this.d.clock.clearTimeout(this.timer);
      this.timer = null;
    }
    const lines = this.pending;
    if (lines === '') return;
    this.pending = '';
    this.flushes.inc({ reason });
    if (!this.d.sink.destroyed) this.d.sink.write(lines);
  }

  /**
   * The proxy stops: what is buffered is written, and the promise resolves once the sink has
   * taken every line written so far (its write callback). A listener worker's stdout is a
   * stream to the main thread that hands one write over at a time: lines still queued in it
   * when the thread is terminated are lost, so the worker reports itself closed only after
   * this (proxy/workers/worker-main.ts, test/proxy-workers.test.ts).
   */
  close(): Promise<void> {
    this.stopped = true;
    this.flush('shutdown');
    const sink = this.d.sink;
    if (sink.destroyed || sink.writableEnded || sink.writableLength === 0) return Promise.resolve();
    // An empty write's callback runs after those of every write before it.
    return new Promise((resolve) => void sink.write('', () => resolve()));
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
   * A request refused before the layers: the HTTP/1.1 codec's (h1-server.ts onClientError)
   * and its 408 request-headers timeout (onHeadersTimeout), the HTTP/2 servers' (h2-server.ts
   * refuse() and its 431, h2-server-session.ts malformed streams): its line when sampled
   * (refusedRequestEntry). A client that left mid-head (CLIENT_CANCELLED) made no request
   * and gets none, as Envoy logs none for a connection closed before a full head. `status`
   * is what the client got: 0 for a stream reset without a response (a malformed HTTP/2
   * request, RFC 9113 section 8.1.1), as Envoy logs a reset stream.
   */
  refused(err: ProxyError, source: ProxyRequest['source'], origDst: ProxyRequest['origDst'], protocol: RefusedProtocol = 'HTTP/1.1', status: number = err.httpStatus): void {
    if (err.label === CLIENT_CANCELLED_LABEL || !this.sampled()) return;
    this.write(refusedRequestEntry(err, this.d.clock.now(), source, origDst, protocol, status));
  }

  /**
   * Queues one line, or drops it (counted) when the sink is already holding more than the
   * cap. Lines go out in batches (AccessLogFlush): each write to stdout is a system call,
   * which with one write per event-loop turn cost close to one per request at saturation
   * (docs/benchmarks.md, issue 12 lean2).
   */
  write(entry: AccessLogEntry): void {
    const sink = this.d.sink;
    if (sink.writableLength + this.pending.length > this.max || sink.destroyed) {
      this.dropped.inc();
      return;
    }
    // JSON.stringify escapes quotes, control characters and lone surrogates: a header
    // value cannot break the line or forge another one.
    this.pending += JSON.stringify(entry) + '\n';
    if (this.pending.length >= this.policy.minBytes || this.stopped) this.flush(this.stopped ? 'shutdown' : 'size');
    else if (this.timer === null) {
      // unref: buffered lines never keep the process alive (the proxy flushes them when it stops).
      this.timer = this.d.clock.setTimeout(this.onInterval, this.policy.intervalMs);
      this.timer.unref?.();
    }
  }
}
