import { Registry } from './prom.js';
import { registerProcessMetrics } from './process-metrics.js';
import { ProxyMetrics } from './proxy-metrics.js';

test('process metrics use the names of prom-client default metrics and report live values', async () => {
  const registry = new Registry();
  const stop = registerProcessMetrics(registry);
  try {
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += Math.sqrt(i); // some CPU time to report
    expect(x).toBeGreaterThan(0);
    const text = await registry.metrics();
    const value = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1]);
    expect(value('process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(value('process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(10 << 20);
    expect(value('process_open_fds')).toBeGreaterThan(2);
    expect(value('nodejs_heap_size_used_bytes')).toBeGreaterThan(1 << 20);
    expect(Math.abs(value('process_start_time_seconds') - Date.now() / 1000)).toBeLessThan(3600);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds [0-9.e+-]+$/m);
    expect(text).toMatch(/# TYPE nodejs_gc_duration_seconds histogram/);
  } finally {
    stop();
  }
});

test('the proxy registry has the request metrics and, on request, the process metrics', async () => {
  const plain = await new ProxyMetrics().registry.metrics();
  expect(plain).toMatch(/# TYPE istio_requests_total counter/);
  expect(plain).not.toMatch(/process_cpu_seconds_total/);
  const m = new ProxyMetrics({ defaultMetrics: true });
  expect(await m.registry.metrics()).toMatch(/process_cpu_seconds_total/);
  m.close();
});
