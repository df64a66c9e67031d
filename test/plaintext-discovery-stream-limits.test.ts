import * as grpc from '@grpc/grpc-js';
import { networkInterfaces } from 'node:os';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { MAX_SUBSCRIBE_LABELS, MAX_SUBSCRIBE_SERVICES } from '../contract/subscribe-limits.js';
import { MAX_PLAINTEXT_STREAMS_PER_ADDRESS, MAX_STREAMS_PER_POD } from '../control-plane/discovery/discovery-server.js';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { ControlPlane } from '../control-plane/server.js';
import type { SourceContext } from '../control-plane/sources/source.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { shopWebYaml } from './helpers/discovery-stream.js';
import { waitFor } from './control-plane-harness.js';

/**
 * A plaintext control plane (`--insecure`: no client certificates) bounded no one's
 * discovery streams, where an mTLS one holds a pod to MAX_STREAMS_PER_POD (adv15): each
 * stream costs an encoded catalog, so anything reaching the port could hold any number
 * (adv41). Plaintext streams now count against the pod they claim (MAX_STREAMS_PER_POD) and,
 * since a claim costs nothing, their source address (MAX_PLAINTEXT_STREAMS_PER_ADDRESS;
 * loopback exempt). Real plaintext gRPC streams; the address limit over this host's own
 * non-loopback address (skipped without one).
 */
type Stream = grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;

let mesh: DirControlPlane | undefined;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  mesh = await startDirControlPlane({
    prefix: 'wren-plaintext-limits-', trustDomain: 'cluster.local', seed: 41, mesh: { 'web.yaml': shopWebYaml(8080) },
    // Every address: the address limit is shown over a non-loopback one.
    control: { admin: null, listen: '0.0.0.0:0' },
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await mesh?.kill();
});

/** The host's first non-loopback IPv4 address, or null. */
const hostAddress = (): string | null =>
  Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address ?? null;

const refusals = async (): Promise<Record<string, number>> =>
  Object.fromEntries((await mesh!.cp.metrics.registry.getSingleMetric('wren_cp_discovery_refused_total')!.get()).values.map((v) => [v.labels.reason, v.value]));

/** A plaintext stream to `host` claiming `pod`: its first response, or the status it ended with. */
function open(host: string, pod: string, more: { services?: string[]; labels?: Record<string, string> } = {}): { stream: Stream; outcome: Promise<DiscoveryResponse | grpc.StatusObject> } {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`${host}:${mesh!.cp.grpcPort}`, grpc.credentials.createInsecure());
  clients.push(client);
  const stream = (client as unknown as { Stream(): Stream }).Stream();
  stream.on('error', () => undefined);
  const outcome = new Promise<DiscoveryResponse | grpc.StatusObject>((resolve) => {
    stream.once('data', resolve);
    stream.once('status', resolve);
  });
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod, labels: more.labels ?? {} }, services: more.services ?? [], lastVersion: '' } });
  return { stream, outcome };
}

const served = (o: DiscoveryResponse | grpc.StatusObject): boolean => 'version' in o;

test('streams claiming one pod: MAX_STREAMS_PER_POD served, the next RESOURCE_EXHAUSTED (streams-per-pod), counted; a closed one frees its place', async () => {
  const held: Stream[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) {
    const s = open('127.0.0.1', 'web-0');
    expect(served(await s.outcome)).toBe(true);
    held.push(s.stream);
  }
  const over = (await open('127.0.0.1', 'web-0').outcome) as grpc.StatusObject;
  expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(over.details).toBe(`claimed pod shop/web-0 has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}`);
  expect((await refusals())['streams-per-pod']).toBe(1);
  // Another pod, and a stream claiming none, from loopback: served.
  expect(served(await open('127.0.0.1', 'web-1').outcome)).toBe(true);
  expect(served(await open('127.0.0.1', '').outcome)).toBe(true);
  held.pop()!.cancel();
  const before = mesh!.cp.discovery.subscriberCount;
  await waitFor(() => mesh!.cp.discovery.subscriberCount < before, 'the cancelled stream dropped');
  expect(served(await open('127.0.0.1', 'web-0').outcome)).toBe(true);
  for (const s of held) s.cancel();
});

const address = hostAddress();
(address ? test : test.skip)(`one source address (not loopback): MAX_PLAINTEXT_STREAMS_PER_ADDRESS served, each claiming a pod of its own, the next RESOURCE_EXHAUSTED (streams-per-address)${address ? '' : ' [skipped: no non-loopback IPv4 address on this host]'}`, async () => {
  const held: Stream[] = [];
  for (let i = 0; i < MAX_PLAINTEXT_STREAMS_PER_ADDRESS; i++) {
    const s = open(address!, `addr-${i}`);
    expect(served(await s.outcome)).toBe(true);
    held.push(s.stream);
  }
  const over = (await open(address!, 'addr-new').outcome) as grpc.StatusObject;
  expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(over.details).toBe(`${address} has ${MAX_PLAINTEXT_STREAMS_PER_ADDRESS} plaintext discovery streams open, at most ${MAX_PLAINTEXT_STREAMS_PER_ADDRESS}`);
  expect((await refusals())['streams-per-address']).toBe(1);
  // Loopback is not that address: served.
  expect(served(await open('127.0.0.1', 'addr-new').outcome)).toBe(true);
  for (const s of held) s.cancel();
}, 30_000);

