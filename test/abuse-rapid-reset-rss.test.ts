import { connect as h2connect, constants, type ClientHttp2Session } from 'node:http2';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { fakeH2cApp, type FakeApp } from './helpers/fake-app.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';
import { rapidResetAttack } from './helpers/rapid-reset.js';

/**
 * Issue 11 item 1 (HTTP/2 rapid reset, CVE-2023-44487), the memory side, measured where the
 * issue measured it: each sidecar's resident memory, 78 MB -> 1.7 GB there. Both sidecars
 * run as `wren proxy` processes launched as the image launches them (SIDECAR_NODE_FLAGS),
 * the attackers and the app in this one; /proc/<pid> of each is sampled through the flood.
 * (test/abuse-rapid-reset.test.ts runs the same attack against in-process sidecars, for the
 * GOAWAYs, the counters and what the flood leaves reachable; its process holds the test
 * runner, the app and the attackers too, so its RSS is not a sidecar's.)
 */
const pki = testPki();
const HOST = 'web.default.svc.cluster.local';
/**
 * The most either sidecar may hold resident at any moment of the flood: 79 MB idle, 99-104 MB
 * at the peak of 200,000-215,000 streams in 4 s (2026-12-05, four runs), about the
 * benchmark's aim for a sidecar under load (100 MB, docs/benchmarks.md, issue 12); the bound
 * leaves a quarter more. Streams kept per stream (a few hundred bytes each) would be tens of MB.
 */
const RSS_LIMIT_MB = 128;

let dir: string;
let app: FakeApp;
let client: ProxyProcess, web: ProxyProcess;

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-rapid-reset-'));
  app = await fakeH2cApp('web');
  // The attackers and the well-behaved callers share one caller identity at web's inbound:
  // its per-caller stream cap is raised so this test sees the rapid-reset defences alone.
  web = await startProxyProcess(pki, dir, 'web', { limits: { maxStreamsPerCaller: 10_000 } });
  client = await startProxyProcess(pki, dir, 'client', {
    mesh: { services: [{ name: 'web', ports: [{ port: 80, protocol: 'detect', endpoints: [{ address: '127.0.0.1', port: app.port, proxyPort: web.inboundPort, identity: web.spiffeId }] }] }] },
  });
}, 30_000);

afterAll(async () => {
  good?.close();
  await Promise.all([client?.close(), web?.close()]);
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

let good: ClientHttp2Session;
function get(): Promise<number> {
  if (!good || good.closed || good.destroyed) {
    good = h2connect(`http://127.0.0.1:${client.outboundPort}`);
    good.on('error', () => undefined);
  }
  return new Promise((resolve, reject) => {
    const r = good.request({ ':path': '/echo', ':authority': HOST }, { endStream: true });
    let status = 0;
    r.on('response', (h) => (status = Number(h[':status'])));
    r.on('error', reject);
    r.resume();
    r.on('end', () => resolve(status));
  });
}

test(`through a rapid-reset flood of over 20,000 streams (4 s rounds) neither sidecar process exceeds ${RSS_LIMIT_MB} MB resident, and both serve after it`, async () => {
  expect(await get()).toBe(200);
  const before = [client.rssMb(), web.rssMb()];
  const peak = [...before];
  const sample = setInterval(() => {
    peak[0] = Math.max(peak[0], client.rssMb());
    peak[1] = Math.max(peak[1], web.rssMb());
  }, 50);
  // 4 s rounds until the flood passes 20,000 streams (one round sends 100,000-215,000 on a
  // quiet machine, 9,500 was seen with the suite and other work sharing 2 CPUs), at most 20 s.
  const attack: Awaited<ReturnType<typeof rapidResetAttack>> = { statuses: [], results: [] };
  let streams = 0;
  try {
    for (const end = Date.now() + 20_000; streams <= 20_000 && Date.now() < end; ) {
      const round = await rapidResetAttack(client.outboundPort, HOST, get);
      attack.statuses.push(...round.statuses);
      attack.results.push(...round.results);
      streams = attack.results.reduce((n, r) => n + r.streams, 0);
    }
  } finally {
    clearInterval(sample);
  }
  const after = [client.rssMb(), web.rssMb()];
  console.log(`rapid reset, ${streams} streams: RSS MB client ${before[0].toFixed(0)} -> peak ${peak[0].toFixed(0)} -> ${after[0].toFixed(0)}, web ${before[1].toFixed(0)} -> peak ${peak[1].toFixed(0)} -> ${after[1].toFixed(0)}`);
  // The flood happened and the defence ran: abusive connections closed with ENHANCE_YOUR_CALM.
  expect(streams).toBeGreaterThan(20_000);
  expect(attack.results.filter((r) => r.goaway === constants.NGHTTP2_ENHANCE_YOUR_CALM).length).toBeGreaterThan(0);
  expect(attack.statuses.length).toBeGreaterThan(0);
  expect(peak[0]).toBeLessThan(RSS_LIMIT_MB);
  expect(peak[1]).toBeLessThan(RSS_LIMIT_MB);
  expect(await get()).toBe(200);
}, 60_000);
