import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay, performance, PerformanceObserver, constants as perf } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, type Registry } from './prom.js';

const GC_KINDS: Record<number, string> = {
  [perf.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perf.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perf.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perf.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * The process metrics a sidecar reports, under prom-client's default-metric names
 * (process_cpu_*, process_resident_memory_bytes, process_start_time_seconds,
 * process_open_fds, nodejs_heap_*, nodejs_external_memory_bytes, nodejs_eventloop_lag_*,
 * nodejs_gc_duration_seconds) so dashboards built on those keep working. Used instead of
 * prom-client's collectDefaultMetrics, which loads @opentelemetry/api (see prom.ts).
 * Values are read at scrape time; the event-loop delay histogram and the GC observer are
 * the only things running in between. Returns a function that stops them.
 */
export function registerProcessMetrics(registry: Registry): () => void {
  const registers = [registry];
  let last = process.cpuUsage();
  const user = new Counter({ name: 'process_cpu_user_seconds_total', help: 'Total user CPU time spent in seconds.', registers });
  const system = new Counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', registers });
  new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers,
    collect() {
      const now = process.cpuUsage();
      const u = (now.user - last.user) / 1e6;
      const s = (now.system - last.system) / 1e6;
      last = now;
      user.inc(u);
      system.inc(s);
      this.inc(u + s);
    },
  });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  const startSeconds = Math.round(performance.timeOrigin / 1000);
  gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () => startSeconds);
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => process.memoryUsage.rss());
  gauge('process_open_fds', 'Number of open file descriptors.', () => {
    try {
      return readdirSync('/proc/self/fd').length - 1; // minus the one readdir itself holds
    } catch {
      return NaN;
    }
  });
  gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', () => process.memoryUsage().heapTotal);
  gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', () => process.memoryUsage().heapUsed);
  gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', () => process.memoryUsage().external);

  // The sampler is a repeating libuv timer: prom-client's 10 ms wakes every sidecar 100
  // times a second even when no request comes (strace: ~200 epoll_wait calls/s, 0.8 % of a
  // core per idle sidecar on the benchmark VM). 100 ms still catches every stall that long
  // and any shorter one that overlaps a tick, which is what the lag gauges are read for.
  const delay = monitorEventLoopDelay({ resolution: 100 });
  delay.enable();
  const lag = (suffix: string, help: string, read: () => number) =>
    gauge(`nodejs_eventloop_lag_${suffix}seconds`, help, () => {
      const v = read() / 1e9;
      return Number.isFinite(v) ? v : 0;
    });
  lag('p50_', 'The 50th percentile of the recorded event loop delays.', () => delay.percentile(50));
  lag('p99_', 'The 99th percentile of the recorded event loop delays.', () => delay.percentile(99));
  lag('max_', 'The maximum recorded event loop delay.', () => delay.max);

  const gc = new Histogram<'kind'>({
    name: 'nodejs_gc_duration_seconds',
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'],
    buckets: [0.001, 0.01, 0.1, 1, 2, 5],
    registers,
  });
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = GC_KINDS[((e as { detail?: { kind?: number } }).detail)?.kind ?? -1];
      if (kind) gc.observe({ kind }, e.duration / 1000);
    }
  });
  observer.observe({ entryTypes: ['gc'] });

  return () => {
    delay.disable();
    observer.disconnect();
  };
}
