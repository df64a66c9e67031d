import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiscoveryResponse } from '../contract/discovery.js';
import { MAX_SUBSCRIBE_SERVICES } from '../contract/subscribe-limits.js';
import { ControlPlane } from '../control-plane/server.js';
import { MAX_NACK_DETAIL_CHARS } from '../control-plane/discovery/discovery-server.js';
import { shopWebControlPlane, discoveryStream, shopWebYaml } from './helpers/discovery-stream.js';
import type { DirControlPlane } from './helpers/dir-control-plane.js';

/**
 * What a discovery stream writes is logged clipped (as refuse() clips it): a Subscribe's pod
 * and services, and a NACK's error_detail. A NACK's error_detail is the proxy's to write: the control plane keeps at most
 * MAX_NACK_DETAIL_CHARS of it (/debug/proxies) and logs no more, however much a stream
 * sends, and however often (the stream NACKs every snapshot, asking for a resync, and the
 * view changes after each). A real control plane and a raw discovery stream on loopback.
 */
let dir: string;
let cp: ControlPlane;
const logs: string[] = [];
let mesh: DirControlPlane | undefined;

beforeAll(async () => {
  mesh = await shopWebControlPlane('wren-cp-nack-', logs);
  ({ cp, dir } = mesh);
});

afterAll(async () => {
  await mesh?.kill();
});

test('a NACK of megabytes is kept and logged clipped, on every round', async () => {
  const { client, stream } = discoveryStream(cp.grpcPort);
  const huge = 'x'.repeat(2_000_000);
  let rounds = 0;
  const done = new Promise<void>((resolve) => {
    stream.on('data', (r: DiscoveryResponse) => {
      if (++rounds > 3) return resolve();
      stream.write({ nack: { version: r.version, nonce: r.nonce, errorDetail: huge, resync: true } });
      // A NACKed full snapshot goes out again only when the view changes (control-plane-nack-loops.test.ts): change it.
      void writeFile(join(dir, 'web.yaml'), shopWebYaml(8080 + rounds));
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
  const { client, stream } = discoveryStream(cp.grpcPort);
  stream.on('error', () => undefined);
  const first = new Promise((resolve) => stream.once('data', resolve));
  // As many as a Subscribe may name (a longer list is refused before it is logged: subscribe-too-large).
  const services = Array.from({ length: MAX_SUBSCRIBE_SERVICES }, (_, i) => `svc-${i}.shop`);
  stream.write({ subscribe: { identity: { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', pod: `web-${'0'.repeat(1_000_000)}`, labels: {} }, services, lastVersion: '' } });
  await first;
  const line = logs.find((l) => l.includes('proxy subscribed') && l.includes('web-000'))!;
  expect(line.length).toBeLessThan(10_000);
  const logged = (JSON.parse(line) as { services: string[] }).services;
  expect([logged.length, logged[20]]).toEqual([21, `(${MAX_SUBSCRIBE_SERVICES - 20} more)`]);
  stream.cancel();
  client.close();
});
