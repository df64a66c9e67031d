import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { loadDiscoveryProto, MAX_STATS_REPORT_BYTES, type StatsReport } from '../../contract/discovery.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';
import { StatsReporter } from '../../proxy/stats/stats-reporter.js';
import { subscriber } from '../helpers/subscriber.js';
import { waitFor } from '../control-plane-harness.js';

/**
 * A proxy may report up to discovery.statsReport.maxEdges = 10,000 edges, and label values are
 * Kubernetes names (up to 253 characters): such a StatsReport is several MiB, over the 4 MiB
 * a control plane takes in one message (grpc-js's default receive limit), and grpc-js then
 * ends the whole discovery stream RESOURCE_EXHAUSTED: the report is lost, the proxy
 * reconnects, gets a full snapshot, and loses the stream again at its next report. The
 * reporter now keeps a report within MAX_STATS_REPORT_BYTES (encoded), leaving out the
 * quietest edges, counted as droppedEdges and in wren_limit_exceeded_total{limit="stats-report-bytes"}.
 * A real control plane, the proxy's own DiscoveryClient and StatsReporter on loopback.
 */
const EDGES = 10_000;
const long = (c: string, n: number, i: number): string => `${c.repeat(n)}-${i}`;
const metricsText = (() => {
  const lines: string[] = [];
  for (let i = 0; i < EDGES; i++) {
    const labels = [
      'reporter="source"', `destination_workload="${long('w', 60, i)}"`, `destination_workload_namespace="${long('n', 60, i)}"`,
      `destination_principal="spiffe://cluster.local/ns/${long('n', 60, i)}/sa/${long('s', 200, i)}"`,
      `destination_service_name="${long('v', 60, i)}"`, `destination_service_namespace="${long('n', 60, i)}"`, 'response_code="200"',
    ].join(',');
    // The busiest first: edge i has EDGES - i requests.
    lines.push(`istio_requests_total{${labels}} ${EDGES - i}`);
  }
  return lines.join('\n');
})();

let dir: string;
let cp: ControlPlane;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv29-stats-'));
  await writeFile(join(dir, 'web.yaml'), 'kind: MeshService\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ name: http, port: 80, protocol: http1 }]\n  endpoints: [{ address: 127.0.0.1, port: 8080 }]\n');
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(5), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir }),
  });
  await cp.whenReady();
});

afterAll(async () => {
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

test('a report of 10,000 edges with long names reaches the control plane, trimmed to fit and counted; the stream stays up', async () => {
  const client = subscriber(cp, { namespace: 'shop', serviceAccount: 'web', pod: 'web-0' });
  try {
    await client.onFirstSnapshot();
    const sent: StatsReport[] = [];
    const trimmed: number[] = [];
    const reporter = new StatsReporter({
      clock: systemClock, logger: silentLogger, metricsText: async () => metricsText, recentDecisions: async () => ({ denials: [], retries: [], droppedRetries: 0 }),
      workload: { name: 'web', namespace: 'shop' }, startedAt: systemClock.now() - 1000, intervalMs: 10_000, maxEdges: EDGES,
      send: (r) => {
        sent.push(r);
        client.reportStats(r);
      },
      onDropped: () => undefined, onTrimmed: (n) => void trimmed.push(n),
    });
    await reporter.report();
    const [report] = sent;
    // Encoded as the stream writes it: within the bound, which is under what the control plane takes.
    expect(loadDiscoveryProto().encodeRequest({ stats: report }).length).toBeLessThanOrEqual(MAX_STATS_REPORT_BYTES);
    expect(report.edges.length).toBeGreaterThan(1000);
    expect(report.edges.length).toBeLessThan(EDGES);
    expect(report.droppedEdges).toBe(EDGES - report.edges.length);
    expect(trimmed).toEqual([EDGES - report.edges.length]);
    // The busiest kept.
    expect(report.edges[0].success).toBe(EDGES);
    await waitFor(() => cp.stats.reporterList().length === 1, 'the report ingested');
    expect(cp.stats.reporterList()[0]).toMatchObject({ pod: 'shop/web-0', droppedEdges: EDGES - report.edges.length });
    expect(client.stats.reconnects).toBe(0);
    expect(client.stats.lastError).toBe('');
  } finally {
    await client.stop();
  }
});
