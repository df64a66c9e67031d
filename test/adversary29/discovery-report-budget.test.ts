import { type DiscoveryResponse, type StatsReport } from '../../contract/discovery.js';
import { REPORT_BUDGET } from '../../control-plane/discovery/discovery-server.js';
import { ControlPlane } from '../../control-plane/server.js';
import { waitFor } from '../control-plane-harness.js';
import { shopWebControlPlane, discoveryStream } from '../helpers/discovery-stream.js';
import type { DirControlPlane } from '../helpers/dir-control-plane.js';

/**
 * Nothing bounded how fast a stream sent StatsReports and HealthReports: each is CPU on the
 * control plane's event loop (edges folded one by one, entries checked against what the
 * proxy was sent), so a proxy, or anything holding a workload certificate, could keep it
 * busy for every other proxy. Each stream now has a budget per kind (REPORT_BUDGET); past
 * it reports are dropped unread, counted in wren_cp_discovery_reports_limited_total{kind}
 * and logged once per run, and the stream stays up. A real control plane and a raw
 * discovery stream on loopback.
 */
let cp: ControlPlane;
const logs: string[] = [];
let mesh: DirControlPlane | undefined;

beforeAll(async () => {
  mesh = await shopWebControlPlane('wren-adv29-budget-', logs);
  ({ cp } = mesh);
});

afterAll(async () => {
  await mesh?.kill();
});

const counter = async (name: string, label: string): Promise<number> =>
  (await cp.metrics.registry.getSingleMetric(name)!.get()).values.filter((v) => !label || Object.values(v.labels).includes(label)).reduce((n, v) => n + v.value, 0);

const stats = (i: number): StatsReport => ({
  workload: 'web', workloadNamespace: 'shop', latencyBoundsMs: [], droppedEdges: 0, recentDenials: [], intervalMs: 10_000, uptimeMs: 1000 + i, recentRetries: [], droppedRetries: 0,
  edges: [{ direction: 'inbound', peerWorkload: 'a', peerNamespace: 'shop', peerIdentity: 'x', service: '', destinationWorkload: 'web', success: i, failure: 0, latencyBuckets: [0], latencySumMs: 0, tcpOpened: 0, tcpClosed: 0, mtls: false }],
});

test('a stream flooding reports gets its budget per kind; the rest are dropped, counted and logged once; the stream stays up', async () => {
  const { client, stream } = discoveryStream(cp.grpcPort);
  let ended = false;
  stream.on('status', () => void (ended = true));
  stream.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  stream.on('data', () => undefined);
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } });
  const r = await first;
  stream.write({ ack: { version: r.version, nonce: r.nonce } });
  const N = 200;
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    stream.write({ stats: stats(i) });
    stream.write({ health: { ejected: [] } });
  }
  await waitFor(async () => (await counter('wren_cp_stats_reports_total', '')) + (await counter('wren_cp_discovery_reports_limited_total', 'stats')) === N, 'every stats report read');
  await waitFor(async () => (await counter('wren_cp_health_reports_total', '')) + (await counter('wren_cp_discovery_reports_limited_total', 'health')) === N, 'every health report read');
  const allowed = REPORT_BUDGET.burst + Math.ceil(((Date.now() - t0) / 1000) * REPORT_BUDGET.perSecond);
  const taken = await counter('wren_cp_stats_reports_total', '');
  expect(taken).toBeGreaterThanOrEqual(REPORT_BUDGET.burst);
  expect(taken).toBeLessThanOrEqual(allowed);
  expect(await counter('wren_cp_health_reports_total', '')).toBeLessThanOrEqual(allowed);
  expect(await counter('wren_cp_discovery_reports_limited_total', 'health')).toBeGreaterThanOrEqual(N - allowed);
  // One line per run of dropped reports, not one per dropped report. A run ends when a
  // report is taken again (the budget refilled), so on a slow machine the flood may be
  // several runs: at most one per report taken past the burst, and far fewer than dropped.
  const kinds = logs.filter((l) => l.includes('faster than its budget')).map((l) => (JSON.parse(l) as { kind: string }).kind);
  const healthTaken = await counter('wren_cp_health_reports_total', '');
  for (const [kind, took] of [['stats', taken], ['health', healthTaken]] as const) {
    const runs = kinds.filter((k) => k === kind).length;
    expect(runs).toBeGreaterThanOrEqual(1);
    expect(runs).toBeLessThanOrEqual(1 + took - REPORT_BUDGET.burst);
  }
  expect(kinds.every((k) => k === 'stats' || k === 'health')).toBe(true);
  // The stream is up and the proxy still heard from.
  expect(ended).toBe(false);
  expect(cp.discovery.subscriberCount).toBe(1);
  stream.cancel();
  client.close();
});
