import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest } from '../contract/discovery.js';
import { MAX_RESPONSE_CACHE_BYTES } from '../control-plane/discovery/discovery-server.js';
import type { Entry } from '../control-plane/discovery/subscriber.js';
import { ControlPlane } from '../control-plane/server.js';
import { ManualSource, largeService } from './control-plane-harness.js';

/**
 * The discovery server computes a response once per (service filter, ...) and shares it
 * until the view changes. The filter is the Subscribe's to choose: streams opened and
 * cancelled in a quiet mesh, each with a filter of its own naming the same big service,
 * left one encoded response each. A real control plane and raw discovery streams on loopback;
 * what the cache holds is read from the server (it is not on the wire).
 */
// ~1 MB per response, as 3,400 endpoints whose identity names a service account of 253
// characters (the most a Kubernetes name has) rather than 20,000 with a short one: the bound
// counts bytes, and encoding costs per endpoint, so the 70 streams below (over 64 MiB of
// responses, which the bound needs) took 20-26 s of the 30 s timeout on a loaded 2-CPU CI
// machine encoding 1.4 million endpoints; ~240,000 make the same bytes.
const sa = `web-${'a'.repeat(249)}`;
const big = largeService(3_400);
const web = { ...big, ports: big.ports.map((p) => ({ ...p, endpoints: p.endpoints.map((e) => ({ ...e, identity: `spiffe://cluster.local/ns/shop/sa/${sa}` })) })) };

let cp: ControlPlane;
let client: grpc.Client | null = null;

beforeAll(async () => {
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(5),
    logger: silentLogger, source: (ctx) => new ManualSource(ctx, [web]),
  });
  await cp.whenReady();
});

afterAll(async () => {
  client?.close();
  await cp?.kill();
});

test('streams subscribed and cancelled with a filter of their own each leave no more than MAX_RESPONSE_CACHE_BYTES of shared responses', async () => {
  // Responses are taken as bytes: decoding a megabyte per stream is no part of what is tested.
  const m = loadDiscoveryProto().service.Stream;
  const Raw = grpc.makeGenericClientConstructor({ Stream: { ...m, responseDeserialize: (b: Buffer) => b } }, 'Discovery');
  client = new Raw(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  let size = 0;
  const cycles = 70;
  for (let i = 0; i < cycles; i++) {
    const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, Buffer> }).Stream();
    stream.on('error', () => undefined);
    const first = new Promise<Buffer>((resolve) => stream.once('data', resolve));
    stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/client', namespace: 'shop', pod: 'client-0', labels: {} }, services: ['web.shop', `nothing-${i}.shop`], lastVersion: '' } });
    expect((await first).length).toBeGreaterThan(1_000_000);
    stream.cancel();
  }
  const cache = (cp.discovery as unknown as { cache: Map<string, Entry> }).cache;
  for (const e of cache.values()) size += (e.bytes?.length ?? 0) + [...e.withPolicy.values()].reduce((n, b) => n + (b === e.bytes ? 0 : b.length), 0);
  // Each response is ~1 MB, so the streams asked for more than the bound holds.
  expect(cycles * (cache.values().next().value?.bytes?.length ?? 0)).toBeGreaterThan(MAX_RESPONSE_CACHE_BYTES);
  expect(size).toBeLessThanOrEqual(MAX_RESPONSE_CACHE_BYTES);
  expect(await cp.metrics.registry.getSingleMetricAsString('wren_cp_discovery_response_cache_evictions_total')).toMatch(/_total [1-9]/);
});
