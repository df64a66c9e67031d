import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { loadDiscoveryProto, MAX_REPORTED_ENDPOINTS, type DiscoveryRequest, type DiscoveryResponse, type Ejection } from '../contract/discovery.js';
import { ControlPlane } from '../control-plane/server.js';
import { waitFor, ManualSource, largeService } from './control-plane-harness.js';

/**
 * A HealthReport is checked entry by entry against the endpoints the reporter was sent
 * (health-reports.ts). That check scanned a port's endpoint list per entry: a report of
 * MAX_REPORTED_ENDPOINTS entries against a service of 20,000 endpoints was 2x10^8 comparisons,
 * about two seconds of the control plane's only thread per report, during which no proxy got a
 * push (health-based withdrawal included). Any stream may send reports back to back. A real
 * control plane and a raw discovery stream on loopback.
 */
const web = largeService(20_000);
const endpoints = web.ports[0].endpoints;

let cp: ControlPlane;
let client: grpc.Client | null = null;
const logs: string[] = [];

beforeAll(async () => {
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(5),
    logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }),
    source: (ctx) => new ManualSource(ctx, [web]),
  });
  await cp.whenReady();
});

afterAll(async () => {
  client?.close();
  await cp?.kill();
});

test('reports of the most entries kept, against a service of 20,000 endpoints, are each checked entry by entry: the endpoints it was sent are found, the others rejected', async () => {
  const { Client } = loadDiscoveryProto();
  client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  stream.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/client', namespace: 'shop', pod: 'client-0', labels: {} }, services: [], lastVersion: '' } });
  const r = await first;
  stream.write({ ack: { version: r.version, nonce: r.nonce } });
  await waitFor(() => cp.discovery.debugProxies()[0]?.ackedVersion === r.version, 'the snapshot ACKed');
  // Endpoints of the service's port it was never sent: each entry is checked against all 20,000.
  const unknown: Ejection[] = Array.from({ length: MAX_REPORTED_ENDPOINTS }, (_, i) => ({
    service: 'web.shop', servicePort: 80, address: `10.9.${i >> 8}.${i & 255}`, port: 8080, kind: 'connect-failure', reason: '', ejectedForMs: 0,
  }));
  // And one it was: found as before.
  const known: Ejection[] = [{ service: 'web.shop', servicePort: 80, address: endpoints[19_999].address, port: 8080, kind: 'connect-failure', reason: '', ejectedForMs: 0 }];
  const reports = 3;
  for (let i = 0; i < reports; i++) stream.write({ health: { ejected: [...unknown.slice(1), ...known] } });
  const rejections = () => logs.filter((l) => l.includes('health report names endpoints the proxy cannot observe'));
  await waitFor(() => rejections().length === reports, 'the reports handled', 20_000);
  for (const l of rejections()) expect((JSON.parse(l) as { rejected: number }).rejected).toBe(MAX_REPORTED_ENDPOINTS - 1);
  expect((cp.discovery.debugProxies()[0] as { ejections: Ejection[] }).ejections.map((e) => e.address)).toEqual([endpoints[19_999].address]);
  // What a report costs is counted, not timed, in control-plane/discovery/health-reports.test.ts
  // (speed is the benchmarks' to measure): scanning, each report here took about two seconds.
  stream.cancel();
});
