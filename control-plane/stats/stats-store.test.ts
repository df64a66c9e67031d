import { FakeClock } from '../../common/clock.js';
import type { EdgeStats, StatsReport } from '../../contract/discovery.js';
import { MAX_REPORTER_DETAIL_CHARS, StatsStore } from './stats-store.js';

const BOUNDS = [10, 100, 1000];
const web = { pod: 'web-0', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/web', workload: 'web' };
const client = { pod: 'client-0', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/client', workload: 'client' };

function edge(over: Partial<EdgeStats>): EdgeStats {
  return {
    direction: 'outbound', peerWorkload: 'web', peerNamespace: 'default', peerIdentity: web.identity, service: 'web.default', destinationWorkload: 'web',
    success: 0, failure: 0, latencyBuckets: [0, 0, 0, 0], latencySumMs: 0, tcpOpened: 0, tcpClosed: 0, mtls: true, ...over,
  };
}
const report = (workload: string, edges: EdgeStats[], over: Partial<StatsReport> = {}): StatsReport =>
  ({ workload, workloadNamespace: 'default', latencyBoundsMs: BOUNDS, edges, droppedEdges: 0, recentDenials: [], intervalMs: 5_000, ...over });

describe('StatsStore: windows over cumulative reports, on the injected clock', () => {
  test('rates, success rate and percentiles over 30 s and 1 min come from the increases between samples', () => {
    const clock = new FakeClock(0);
    const s = new StatsStore({ clock });
    s.ingest(client, report('client', [edge({ success: 100, latencyBuckets: [100, 0, 0, 0] })]));
    // 40 s later: +380 successes, +20 failures; latencies: +300 under 10 ms, +100 in (10,100].
    clock.advance(40_000);
    s.ingest(client, report('client', [edge({ success: 480, failure: 20, latencyBuckets: [400, 100, 0, 0] })]));
    const [row30] = s.stat('service', '30s');
    expect(row30).toMatchObject({ kind: 'service', name: 'web', namespace: 'default', reporters: 1, requestRate: 10, successRate: 0.95, mtlsShare: 1 });
    // 400 new observations: p50 at rank 200 of 300 in (0,10] -> 6.667; p95 at rank 380 -> 10 + 90 * 80/100.
    expect(row30.latencyMs!.p50).toBeCloseTo(6.667, 2);
    expect(row30.latencyMs!.p95).toBeCloseTo(82, 1);
    clock.advance(20_000);
    s.ingest(client, report('client', [edge({ success: 1080, failure: 20, latencyBuckets: [1000, 100, 0, 0] })]));
    // t=60 s: the newest sample at or before the window's start (30 s or 0 s) is t=0 for both windows: 1000 requests in 60 s.
    expect(s.stat('service', '1m')[0]).toMatchObject({ requestRate: 16.667, successRate: round4(980 / 1000) });
    expect(s.stat('service', '30s')[0]).toMatchObject({ requestRate: 16.667 });
    clock.advance(30_000);
    s.ingest(client, report('client', [edge({ success: 1380, failure: 20, latencyBuckets: [1300, 100, 0, 0] })]));
    // Now t=90 s: the newest sample at or before 60 s is t=60 s: 300 more in 30 s, all successful.
    expect(s.stat('service', '30s')[0]).toMatchObject({ requestRate: 10, successRate: 1 });
  });

  test('a series that stops reporting drops out once it misses two intervals and the window', () => {
    const clock = new FakeClock(0);
    const s = new StatsStore({ clock });
    s.ingest(client, report('client', [edge({ success: 0 })]));
    clock.advance(10_000);
    s.ingest(client, report('client', [edge({ success: 100 })]));
    expect(s.stat('service', '30s')[0].requestRate).toBe(10);
    clock.advance(31_000);
    expect(s.stat('service', '30s')).toEqual([]);
  });

  test('a counter going down is a restarted proxy: a new series, never a negative rate', () => {
    const clock = new FakeClock(0);
    const s = new StatsStore({ clock });
    s.ingest(client, report('client', [edge({ success: 1000 })]));
    clock.advance(5_000);
    s.ingest(client, report('client', [edge({ success: 10 })]));
    clock.advance(5_000);
    s.ingest(client, report('client', [edge({ success: 60 })]));
    expect(s.stat('service', '30s')[0].requestRate).toBe(10);
  });

  test('workload rows are the inbound view, summed over replicas; edges are the callers\' outbound view', () => {
    const clock = new FakeClock(0);
    const s = new StatsStore({ clock });
    const inbound = (n: number) => edge({ direction: 'inbound', peerWorkload: 'client', peerIdentity: client.identity, success: n, destinationWorkload: 'web' });
    const web1 = { ...web, pod: 'web-1' };
    s.ingest(web, report('web', [inbound(0)]));
    s.ingest(web1, report('web', [inbound(0)]));
    s.ingest(client, report('client', [edge({ tcpOpened: 2, mtls: false, service: 'cache.default', destinationWorkload: 'cache', latencyBuckets: [0, 0, 0, 0] })]));
    clock.advance(10_000);
    s.ingest(web, report('web', [inbound(50)]));
    s.ingest(web1, report('web', [inbound(150)]));
    s.ingest(client, report('client', [edge({ tcpOpened: 12, tcpClosed: 9, mtls: false, service: 'cache.default', destinationWorkload: 'cache' })]));
    const workloads = s.stat('workload', '1m');
    expect(workloads.map((r) => [r.name, r.reporters, r.requestRate])).toEqual([['client', 1, 0], ['web', 2, 20]]);
    expect(s.stat('namespace', '1m')).toMatchObject([{ name: 'default', reporters: 3, requestRate: 20 }]);
    const [e] = s.edges('1m');
    expect(e).toMatchObject({ from: { workload: 'client', namespace: 'default' }, to: { service: 'cache.default', workload: 'cache' }, tcp: { open: 3, openedRate: 1 }, mtlsShare: 0, successRate: null, latencyMs: null });
  });

  test('a namespace row keeps its HTTP latency when one of its workloads carried only opaque TCP (its proxy reports no bucket bounds)', () => {
    const clock = new FakeClock(0);
    const s = new StatsStore({ clock });
    const cache = { pod: 'cache-0', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/cache', workload: 'cache' };
    // The cache sidecar has served opaque TCP only: its metrics have no request histogram, so
    // its reports carry no bounds and one (+Inf) bucket per edge. It reports first.
    const tcpIn = (n: number) => edge({ direction: 'inbound', peerWorkload: 'client', peerIdentity: client.identity, service: 'cache.default', destinationWorkload: 'cache', tcpOpened: n, tcpClosed: n, latencyBuckets: [0] });
    const httpIn = (n: number) => edge({ direction: 'inbound', peerWorkload: 'client', peerIdentity: client.identity, success: n, latencyBuckets: [n, 0, 0, 0] });
    s.ingest(cache, report('cache', [tcpIn(0)], { latencyBoundsMs: [] }));
    s.ingest(web, report('web', [httpIn(0)]));
    clock.advance(10_000);
    s.ingest(cache, report('cache', [tcpIn(5)], { latencyBoundsMs: [] }));
    s.ingest(web, report('web', [httpIn(100)]));
    const webRow = s.stat('workload', '1m').find((r) => r.name === 'web')!;
    expect(webRow.latencyMs).not.toBeNull();
    const [ns] = s.stat('namespace', '1m');
    expect(ns).toMatchObject({ name: 'default', reporters: 2, requestRate: 10 });
    expect(ns.latencyMs).toEqual(webRow.latencyMs);
  });

  test('bounded: series past maxSeries and malformed edges are dropped and counted', () => {
    const clock = new FakeClock(0);
    const limits: [string, number][] = [];
    const s = new StatsStore({ clock, maxSeries: 2, onLimit: (l, n) => void limits.push([l, n]) });
    s.ingest(client, report('client', [
      edge({ service: 'a.default' }), edge({ service: 'b.default' }), edge({ service: 'c.default' }),
      edge({ latencyBuckets: [1] }), edge({ success: -1 }), { ...edge({}), direction: 'sideways' as 'inbound' },
    ]));
    expect(s.seriesCount).toBe(2);
    expect(limits).toEqual([['invalid-edges', 3], ['series', 1]]);
  });

  test('zero baseline: a young proxy\'s first report counts as the increase since its start', () => {
    const clock = new FakeClock(1_000_000);
    const s = new StatsStore({ clock });
    // Started 10 s ago (uptimeMs); 100 requests before its first report.
    s.ingest(client, report('client', [edge({ success: 90, failure: 10, latencyBuckets: [100, 0, 0, 0] })], { uptimeMs: 10_000 }));
    expect(s.stat('service', '30s')[0]).toMatchObject({ requestRate: 10, successRate: 0.9 });
    expect(s.stat('service', '1m')[0]).toMatchObject({ requestRate: 10 });
    expect(s.stat('service', '30s')[0].latencyMs).not.toBeNull();
    // Nothing more: 5 s later the window still holds the burst, now over 15 s.
    clock.advance(5_000);
    s.ingest(client, report('client', [edge({ success: 90, failure: 10, latencyBuckets: [100, 0, 0, 0] })], { uptimeMs: 15_000 }));
    expect(s.stat('service', '30s')[0].requestRate).toBe(6.667);
  });

  test('zero baseline: not for a proxy older than the longest window (a control-plane restart is no burst)', () => {
    const clock = new FakeClock(1_000_000);
    const s = new StatsStore({ clock });
    s.ingest(client, report('client', [edge({ success: 1_000_000 })], { uptimeMs: 3_600_000 }));
    expect(s.stat('service', '30s')[0].requestRate).toBe(0);
    s.ingest(web, report('web', [edge({ success: 600 })], { uptimeMs: 60_001 }));
    expect(s.stat('service', '1m')[0].requestRate).toBe(0);
    clock.advance(10_000);
    s.ingest(client, report('client', [edge({ success: 1_000_100 })], { uptimeMs: 3_610_000 }));
    expect(s.stat('service', '30s')[0].requestRate).toBe(10);
  });

  test('zero baseline: an edge new since the proxy\'s previous complete report counts from that report', () => {
    const clock = new FakeClock(1_000_000);
    const s = new StatsStore({ clock });
    const cache = (n: number) => edge({ service: 'cache.default', destinationWorkload: 'cache', success: n });
    // A long-lived proxy (uptime unknown): its first report is a plain baseline.
    s.ingest(client, report('client', [edge({ success: 500 })]));
    clock.advance(5_000);
    s.ingest(client, report('client', [edge({ success: 500 }), cache(50)]));
    expect(s.stat('service', '30s').map((r) => [r.name, r.requestRate])).toEqual([['cache', 10], ['web', 0]]);
    // Not after a report that left edges out (maxEdges): the new one may have had counts then.
    s.ingest(web, report('web', [edge({ service: 'a.default' })], { droppedEdges: 1 }));
    clock.advance(5_000);
    s.ingest(web, report('web', [edge({ service: 'a.default' }), edge({ service: 'b.default', success: 50 })], { droppedEdges: 1 }));
    expect(s.stat('service', '30s').find((r) => r.name === 'b')!.requestRate).toBe(0);
  });

  test('zero baseline: a restarted proxy counts from its new start', () => {
    const clock = new FakeClock(1_000_000);
    const s = new StatsStore({ clock });
    s.ingest(client, report('client', [edge({ success: 1000 })], { uptimeMs: 3_600_000 }));
    clock.advance(5_000);
    // Restarted 2 s ago: 20 requests since.
    s.ingest(client, report('client', [edge({ success: 20 })], { uptimeMs: 2_000 }));
    expect(s.stat('service', '30s')[0].requestRate).toBe(10);
  });

  test('recent denials are kept per reporter with the control plane\'s time, newest first', () => {
    const clock = new FakeClock(100_000);
    const s = new StatsStore({ clock });
    const d = { policy: 'default/web-allow', action: 'ALLOW', reason: 'no-allow-policy-matched', principal: client.identity, method: 'GET', path: '/x', port: 8080 };
    s.ingest(web, report('web', [], { recentDenials: [{ ...d, ageMs: 5000 }, { ...d, path: '/y', ageMs: 1000 }] }));
    expect(s.denials().map((x) => [x.at, x.path, x.reporter])).toEqual([[99_000, '/y', 'default/web-0'], [95_000, '/x', 'default/web-0']]);
  });

  test('denials keep the deciding rule; an older proxy\'s denial (no rule sent) has none, not rule 0', () => {
    const s = new StatsStore({ clock: new FakeClock(100_000) });
    const d = { policy: 'default/deny', action: 'DENY', reason: 'deny-policy default/deny', principal: '', method: 'GET', path: '/x', port: 8080, ageMs: 0 };
    s.ingest(web, report('web', [], { recentDenials: [{ ...d, rule: 2, effectivePolicyId: 'ns[default]-policy[deny]-rule[2]', policiesConsidered: [] }, { ...d, rule: 0 }] }));
    expect(s.denials().map((x) => [x.rule, x.effectivePolicyId])).toEqual([[2, 'ns[default]-policy[deny]-rule[2]'], [-1, '']]);
  });

  test('reported strings are kept printable: a terminal escape in a proxy\'s claim is stored escaped', () => {
    const s = new StatsStore({ clock: new FakeClock(100_000) });
    const d = { policy: 'default/deny', action: 'DENY', reason: 'r', principal: '', method: 'GET', path: '/x\x1b]0;pwned\x07', port: 8080, ageMs: 0 };
    s.ingest(web, report('web', [], { recentDenials: [d] }));
    expect(s.denials()[0].path).toBe('/x\\x1b]0;pwned\\x07');
  });

  test('a denial that closed an open tunnel says which kind; a request\'s, or an older proxy\'s, says none', () => {
    const s = new StatsStore({ clock: new FakeClock(100_000) });
    const d = { policy: 'default/deny', action: 'DENY', reason: 'deny-policy default/deny', principal: '', method: '', path: '', port: 7000, ageMs: 0 };
    s.ingest(web, report('web', [], { recentDenials: [{ ...d, closedTunnel: 'tcp' }, { ...d, closedTunnel: '' }, d] }));
    expect(s.denials().map((x) => x.closedTunnel)).toEqual(['tcp', '', '']);
  });

  test('recent retries are kept per reporter (the newest 50), checked field by field, with the drops reported', () => {
    const clock = new FakeClock(100_000);
    const s = new StatsStore({ clock });
    const r = { service: 'api.default', port: 80, route: '', method: 'GET', path: '/', attempts: 2, causes: [{ outcome: 'http-503', retryOn: '5xx' }], result: 'success', stopped: '' };
    const many = Array.from({ length: 60 }, (_, i) => ({ ...r, path: `/${i}`, ageMs: 60 - i }));
    s.ingest(web, report('web', [], { recentRetries: [...many, { ageMs: 'x', causes: 'nope', attempts: -3 } as never], droppedRetries: 4 }));
    const rows = s.retries();
    expect(rows).toHaveLength(50);
    expect(rows[0]).toMatchObject({ at: 100_000, reporter: 'default/web-0', service: '', causes: [], attempts: 0 });
    expect(rows[1]).toMatchObject({ at: 99_999, path: '/59', attempts: 2, causes: [{ outcome: 'http-503', retryOn: '5xx' }], result: 'success' });
    expect(s.droppedRetries()).toBe(4);
  });
});

function round4(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}

test('a reporter holds at most maxSeriesPerReporter series; pruned ones give their room back', () => {
  const clock = new FakeClock(0);
  const limits: [string, number][] = [];
  const store = new StatsStore({ clock, maxSeries: 100, maxSeriesPerReporter: 3, onLimit: (l, n) => void limits.push([l, n]) });
  const who = { pod: 'a-0', namespace: 'ns', identity: 'spiffe://cluster.local/ns/ns/sa/a', workload: 'a' };
  const e = (service: string) => ({
    direction: 'outbound' as const, peerWorkload: 'b', peerNamespace: 'ns', peerIdentity: '', service, destinationWorkload: 'b',
    success: 1, failure: 0, latencyBuckets: [1, 0], latencySumMs: 1, tcpOpened: 0, tcpClosed: 0, mtls: true,
  });
  const rep = (services: string[]) => ({ workload: 'a', workloadNamespace: 'ns', latencyBoundsMs: [10], edges: services.map(e), droppedEdges: 0, recentDenials: [], intervalMs: 5_000 });
  store.ingest(who, rep(['s1', 's2', 's3', 's4', 's5']));
  expect(store.seriesCount).toBe(3);
  expect(limits).toEqual([['series-per-proxy', 2]]);
  // Another reporter still gets its own.
  store.ingest({ ...who, pod: 'c-0' }, rep(['s1']));
  expect(store.seriesCount).toBe(4);
  // After five minutes without reports everything is forgotten, and a's budget is whole again.
  clock.advance(6 * 60_000);
  store.ingest(who, rep(['t1', 't2', 't3']));
  expect(store.seriesCount).toBe(3);
});

describe('StatsStore: what one reporter, or many, can make it keep (adv29)', () => {
  test('at most maxReporters reporters: a report from one more is dropped and counted; a known one still reports', () => {
    const clock = new FakeClock(0);
    const limits: [string, number][] = [];
    const s = new StatsStore({ clock, maxReporters: 3, onLimit: (l, n) => void limits.push([l, n]) });
    for (let i = 0; i < 5; i++) s.ingest({ ...web, pod: `pod-${i}` }, report('web', []));
    expect(s.reporterList().map((r) => r.pod)).toEqual(['default/pod-0', 'default/pod-1', 'default/pod-2']);
    expect(limits).toEqual([['reporters', 1], ['reporters', 1]]);
    clock.advance(1000);
    s.ingest({ ...web, pod: 'pod-1' }, report('web', []));
    expect(s.reporterList().find((r) => r.pod === 'default/pod-1')!.lastReportAt).toBe(1000);
    // Forgotten after five minutes: room again.
    clock.advance(5 * 60_000 + 1);
    s.ingest({ ...web, pod: 'pod-9' }, report('web', []));
    expect(s.reporterList().map((r) => r.pod)).toEqual(['default/pod-9']);
  });

  test('the default bound is 10,000 reporters', () => {
    const s = new StatsStore({ clock: new FakeClock(0) });
    for (let i = 0; i < 10_100; i++) s.ingest({ ...web, pod: `pod-${i}` }, report('web', []));
    expect(s.reporterList()).toHaveLength(10_000);
  });

  test('a reporter\'s denials and retries are kept within MAX_REPORTER_DETAIL_CHARS, the newest first, the rest counted', () => {
    const limits: [string, number][] = [];
    const s = new StatsStore({ clock: new FakeClock(0), onLimit: (l, n) => void limits.push([l, n]) });
    const big = 'p'.repeat(300);
    const denial = (i: number) => ({ ageMs: 20 - i, policy: `d${i}`, action: 'DENY', reason: 'r', principal: big, method: 'GET', path: big, port: 80, rule: 0, effectivePolicyId: 'x', policiesConsidered: Array.from({ length: 50 }, () => big), closedTunnel: '' });
    const retry = (i: number) => ({ ageMs: 50 - i, service: `s${i}`, port: 80, route: big, method: 'GET', path: big, attempts: 20, causes: Array.from({ length: 20 }, () => ({ outcome: big, retryOn: big })), result: big, stopped: big });
    s.ingest(web, report('web', [], { recentDenials: Array.from({ length: 20 }, (_, i) => denial(i)), recentRetries: Array.from({ length: 50 }, (_, i) => retry(i)) }));
    expect(JSON.stringify(s.denials()).length).toBeLessThanOrEqual(MAX_REPORTER_DETAIL_CHARS / 2 + 2);
    expect(JSON.stringify(s.retries()).length).toBeLessThanOrEqual(MAX_REPORTER_DETAIL_CHARS / 2 + 2);
    // The newest kept (denials and retries are newest first).
    expect(s.denials()[0].policy).toBe('d19');
    expect(s.retries()[0].service).toBe('s49');
    const [[limit, n]] = limits;
    expect(limit).toBe('reporter-detail');
    expect(n).toBe(20 - s.denials().length + 50 - s.retries().length);
    // An honest report's are kept whole.
    limits.length = 0;
    s.ingest(client, report('client', [], { recentDenials: [{ ...denial(0), principal: 'spiffe://cluster.local/ns/default/sa/x', path: '/a', policiesConsidered: ['ns[default]-policy[allow-web]'] }] }));
    expect(limits).toEqual([]);
  });
});