(address ? test : test.skip)(`streams claiming a pod from another address do not take that pod's own places: the claim counts per source address (adv53)${address ? '' : ' [skipped: no non-loopback IPv4 address on this host]'}`, async () => {
  // The previous test's 64 streams from this address, cancelled: gone first.
  await waitFor(() => mesh!.cp.discovery.subscriberCount <= 10, 'the previous test\'s streams dropped');
  const held: Stream[] = [];
  for (let i = 0; i < MAX_STREAMS_PER_POD; i++) {
    const s = open(address!, 'victim-0');
    expect(served(await s.outcome)).toBe(true);
    held.push(s.stream);
  }
  // The pod's own sidecar (here from loopback): served, where before it read `claimed pod shop/victim-0 has 8 discovery streams open`.
  const own = open('127.0.0.1', 'victim-0');
  expect(served(await own.outcome)).toBe(true);
  // The claimant's next stream claiming it, from the same address: refused, as before.
  const over = (await open(address!, 'victim-0').outcome) as grpc.StatusObject;
  expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  expect(over.details).toBe(`claimed pod shop/victim-0 from ${address} has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}`);
  for (const s of [...held, own.stream]) s.cancel();
}, 30_000);

test('a Subscribe naming more than MAX_SUBSCRIBE_SERVICES services or claiming more than MAX_SUBSCRIBE_LABELS labels: INVALID_ARGUMENT (subscribe-too-large), counted; at the bounds, served (adv53)', async () => {
  // Distinct keys that match nothing: each was kept, with a Set of them and their join, for the stream's life.
  const keys = (n: number): string[] => Array.from({ length: n }, (_, i) => `s${i.toString(36)}.ns`);
  const labels = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}`, 'v']));
  const before = (await refusals())['subscribe-too-large'] ?? 0;
  const many = (await open('127.0.0.1', '', { services: keys(MAX_SUBSCRIBE_SERVICES + 1) }).outcome) as grpc.StatusObject;
  expect({ code: many.code, details: many.details }).toEqual({
    code: grpc.status.INVALID_ARGUMENT,
    details: `subscribe.services names ${MAX_SUBSCRIBE_SERVICES + 1} services, at most ${MAX_SUBSCRIBE_SERVICES}; watch every service (an empty list) instead`,
  });
  const labelled = (await open('127.0.0.1', '', { labels: labels(MAX_SUBSCRIBE_LABELS + 1) }).outcome) as grpc.StatusObject;
  expect({ code: labelled.code, details: labelled.details }).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: `subscribe.identity.labels has more than ${MAX_SUBSCRIBE_LABELS} labels` });
  expect((await refusals())['subscribe-too-large']).toBe(before + 2);
  const atBounds = open('127.0.0.1', '', { services: [...keys(MAX_SUBSCRIBE_SERVICES - 1), 'web.shop'], labels: labels(MAX_SUBSCRIBE_LABELS) });
  const r = await atBounds.outcome;
  expect(served(r)).toBe(true);
  expect((r as DiscoveryResponse).services.map((x) => `${x.name}.${x.namespace}`)).toEqual(['web.shop']);
  atBounds.stream.cancel();
}, 30_000);

test('streams opened before the source has synced are counted at Subscribe: the 9th claiming one pod is refused at once, the 8 are served once it syncs (adv53)', async () => {
  let ctx: SourceContext | undefined;
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, logger: silentLogger, trustDomain: 'cluster.local', clock: systemClock, random: seededRandom(53),
    // Never synced until the test says so (an API server the control plane cannot list from yet).
    source: (c) => ((ctx = c), { name: 'unsynced', start: async () => undefined, stop: async () => undefined }),
  });
  const streams: Stream[] = [];
  try {
    const { Client } = loadDiscoveryProto();
    const outcomes = Array.from({ length: MAX_STREAMS_PER_POD + 1 }, () => {
      const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
      clients.push(client);
      const stream = (client as unknown as { Stream(): Stream }).Stream();
      streams.push(stream);
      stream.on('error', () => undefined);
      stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: 'early-0', labels: {} }, services: [], lastVersion: '' } });
      return new Promise<DiscoveryResponse | grpc.StatusObject>((resolve) => {
        stream.once('data', resolve);
        stream.once('status', resolve);
      });
    });
    // Exactly one is refused, before any sync (which of them: the order their Subscribes arrived in).
    const first = (await Promise.race(outcomes)) as grpc.StatusObject;
    expect({ code: first.code, details: first.details }).toEqual({ code: grpc.status.RESOURCE_EXHAUSTED, details: `claimed pod shop/early-0 has ${MAX_STREAMS_PER_POD} discovery streams open, at most ${MAX_STREAMS_PER_POD}` });
    ctx!.store.markReady();
    const all = await Promise.all(outcomes);
    expect(all.filter(served)).toHaveLength(MAX_STREAMS_PER_POD);
  } finally {
    for (const s of streams) s.cancel();
    await cp.kill();
  }
}, 30_000);
