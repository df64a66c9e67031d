import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { DEFAULT_POLICY } from '../contract/defaults.js';
import type { Endpoint, Service } from '../contract/model.js';
import { DiscoveryServer } from '../control-plane/discovery/discovery-server.js';
import { ControlPlaneMetrics } from '../control-plane/metrics.js';
import { MeshStore } from '../control-plane/store/mesh-store.js';
import { endpointsOf, startProxy, waitFor, type TestProxy } from './control-plane-harness.js';

/**
 * A discovery response bigger than the gRPC server may send (64 MiB in a control plane,
 * MAX_RESPONSE_BYTES; 4 KiB here, with the same bound on both) was cut by grpc-js with
 * "Sent message larger than max", which the control plane neither logged nor counted. It now
 * refuses it itself: RESOURCE_EXHAUSTED with a detail that says what to narrow, counted and
 * logged; the proxy keeps its last good config. A real DiscoveryServer on a gRPC server and
 * the proxy's DiscoveryClient on loopback.
 */
const MAX = 4096;
const ep = (i: number): Endpoint => ({ address: `10.1.${i >> 8}.${i & 255}`, port: 8080, proxyPort: 15006, identity: 'spiffe://cluster.local/ns/shop/sa/web', weight: 1, zone: 'a', ready: true });
const web = (n: number): Service => ({
  name: 'web', namespace: 'shop', clusterIPs: ['10.96.0.1'], policy: DEFAULT_POLICY, ports: [{ name: 'http', port: 80, protocol: 'http1', endpoints: Array.from({ length: n }, (_, i) => ep(i)) }],
});

let server: grpc.Server;
let proxy: TestProxy | null = null;
const logs: string[] = [];

afterAll(async () => {
  await proxy?.client.stop();
  server?.forceShutdown();
});

test('a response over the bound ends the stream with a reason that names it, counted and logged; the proxy keeps its config', async () => {
  const store = new MeshStore(systemClock, seededRandom(1));
  store.apply([web(1)], []);
  store.markReady();
  const metrics = new ControlPlaneMetrics({ processMetrics: false });
  const ds = new DiscoveryServer({ store, metrics, clock: systemClock, logger: createLogger({ level: 'info', sink: (l) => void logs.push(l) }), maxResponseBytes: MAX });
  server = new grpc.Server({ 'grpc.max_send_message_length': MAX });
  server.addService(DiscoveryServer.definition(), ds.implementation);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  proxy = startProxy(`127.0.0.1:${port}`, { pod: 'web-0' });
  const good = await proxy.client.onFirstSnapshot();
  expect(endpointsOf(good, 'web.shop')).toHaveLength(1);
  // 200 endpoints: ~13 kB in one delta, and in every full snapshot after it.
  store.apply([web(200)], []);
  await waitFor(() => logs.some((l) => l.includes('discovery stream refused') && l.includes('response-too-large')), 'the refusal logged');
  expect(await metrics.registry.getSingleMetricAsString('wren_cp_discovery_refused_total')).toMatch(/reason="response-too-large"\} [1-9]/);
  await waitFor(() => proxy!.client.stats.lastError.includes('RESOURCE_EXHAUSTED'), 'the proxy to see the stream end');
  expect(proxy.client.stats.lastError).toMatch(/the (delta|full) response for this proxy is \d+ bytes, over the 4096 a discovery response may be; narrow the services it watches/);
  // Its last good config stays.
  expect(proxy.client.current()).toBe(good);
});
