import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse, type StatsReport } from '../../contract/discovery.js';
import { REPORT_BUDGET } from '../../control-plane/discovery/discovery-server.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';
import { waitFor } from '../control-plane-harness.js';

/**
 * Nothing bounded how fast a stream sent StatsReports and HealthReports: each is CPU on the
 * control plane's event loop (edges folded one by one, entries checked against what the
 * proxy was sent), so a proxy, or anything holding a workload certificate, could keep it
 * busy for every other proxy. Each stream now has a budget per kind (REPORT_BUDGET); past
 * it reports are dropped unread, counted in wren_cp_discovery_reports_limited_total{kind}
 * and logged once per run, and the stream stays up. A real control plane and a raw
 * discovery stream on loopback.
 */
let dir: string;
let cp: ControlPlane;
const logs: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv29-budget-'));
  await writeFile(join(dir, 'web.yaml'), 'kind: MeshService\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ name: http, port: 80, protocol: http1 }]\n  endpoints: [{ address: 127.0.0.1, port: 8080 }]\n');
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(5),
    logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
    source: (ctx) => new DirSource({ ...ctx, dir }),
  });
  await cp.whenReady();
});

afterAll(async () => {
  await cp?.kill();
  await rm(dir, { recursive: true, force: true });
});

const counter = async (name: string, label: string): Promise<number> =>
  (await cp.metrics.registry.getSingleMetric(name)!.get()).values.filter((v) => !label || Object.values(v.labels).includes(label)).reduce((n, v) => n + v.value, 0);

const stats = (i: number): StatsReport => ({
  workload: 'web', workloadNamespace: 'shop', latencyBoundsMs: [], droppedEdges: 0, recentDenials: [], intervalMs: 10_000, uptimeMs: 1000 + i, recentRetries: [], droppedRetries: 0,
  edges: [{ direction: 'inbound', peerWorkload: 'a', peerNamespace: 'shop', peerIdentity: 'x', service: '', destinationWorkload: 'web', success: i, failure: 0, latencyBuckets: [0], latencySumMs: 0, tcpOpened: 0, tcpClosed: 0, mtls: false }],
});

test('a stream flooding reports gets its budget per kind; the rest are dropped, counted and logged once; the stream stays up', async () => {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
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
  // One line per kind for the run, not one per dropped report.
  const lines = logs.filter((l) => l.includes('faster than its budget'));
  expect(lines.map((l) => (JSON.parse(l) as { kind: string }).kind).sort()).toEqual(['health', 'stats']);
  // The stream is up and the proxy still heard from.
  expect(ended).toBe(false);
  expect(cp.discovery.subscriberCount).toBe(1);
  stream.cancel();
  client.close();
});
