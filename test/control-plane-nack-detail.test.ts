import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { seededRandom, systemClock } from '../common/clock.js';
import { createLogger } from '../common/logger.js';
import { loadDiscoveryProto, type DiscoveryRequest, type DiscoveryResponse } from '../contract/discovery.js';
import { ControlPlane } from '../control-plane/server.js';
import { MAX_NACK_DETAIL_CHARS } from '../control-plane/discovery/discovery-server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';

/**
 * What a discovery stream writes is logged clipped (as refuse() clips it): a Subscribe's pod
 * and services, and a NACK's error_detail. A NACK's error_detail is the proxy's to write: the control plane keeps at most
 * MAX_NACK_DETAIL_CHARS of it (/debug/proxies) and logs no more, however much a stream
 * sends, and however often (the stream NACKs every snapshot, asking for a resync, and the
 * view changes after each). A real control plane and a raw discovery stream on loopback.
 */
const webYaml = (port: number): string =>
  `kind: MeshService\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ name: http, port: 80, protocol: http1 }]\n  endpoints: [{ address: 127.0.0.1, port: ${port} }]\n`;
let dir: string;
let cp: ControlPlane;
const logs: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-cp-nack-'));
  await writeFile(join(dir, 'web.yaml'), webYaml(8080));
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

test('a NACK of megabytes is kept and logged clipped, on every round', async () => {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  const huge = 'x'.repeat(2_000_000);
  let rounds = 0;
  const done = new Promise<void>((resolve) => {
    stream.on('data', (r: DiscoveryResponse) => {
      if (++rounds > 3) return resolve();
      stream.write({ nack: { version: r.version, nonce: r.nonce, errorDetail: huge, resync: true } });
      // A NACKed full snapshot goes out again only when the view changes (control-plane-nack-loops.test.ts): change it.
      void writeFile(join(dir, 'web.yaml'), webYaml(8080 + rounds));
    });
  });
  stream.on('error', () => undefined);
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: 'web-0', labels: {} }, services: [], lastVersion: '' } });
  await done;
  const nackLogs = logs.filter((l) => l.includes('proxy NACKed a discovery response'));
  expect(nackLogs.length).toBe(3);
  for (const l of nackLogs) expect(l.length).toBeLessThan(MAX_NACK_DETAIL_CHARS + 1000);
  const [row] = cp.discovery.debugProxies() as { nacks: number; lastNack: { detail: string } }[];
  expect(row.nacks).toBe(3);
  expect(row.lastNack.detail).toBe(`${'x'.repeat(MAX_NACK_DETAIL_CHARS)}... (${huge.length - MAX_NACK_DETAIL_CHARS} more characters)`);
  stream.cancel();
  client.close();
});

test('a Subscribe of megabytes is logged clipped', async () => {
  const { Client } = loadDiscoveryProto();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> }).Stream();
  stream.on('error', () => undefined);
  const first = new Promise((resolve) => stream.once('data', resolve));
  const services = Array.from({ length: 50_000 }, (_, i) => `svc-${i}.shop`);
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: `web-${'0'.repeat(1_000_000)}`, labels: {} }, services, lastVersion: '' } });
  await first;
  const line = logs.find((l) => l.includes('proxy subscribed') && l.includes('web-000'))!;
  expect(line.length).toBeLessThan(10_000);
  const logged = (JSON.parse(line) as { services: string[] }).services;
  expect([logged.length, logged[20]]).toEqual([21, '(49980 more)']);
  stream.cancel();
  client.close();
});
