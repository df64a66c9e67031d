import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DiscoveryResponse, StatsReport } from '../contract/discovery.js';
import { parseControlPlaneArgs, startControlPlane } from '../control-plane/main.js';
import { createLogger } from '../common/logger.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { ControlPlane } from '../control-plane/server.js';
import { waitFor } from './control-plane-harness.js';
import { discoveryStream, shopWebYaml } from './helpers/discovery-stream.js';

/**
 * The report budget per discovery stream (REPORT_BUDGET) and the stats store's bounds could be
 * set only by building a DiscoveryServer or StatsStore by hand: ControlPlane.start and
 * `wren control-plane` took none of them (adv41). The flags (--report-burst, --report-rate,
 * --stats-max-series, --stats-max-series-per-proxy, --stats-max-reporters) now reach the
 * running control plane: each is shown enforced here, over real discovery streams on loopback,
 * not only parsed.
 */
let dir: string;
let cp: ControlPlane | null = null;
const clients: { close(): void }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-report-limit-flags-'));
  await mkdir(join(dir, 'mesh'));
  await writeFile(join(dir, 'mesh', 'web.yaml'), shopWebYaml(8080));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

const counter = async (name: string, label = ''): Promise<number> =>
  (await cp!.metrics.registry.getSingleMetric(name)!.get()).values.filter((v) => !label || Object.values(v.labels).includes(label)).reduce((n, v) => n + v.value, 0);

const stats = (i: number, peers: string[]): StatsReport => ({
  workload: 'web', workloadNamespace: 'shop', latencyBoundsMs: [], droppedEdges: 0, recentDenials: [], intervalMs: 10_000, uptimeMs: 1000 + i, recentRetries: [], droppedRetries: 0,
  edges: peers.map((p) => ({ direction: 'inbound', peerWorkload: p, peerNamespace: 'shop', peerIdentity: 'x', service: '', destinationWorkload: 'web', success: i, failure: 0, latencyBuckets: [0], latencySumMs: 0, tcpOpened: 0, tcpClosed: 0, mtls: false })),
});

/** A discovery stream claiming `pod` (plaintext: taken at its word), subscribed and acknowledged. */
async function stream(pod: string) {
  const { client, stream: s } = discoveryStream(cp!.grpcPort);
  clients.push(client);
  s.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => s.once('data', resolve));
  s.on('data', () => undefined);
  s.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  const r = await first;
  s.write({ ack: { version: r.version, nonce: r.nonce } });
  return s;
}

test('--report-burst, --report-rate and --stats-max-* reach the running control plane, each enforced', async () => {
  cp = await startControlPlane(
    parseControlPlaneArgs([
      '--source', `dir:${join(dir, 'mesh')}`, '--listen', '127.0.0.1:0', '--admin', 'off', '--insecure',
      // A refill of one report per 1000 s: nothing comes back while the test runs.
      '--report-burst', '2', '--report-rate', '0.001',
      '--stats-max-series', '2', '--stats-max-series-per-proxy', '1', '--stats-max-reporters', '3',
    ], {}),
    createLogger({ level: 'error', sink: () => undefined }),
  );
  // --report-burst / --report-rate: 2 of a flood of 20 taken (the default: 10 and more).
  const a = await stream('web-0');
  for (let i = 0; i < 20; i++) a.write({ stats: stats(i, i === 0 ? ['a', 'b'] : ['a']) });
  await waitFor(async () => (await counter('wren_cp_stats_reports_total')) + (await counter('wren_cp_discovery_reports_limited_total', 'stats')) === 20, 'every stats report read');
  expect(await counter('wren_cp_stats_reports_total')).toBe(2);
  // --stats-max-series-per-proxy 1: the first report's second edge is not kept (the default: 2,000).
  expect(await counter('wren_cp_stats_dropped_total', 'series-per-proxy')).toBe(1);
  expect(await counter('wren_cp_stats_series')).toBe(1);
  // --stats-max-series 2: a second proxy's edge is the second series, a third's is over (the default: 20,000).
  (await stream('web-1')).write({ stats: stats(1, ['a']) });
  await waitFor(async () => (await counter('wren_cp_stats_series')) === 2, 'the second series');
  (await stream('web-2')).write({ stats: stats(1, ['a']) });
  await waitFor(async () => (await counter('wren_cp_stats_dropped_total', 'series')) === 1, 'the third series dropped');
  // --stats-max-reporters 3: web-0, web-1 and web-2 are kept (the last without a series); a fourth proxy's report is dropped whole.
  (await stream('web-3')).write({ stats: stats(1, ['a']) });
  await waitFor(async () => (await counter('wren_cp_stats_dropped_total', 'reporters')) === 1, 'the fourth reporter dropped');
  expect(await counter('wren_cp_stats_reports_total')).toBe(4);
});

test.each([
  [{ reportBudget: { burst: 0 } }, /^reportBudget\.burst: expected a number in 1\.\.10000, got 0$/],
  [{ reportBudget: { perSecond: Number.NaN } }, /^reportBudget\.perSecond: expected a number/],
  [{ statsLimits: { maxReporters: 1.5 } }, /^statsLimits\.maxReporters: expected an integer/],
  [{ statsLimits: { maxSeries: -1 } }, /^statsLimits\.maxSeries: expected a number in 1\.\.10000000, got -1$/],
  [{ statsLimits: { maxReportres: 3 } as object }, /^statsLimits\.maxReportres: unknown field/],
])('embedded: %j is refused at start, the error naming the field', async (opts, msg) => {
  const start = ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(1), logger: createLogger({ level: 'error', sink: () => undefined }),
    source: (ctx) => new DirSource({ ...ctx, dir: join(dir, 'mesh') }),
    ...opts,
  });
  await expect(start).rejects.toThrow(msg);
});
