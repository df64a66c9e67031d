import { FakeClock } from '../../common/clock.js';
import { createLogger, silentLogger } from '../../common/logger.js';
import { loadDiscoveryProto, type StatsReport } from '../../contract/discovery.js';
import { StatsReporter } from './stats-reporter.js';
import type { RecentDecisions } from './recent-decisions.js';

const TEXT = [
  'istio_requests_total{reporter="source",destination_workload="a",destination_service_name="a",destination_service_namespace="ns",response_code="200"} 5',
  'istio_requests_total{reporter="source",destination_workload="b",destination_service_name="b",destination_service_namespace="ns",response_code="200"} 3',
].join('\n');

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('StatsReporter', () => {
  function setup(intervalMs: number, maxEdges = 10, decisions: RecentDecisions = { denials: [], retries: [], droppedRetries: 0 }) {
    const clock = new FakeClock(0);
    const sent: StatsReport[] = [];
    const dropped: number[] = [];
    const r = new StatsReporter({
      clock, logger: silentLogger, metricsText: async () => TEXT, recentDecisions: async () => decisions, workload: { name: 'web', namespace: 'ns' }, startedAt: -2_000,
      send: (x) => void sent.push(x), intervalMs, maxEdges, onDropped: (n) => void dropped.push(n),
    });
    return { clock, sent, dropped, r };
  }

  test('reports every intervalMs on the injected clock, and not before', async () => {
    const { clock, sent, r } = setup(5_000);
    r.start();
    clock.advance(4_999);
    await settle();
    expect(sent).toHaveLength(0);
    clock.advance(1);
    await settle();
    expect(sent).toHaveLength(1);
    // uptimeMs: the proxy started 2 s before the reporter's clock read 0.
    expect(sent[0]).toMatchObject({ workload: 'web', workloadNamespace: 'ns', intervalMs: 5_000, droppedEdges: 0, uptimeMs: 7_000 });
    expect(sent[0].edges.map((e) => [e.peerWorkload, e.success])).toEqual([['a', 5], ['b', 3]]);
    clock.advance(5_000);
    await settle();
    expect(sent).toHaveLength(2);
    expect(sent[1].uptimeMs).toBe(12_000);
    r.close();
    clock.advance(20_000);
    await settle();
    expect(sent).toHaveLength(2);
  });

  test('intervalMs 0 never reports', async () => {
    const { clock, sent, r } = setup(0);
    r.start();
    clock.advance(600_000);
    await settle();
    expect(sent).toHaveLength(0);
  });

  test('a report over maxBytes encoded leaves out its quietest edges, counted, and says so once per run (adv29)', async () => {
    const sent: StatsReport[] = [];
    const trimmed: number[] = [];
    const logs: string[] = [];
    const reporter = (maxBytes: number) => new StatsReporter({
      clock: new FakeClock(0), logger: createLogger({ sink: (l) => void logs.push(l) }), metricsText: async () => TEXT,
      recentDecisions: async () => ({ denials: [], retries: [], droppedRetries: 0 }), workload: { name: 'web', namespace: 'ns' }, startedAt: 0,
      send: (x) => void sent.push(x), intervalMs: 1_000, maxEdges: 10, onDropped: () => undefined, onTrimmed: (n) => void trimmed.push(n), maxBytes,
    });
    // Nothing fits: the report goes out without edges, all of them counted.
    await reporter(0).report();
    expect([sent[0].edges, sent[0].droppedEdges, trimmed]).toEqual([[], 2, [2]]);
    const envelope = loadDiscoveryProto().encodeRequest({ stats: sent[0] }).length;
    sent.length = 0;
    trimmed.length = 0;
    logs.length = 0;
    // Room for the envelope and one edge (about 50 bytes), not two: the busiest is kept.
    const one = reporter(envelope + 80);
    await one.report();
    await one.report();
    expect(sent.map((x) => [x.edges.map((e) => e.peerWorkload), x.droppedEdges])).toEqual([[['a'], 1], [['a'], 1]]);
    expect(trimmed).toEqual([1, 1]);
    expect(logs.filter((l) => l.includes('stats report trimmed'))).toHaveLength(1);
    for (const x of sent) expect(loadDiscoveryProto().encodeRequest({ stats: x }).length).toBeLessThanOrEqual(envelope + 80);
  });

  test('edges over maxEdges are left out, said in the report and counted', async () => {
    const { sent, dropped, r } = setup(1_000, 1);
    await r.report();
    expect(sent[0].edges.map((e) => e.peerWorkload)).toEqual(['a']);
    expect(sent[0].droppedEdges).toBe(1);
    expect(dropped).toEqual([1]);
  });

  test('the report carries the recent denials (with their rule) and retries, and the retries dropped', async () => {
    const denial = { ageMs: 10, policy: 'ns/allow-a', action: 'DENY', reason: 'deny-policy ns/deny', principal: '', method: 'GET', path: '/', port: 80, rule: 1, effectivePolicyId: 'ns[ns]-policy[deny]-rule[1]', policiesConsidered: [] };
    const retried = { ageMs: 5, service: 'a.ns', port: 80, route: '', method: 'GET', path: '/', attempts: 2, causes: [{ outcome: 'http-503', retryOn: '5xx' }], result: 'success', stopped: '' };
    const { sent, r } = setup(1_000, 10, { denials: [denial], retries: [retried], droppedRetries: 3 });
    await r.report();
    expect(sent[0]).toMatchObject({ recentDenials: [denial], recentRetries: [retried], droppedRetries: 3 });
  });
});
