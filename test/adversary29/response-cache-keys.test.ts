import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest } from '../../contract/discovery.js';
import { MAX_RESPONSE_CACHE_BYTES } from '../../control-plane/discovery/discovery-server.js';
import type { Entry } from '../../control-plane/discovery/subscriber.js';
import { ControlPlane } from '../../control-plane/server.js';
import { ManualSource, largeService } from '../control-plane-harness.js';

/**
 * The shared-response cache (MAX_RESPONSE_CACHE_BYTES) counted the responses' bytes, not its
 * keys, and a key holds the Subscribe's whole service filter: a filter of a megabyte of names
 * that match nothing makes a response of a few bytes under a key of a megabyte. In a quiet mesh,
 * streams opened and cancelled with such a filter each left a megabyte behind, and the bound
 * never fired. The key's characters now count too. A real control plane and raw discovery
 * streams on loopback; what the cache holds is read from the server.
 */
let cp: ControlPlane;
let client: grpc.Client | null = null;

beforeAll(async () => {
  cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(5),
    logger: silentLogger, source: (ctx) => new ManualSource(ctx, [largeService(1)]),
  });
  await cp.whenReady();
});

afterAll(async () => {
  client?.close();
  await cp?.kill();
});

test('streams with a filter of a megabyte each leave no more than MAX_RESPONSE_CACHE_BYTES, keys counted', async () => {
  const m = loadDiscoveryProto().service.Stream;
  const Raw = grpc.makeGenericClientConstructor({ Stream: { ...m, responseDeserialize: (b: Buffer) => b } }, 'Discovery');
  client = new Raw(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const cycles = 80;
  for (let i = 0; i < cycles; i++) {
    const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, Buffer> }).Stream();
    stream.on('error', () => undefined);
    const first = new Promise<Buffer>((resolve) => stream.once('data', resolve));
    // ~1 MB of names that match nothing: distinct per stream. Each of 127 characters (a
    // service and a namespace of 63, the most a Kubernetes name has): the server's work on a
    // filter (dedupe, sort, join) is per name, and 40,000 short names a stream took ~20 s of
    // the 30 s timeout on a loaded CI machine for the same megabyte.
    const services = Array.from({ length: 9_000 }, (_, j) => `${`no-such-service-${i}-${j}-`.padEnd(63, 'x')}.${'shop-'.padEnd(63, 'p')}`);
    stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/client', namespace: 'shop', pod: 'client-0', labels: {} }, services, lastVersion: '' } });
    expect((await first).length).toBeLessThan(1000);
    stream.cancel();
  }
  const cache = (cp.discovery as unknown as { cache: Map<string, Entry> }).cache;
  let held = 0;
  for (const [key, e] of cache) held += key.length + (e.bytes?.length ?? 0);
  expect(held).toBeLessThanOrEqual(MAX_RESPONSE_CACHE_BYTES);
  expect(await cp.metrics.registry.getSingleMetricAsString('wren_cp_discovery_response_cache_evictions_total')).toMatch(/_total [1-9]/);
});
