import { jest } from '@jest/globals';
import { ProxyMetrics } from './proxy-metrics.js';
import { WorkloadLabels } from './workload-labels.js';
import { Counter, Histogram, Registry } from './prom.js';
import { RequestSeries } from './request-series.js';

const SELF = 'spiffe://cluster.local/ns/shop/sa/web';
const local = () => new WorkloadLabels({ name: 'web-v1', namespace: 'shop', app: 'web', version: 'v1' }, () => SELF);
const NAMES = ['istio_requests_total', 'istio_request_duration_milliseconds', 'istio_request_bytes', 'istio_response_bytes'];

async function text(m: ProxyMetrics): Promise<string> {
  return (await Promise.all(NAMES.map((n) => m.registry.getSingleMetricAsString(n)))).join('\n');
}

/** Durations and sizes on, under, between and above every bucket bound (0.5 ms .. 3600000 ms, 1 B .. 10 MB), and 0. */
const VALUES: [number, number, number][] = [
  [0, 0, 0], [0.5, 1, 10], [0.7, 100, 99], [4.99, 101, 1000], [61_000, 10_000_000, 10_000_001], [7_200_000, 5, 123_456], [12.25, 0, 100],
];

test('a series adds to prom-client\'s own cells: the exposition is the same as prom-client\'s inc/observe give, for every bucket edge', async () => {
  const fast = new ProxyMetrics({ local: local() });
  const plain = new ProxyMetrics({ local: local() });
  for (const [code, flags] of [['200', '-'], ['503', 'UF']]) {
    const series = fast.local.forOutbound(undefined, undefined).series('http', code, '', flags);
    const labels = plain.local.forOutbound(undefined, undefined).labels('http', code, '', flags);
    for (const [ms, req, res] of VALUES) {
      series.record(fast, ms, req, res);
      plain.requests.inc(labels);
      plain.duration.observe(labels, ms);
      plain.requestBytes.observe(labels, req);
      plain.responseBytes.observe(labels, res);
    }
  }
  expect(await text(fast)).toBe(await text(plain));
  expect(await text(fast)).toContain('istio_requests_total{reporter="source"');
});

test('bucket counts held back between reads are all added at each read: several series, reads between records, the same exposition as prom-client\'s', async () => {
  const fast = new ProxyMetrics({ local: local() });
  const plain = new ProxyMetrics({ local: local() });
  for (let round = 0; round < 3; round++) {
    for (const [code, flags] of [['200', '-'], ['503', 'UF'], ['404', 'NR']]) {
      const series = fast.local.forOutbound(undefined, undefined).series('http', code, '', flags);
      const labels = plain.local.forOutbound(undefined, undefined).labels('http', code, '', flags);
      for (const [ms, req, res] of VALUES.slice(round)) {
        series.record(fast, ms, req, res);
        plain.requests.inc(labels);
        plain.duration.observe(labels, ms);
        plain.requestBytes.observe(labels, req);
        plain.responseBytes.observe(labels, res);
      }
    }
    // A read of one histogram adds every series' counts; the others are still right when read later.
    expect(await fast.registry.getSingleMetricAsString('istio_response_bytes')).toBe(await plain.registry.getSingleMetricAsString('istio_response_bytes'));
    expect(await text(fast)).toBe(await text(plain));
  }
});

test('a histogram without the flush hook gets each bucket count at once', () => {
  const registers = [new Registry()];
  const h = (name: string) => new Histogram({ name, help: 'no collect', labelNames: ['l'], buckets: [1, 10], registers });
  const set = { requests: new Counter({ name: 'n', help: 'n', labelNames: ['l'], registers }), duration: h('d'), requestBytes: h('q'), responseBytes: h('r') };
  const series = new RequestSeries({ l: 'x' });
  series.record(set, 5, 1, 1);
  series.record(set, 5, 1, 1);
  expect(series.fast(set)).toBe(true);
  const cells = (set.duration as unknown as { hashMap: Record<string, { bucketValues: Record<string, number> }> }).hashMap;
  expect(Object.values(cells)[0].bucketValues['10']).toBe(2);
});

test('after the first record, a request costs no prom-client call (no label hashing per request)', () => {
  const m = new ProxyMetrics({ local: local() });
  const series = m.local.forOutbound(undefined, undefined).series('grpc', '200', '0', '-');
  const inc = jest.spyOn(m.requests, 'inc');
  const observe = jest.spyOn(m.duration, 'observe');
  series.record(m, 3, 10, 20);
  expect(inc).toHaveBeenCalledTimes(1);
  expect(series.fast(m)).toBe(true);
  for (let i = 0; i < 100; i++) series.record(m, 3, 10, 20);
  expect(inc).toHaveBeenCalledTimes(1);
  expect(observe).toHaveBeenCalledTimes(1);
});

test('a reset registry, or another proxy\'s metrics, get the record through prom-client again: nothing counted into a stale cell', async () => {
  const a = new ProxyMetrics({ local: local() });
  const b = new ProxyMetrics({ local: a.local });
  const series = a.local.forOutbound(undefined, undefined).series('http', '200', '', '-');
  series.record(a, 1, 1, 1);
  series.record(a, 1, 1, 1);
  a.registry.resetMetrics();
  series.record(a, 1, 1, 1);
  series.record(b, 1, 1, 1);
  series.record(b, 1, 1, 1);
  series.record(a, 1, 1, 1);
  expect(await a.registry.getSingleMetricAsString('istio_requests_total')).toMatch(/\} 2$/m);
  expect(await b.registry.getSingleMetricAsString('istio_requests_total')).toMatch(/\} 2$/m);
});

test('a value prom-client refuses still throws as prom-client does', () => {
  const m = new ProxyMetrics({ local: local() });
  const series = m.local.forOutbound(undefined, undefined).series('http', '200', '', '-');
  series.record(m, 1, 1, 1);
  expect(() => series.record(m, NaN, 1, 1)).toThrow(/not a valid number/);
});

test('wren_active_streams shows the requests in flight per direction once a direction has seen one', async () => {
  const m = new ProxyMetrics({ local: local() });
  expect(await m.registry.getSingleMetricAsString('wren_active_streams')).not.toContain('direction=');
  m.inFlight.inbound = 3;
  m.inFlight.outbound = 0;
  const out = await m.registry.getSingleMetricAsString('wren_active_streams');
  expect(out).toContain('wren_active_streams{direction="inbound"} 3');
  expect(out).toContain('wren_active_streams{direction="outbound"} 0');
});

test('a label set hands back the series of exactly the values asked for, whichever of the four changes, and the same series for the same values', () => {
  const set = local().forOutbound(undefined, undefined);
  const asked: [('http' | 'grpc'), string, string, string][] = [
    ['http', '200', '', '-'], ['http', '200', '', '-'], ['http', '503', '', '-'], ['http', '503', '', 'UF'],
    ['grpc', '503', '', 'UF'], ['grpc', '200', '14', 'UF'], ['http', '200', '', '-'], ['grpc', '200', '14', 'UF'],
  ];
  const seen = new Map<string, RequestSeries>();
  for (const [protocol, code, grpc, flags] of asked) {
    // A new string each time, as String(status) gives per request: equal values, not the same string.
    const s = set.series(protocol, String(Number(code)), grpc, flags);
    expect(s.labels).toMatchObject({ request_protocol: protocol, response_code: code, grpc_response_status: grpc, response_flags: flags });
    const key = `${protocol} ${code} ${grpc} ${flags}`;
    if (seen.has(key)) expect(s).toBe(seen.get(key));
    else seen.set(key, s);
  }
  expect(new Set(seen.values()).size).toBe(5);
});
