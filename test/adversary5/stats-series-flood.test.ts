import { FakeClock } from '../../common/clock.js';
import type { EdgeStats, StatsReport } from '../../contract/discovery.js';
import { MAX_EDGES_PER_REPORT, StatsStore } from '../../control-plane/stats/stats-store.js';

/**
 * ADV5-12: one proxy fills the control plane's whole stats budget, and `wren stat` and the
 * dashboard stop showing any new traffic of the mesh for the next five minutes.
 *
 * control-plane/stats/stats-store.ts keeps at most `maxSeries` (20,000) series for all the
 * mesh, takes up to MAX_EDGES_PER_REPORT (10,000) edges from each report, and drops a series
 * only after five minutes without a report. The edges are the reporter's own claims.
 *
 * What an attacker in one meshed pod does: sends two StatsReports of 10,000 made-up edges each
 * (and again every few minutes). What happens: the store is full; every new series of every
 * other proxy is dropped (counted as `series`): a new deployment's traffic, a new caller of a
 * service, a pod that just restarted do not show in `wren stat` or on the dashboard, and
 * nothing tells the operator why those rows are missing. What should happen: one reporter
 * cannot take the whole budget (a per-reporter share, as the proxy itself caps its edges at
 * 200 by default), so an honest proxy's first report still shows.
 */
const BOUNDS = [10, 100, 1000];
const edge = (over: Partial<EdgeStats>): EdgeStats => ({
  direction: 'outbound', peerWorkload: 'web', peerNamespace: 'default', peerIdentity: 'spiffe://cluster.local/ns/default/sa/web', service: 'web.default', destinationWorkload: 'web',
  success: 0, failure: 0, latencyBuckets: [0, 0, 0, 0], latencySumMs: 0, tcpOpened: 0, tcpClosed: 0, mtls: true, ...over,
});
const report = (workload: string, edges: EdgeStats[]): StatsReport =>
  ({ workload, workloadNamespace: 'default', latencyBoundsMs: BOUNDS, edges, droppedEdges: 0, recentDenials: [], intervalMs: 5_000 });

test('ADV5-12: one reporter cannot take every stats series of the mesh', () => {
  // ADVERSARY: ADV5-12
  const clock = new FakeClock(0);
  const store = new StatsStore({ clock });
  const attacker = { pod: 'rogue-0', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/rogue', workload: 'rogue' };
  for (let r = 0; r < 2; r++) {
    store.ingest(attacker, report('rogue', Array.from({ length: MAX_EDGES_PER_REPORT }, (_, i) => edge({ service: `fake-${r}-${i}.default`, success: 1 }))));
    clock.advance(1_000);
  }
  // An honest proxy's traffic to `checkout`, two reports 10 s apart (a rate needs two samples).
  const honest = { pod: 'shop-0', namespace: 'default', identity: 'spiffe://cluster.local/ns/default/sa/shop', workload: 'shop' };
  store.ingest(honest, report('shop', [edge({ service: 'checkout.default', success: 100, latencyBuckets: [100, 0, 0, 0] })]));
  clock.advance(10_000);
  store.ingest(honest, report('shop', [edge({ service: 'checkout.default', success: 200, latencyBuckets: [200, 0, 0, 0] })]));
  // On main: no row for checkout (its series was dropped: the store is full of the rogue's).
  expect(store.stat('service', '30s').find((r) => r.name === 'checkout')).toMatchObject({ name: 'checkout', requestRate: 10 });
});
