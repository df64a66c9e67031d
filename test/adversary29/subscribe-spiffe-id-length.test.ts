import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../../contract/discovery.js';
import { MAX_SPIFFE_ID_BYTES } from '../../control-plane/discovery/discovery-server.js';
import { ControlPlane } from '../../control-plane/server.js';
import { DirSource } from '../../control-plane/sources/dir-source.js';
import { waitFor } from '../control-plane-harness.js';

/**
 * A Subscribe's spiffe_id was only checked to start with spiffe://, so without client
 * authentication (plaintext) a stream could claim an identity of megabytes, which the control
 * plane then kept (/debug/proxies, the stats store's reporter) and wrote whole into a log
 * line per HealthReport and per NACK. The SPIFFE ID spec bounds an ID at 2048 bytes
 * (SPIFFE-ID §2.3, "Maximum SPIFFE ID Length"); a longer one is refused bad-spiffe-id, counted
 * and logged clipped. The claimed pod is clipped (not refused: a Subscribe of megabytes is
 * still served, control-plane-nack-detail.test.ts) in what a HealthReport logs and counts.
 */
let dir: string;
let cp: ControlPlane;
const logs: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-adv29-spiffe-'));
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

test('a Subscribe claiming a SPIFFE ID over 2048 bytes is refused, counted, and logged clipped', async () => {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  stream.on('error', () => undefined);
  // Either the stream ends, or it is served (a first response): no waiting out a timeout.
  const status = new Promise<{ code: grpc.status | 'served'; details: string }>((resolve) => {
    stream.on('status', resolve);
    stream.once('data', () => resolve({ code: 'served', details: 'a response' }));
  });
  const spiffeId = `spiffe://cluster.local/ns/shop/sa/${'x'.repeat(1_000_000)}`;
  stream.write({ subscribe: { identity: { spiffeId, namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } });
  stream.write({ health: { ejected: [] } });
  const st = await status;
  stream.cancel();
  client.close();
  expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(st.details).toContain(`at most ${MAX_SPIFFE_ID_BYTES} bytes`);
  expect(await cp.metrics.registry.getSingleMetricAsString('wren_cp_discovery_refused_total')).toContain('reason="bad-spiffe-id"} 1');
  for (const l of logs) expect(l.length).toBeLessThan(10_000);
  expect(cp.discovery.subscriberCount).toBe(0);
});

test('an ID of exactly 2048 bytes is taken', async () => {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  stream.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  const prefix = 'spiffe://cluster.local/ns/shop/sa/';
  stream.write({ subscribe: { identity: { spiffeId: prefix + 'x'.repeat(MAX_SPIFFE_ID_BYTES - prefix.length), namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } });
  expect((await first).full).toBe(true);
  stream.cancel();
  client.close();
});

test('a claimed pod of megabytes is clipped in what a HealthReport logs and in the reporter it counts as', async () => {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  stream.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  const pod = `web-${'0'.repeat(1_000_000)}`;
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  await first;
  const before = logs.length;
  stream.write({ health: { ejected: [{ service: 'web.shop', servicePort: 80, address: '127.0.0.1', port: 8080, kind: 'connect-failure', reason: 'refused', ejectedForMs: 1 }] } });
  await waitFor(() => logs.slice(before).some((l) => l.includes('health report')), 'the health report logged');
  for (const l of logs.slice(before)) expect(l.length).toBeLessThan(10_000);
  const [row] = cp.discovery.debugHealth();
  expect(row.reporters.map((r) => r.pod.length)).toEqual(['shop/'.length + 300]);
  stream.cancel();
  client.close();
});
