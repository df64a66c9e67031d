import type { Ejection } from '../contract/discovery.js';
import { MAX_REPORTED_ENDPOINTS } from '../contract/discovery.js';
import { ControlPlane } from '../control-plane/server.js';
import { startProxy, waitFor, type TestProxy } from './control-plane-harness.js';
import { shopWebControlPlane } from './helpers/discovery-stream.js';
import type { DirControlPlane } from './helpers/dir-control-plane.js';

/**
 * A HealthReport travels on the discovery stream, and the control plane takes messages of
 * at most 4 MiB (grpc-js's default receive limit). A proxy that sees tens of thousands of
 * endpoints fail (a zone down, active checks on a big service) sent them all: the message
 * was over the limit, the control plane ended the stream (RESOURCE_EXHAUSTED), the proxy
 * reconnected, got a full snapshot, resent the report on the first response, and lost the
 * stream again, for as long as the outage lasted. The control plane keeps at most
 * MAX_REPORTED_ENDPOINTS entries of a report anyway; the proxy now sends no more.
 */
let cp: ControlPlane;
let proxy: TestProxy | null = null;
const logs: string[] = [];
let mesh: DirControlPlane | undefined;

beforeAll(async () => {
  mesh = await shopWebControlPlane('wren-cp-health-size-', logs);
  ({ cp } = mesh);
});

afterAll(async () => {
  await proxy?.client.stop();
  await mesh?.kill();
});

test('a health report of more endpoints than the control plane keeps is sent clipped to what it keeps, and the stream stays', async () => {
  const clipped: number[] = [];
  proxy = startProxy(`127.0.0.1:${cp.grpcPort}`, { pod: 'web-0', onHealthReportClipped: (n) => clipped.push(n) });
  await proxy.client.onFirstSnapshot();
  // 60 000 failing endpoints, ~7 MB on the wire whole.
  const list: Ejection[] = Array.from({ length: 60_000 }, (_, i) => ({
    service: 'web.shop', servicePort: 80, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8080,
    kind: 'health-check-failed', reason: 'x'.repeat(64), ejectedForMs: 1000,
  }));
  proxy.client.reportEjections(list);
  const line = await waitFor(() => logs.find((l) => l.includes('health report names endpoints the proxy cannot observe')), 'the report to arrive');
  // Every entry arrived (none names an endpoint it was sent, so all are refused) and no more than the control plane keeps.
  expect((JSON.parse(line) as { rejected: number }).rejected).toBe(MAX_REPORTED_ENDPOINTS);
  expect(proxy.client.stats.reconnects).toBe(0);
  expect(proxy.client.connected).toBe(true);
  // What was left out is counted (wren_limit_exceeded_total{limit="health-report-endpoints"} in a proxy, connect-proxy.ts).
  expect(clipped).toEqual([60_000 - MAX_REPORTED_ENDPOINTS]);
});
