import * as grpc from '@grpc/grpc-js';
import { type DiscoveryResponse } from '../../contract/discovery.js';
import { MAX_SPIFFE_ID_BYTES } from '../../control-plane/discovery/discovery-server.js';
import { ControlPlane } from '../../control-plane/server.js';
import { waitFor } from '../control-plane-harness.js';
import { shopWebControlPlane, discoveryStream } from '../helpers/discovery-stream.js';
import type { DirControlPlane } from '../helpers/dir-control-plane.js';

/**
 * A Subscribe's spiffe_id was only checked to start with spiffe://, so without client
 * authentication (plaintext) a stream could claim an identity of megabytes, which the control
 * plane then kept (/debug/proxies, the stats store's reporter) and wrote whole into a log
 * line per HealthReport and per NACK. The SPIFFE ID spec bounds an ID at 2048 bytes
 * (SPIFFE-ID §2.3, "Maximum SPIFFE ID Length"); a longer one is refused bad-spiffe-id, counted
 * and logged clipped. The claimed pod is clipped (not refused: a Subscribe of megabytes is
 * still served, control-plane-nack-detail.test.ts) in what a HealthReport logs and counts.
 */
let cp: ControlPlane;
const logs: string[] = [];
let mesh: DirControlPlane | undefined;

beforeAll(async () => {
  mesh = await shopWebControlPlane('wren-adv29-spiffe-', logs);
  ({ cp } = mesh);
});

afterAll(async () => {
  await mesh?.kill();
});

test('a Subscribe claiming a SPIFFE ID over 2048 bytes is refused, counted, and logged clipped', async () => {
  const { client, stream } = discoveryStream(cp.grpcPort);
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
  const { client, stream } = discoveryStream(cp.grpcPort);
  stream.on('error', () => undefined);
  const first = new Promise<DiscoveryResponse>((resolve) => stream.once('data', resolve));
  const prefix = 'spiffe://cluster.local/ns/shop/sa/';
  stream.write({ subscribe: { identity: { spiffeId: prefix + 'x'.repeat(MAX_SPIFFE_ID_BYTES - prefix.length), namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } });
  expect((await first).full).toBe(true);
  stream.cancel();
  client.close();
});

test('a claimed pod of megabytes is clipped in what a HealthReport logs and in the reporter it counts as', async () => {
  const { client, stream } = discoveryStream(cp.grpcPort);
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
