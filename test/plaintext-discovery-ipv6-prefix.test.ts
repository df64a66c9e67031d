import * as grpc from '@grpc/grpc-js';
import { networkInterfaces } from 'node:os';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { MAX_PLAINTEXT_STREAMS_PER_ADDRESS } from '../control-plane/discovery/discovery-server.js';
import { sourceAddress } from '../control-plane/source-address.js';
import { startDirControlPlane, type DirControlPlane } from './helpers/dir-control-plane.js';
import { shopWebYaml } from './helpers/discovery-stream.js';

/**
 * A plaintext control plane bounds streams per source address (MAX_PLAINTEXT_STREAMS_PER_ADDRESS),
 * and counted single IPv6 addresses: one host with a /64 (every IPv6 host has one: SLAAC,
 * privacy addresses, a pod range) spread its streams over 2^64 sources, 64 each (adv59). An
 * IPv6 source now counts by its /64 (control-plane/source-address.ts; the keying of many
 * addresses of one /64 is unit-tested in source-address.test.ts: a host has only so many
 * addresses to connect from). Real plaintext gRPC streams over this host's own non-loopback
 * IPv6 address to a control plane on [::] (skipped without one).
 */
type Stream = grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;

/** The host's first non-loopback, non-link-local IPv6 address (a link-local one needs a zone in the target), or null. */
const hostAddress6 = (): string | null =>
  Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv6' && !i.internal && !i.address.toLowerCase().startsWith('fe80:'))?.address ?? null;

const address = hostAddress6();
let mesh: DirControlPlane | undefined;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  if (!address) return;
  mesh = await startDirControlPlane({
    prefix: 'wren-plaintext-v6-', trustDomain: 'cluster.local', seed: 59, mesh: { 'web.yaml': shopWebYaml(8080) },
    control: { admin: null, listen: '[::]:0' },
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await mesh?.kill();
});

function open(pod: string): { stream: Stream; outcome: Promise<DiscoveryResponse | grpc.StatusObject> } {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`[${address}]:${mesh!.cp.grpcPort}`, grpc.credentials.createInsecure());
  clients.push(client);
  const stream = (client as unknown as { Stream(): Stream }).Stream();
  stream.on('error', () => undefined);
  const outcome = new Promise<DiscoveryResponse | grpc.StatusObject>((resolve) => {
    stream.once('data', resolve);
    stream.once('status', resolve);
  });
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod, labels: {} }, services: [], lastVersion: '' } });
  return { stream, outcome };
}

(address ? test : test.skip)(`streams from an IPv6 address count against its /64: MAX_PLAINTEXT_STREAMS_PER_ADDRESS served, the next refused naming the prefix${address ? '' : ' [skipped: no non-loopback IPv6 address on this host]'}`, async () => {
  const prefix = sourceAddress(`[${address}]:1`)!;
  expect(prefix).toMatch(/::\/64$/);
  const held: Stream[] = [];
  for (let i = 0; i < MAX_PLAINTEXT_STREAMS_PER_ADDRESS; i++) {
    const s = open(`v6-${i}`);
    expect('version' in (await s.outcome)).toBe(true);
    held.push(s.stream);
  }
  const over = (await open('v6-new').outcome) as grpc.StatusObject;
  expect({ code: over.code, details: over.details }).toEqual({
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `${prefix} has ${MAX_PLAINTEXT_STREAMS_PER_ADDRESS} plaintext discovery streams open, at most ${MAX_PLAINTEXT_STREAMS_PER_ADDRESS}`,
  });
  const refused = await mesh!.cp.metrics.registry.getSingleMetric('wren_cp_discovery_refused_total')!.get();
  expect(refused.values.find((v) => v.labels.reason === 'streams-per-address')?.value).toBe(1);
  for (const s of held) s.cancel();
}, 30_000);
