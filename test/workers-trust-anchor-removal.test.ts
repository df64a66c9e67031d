import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { testPki, type TestPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { httpText } from './helpers/http-text.js';
import type { Proxy } from '../proxy/proxy.js';
import type { TlsMaterial } from '../proxy/tls/tls-identity.js';

/**
 * Trust-anchor rotation (docs/trust-anchor-rotation.md) on sidecars with listener workers
 * (config `concurrency` 2, worker threads sharing the ports with SO_REUSEPORT): the bundle
 * each worker verifies peers with follows the main thread's, in both directions, and a
 * restarted worker starts with the current one. Real sockets, real mTLS; the workers run
 * the compiled proxy (dist/, `npm run build`).
 */
const oldRoot = testPki();
const newRoot = testPki();
let app: FakeApp;
let server: Proxy;
/** A peer that never renewed: its certificate is from the old root, and it trusts only that root. */
let stale: Proxy;
let client: Proxy;

/** Enough fresh connections that the kernel's SO_REUSEPORT hash sends some to each of two sockets (all to one: 2^-39). */
const CONNECTIONS = 40;

/** `m`'s certificate with `bundle` as the trust bundle (what a renewal during a rotation hands out). */
const trusting = (m: TlsMaterial, ...roots: TestPki[]): TlsMaterial => ({ ...m, trustBundlePem: roots.map((r) => r.bundlePem).join('') });

beforeAll(async () => {
  app = await fakeApp('a');
  server = await startProxy({ pki: oldRoot, serviceAccount: 'web', config: { concurrency: 2 } });
  stale = await startProxy({ pki: oldRoot, serviceAccount: 'stale' });
  client = await startProxy({ pki: oldRoot, serviceAccount: 'client', config: { concurrency: 2 }, services: [meshService('stale', 80, [{ appPort: app.port, proxy: stale }])] });
  await Promise.all([untilReady(server), untilReady(client)]);
}, 60_000);

afterAll(async () => {
  await client?.close();
  await stale?.close();
  await server?.close();
  await app?.close();
});

const admin = (p: Proxy, path: string) => httpText(p.adminPort, path);

async function untilReady(p: Proxy, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await admin(p, '/ready');
    if (r.status === 200) return;
    if (Date.now() > end) throw new Error(`not ready: ${r.body}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** Connections each worker of `p` accepted (wren_worker_connections_total{worker}). */
async function perWorker(p: Proxy = server): Promise<number[]> {
  const m = (await admin(p, '/metrics')).body;
  return [0, 1].map((w) => {
    const line = m.split('\n').find((l) => l.startsWith(`wren_worker_connections_total{worker="${w}"}`));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  });
}

/** TLS session tickets the server handed out (resumption would skip the certificate check). */
const tickets: Buffer[] = [];

/** An mTLS HTTP/2 session to the server's inbound port, as a peer sidecar presenting `m` (resuming `ticket` if given). */
function session(m: TlsMaterial, ticket?: Buffer): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['h2'], key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, checkServerIdentity: () => undefined, session: ticket });
    socket.once('error', reject);
    socket.on('session', (t: Buffer) => tickets.push(t));
    socket.once('secureConnect', () => {
      if (ticket && socket.isSessionReused()) reused++;
      const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { createConnection: () => socket });
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

let reused = 0;

/** One request on `s` to the app behind the server: its status, or the error's code (the server refused the peer's certificate). */
function get(s: ClientHttp2Session): Promise<string> {
  return new Promise((resolve) => {
    const r = s.request({ ':path': '/name', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' }, { endStream: true });
    let body = '';
    r.on('response', (h) => (body = `${h[':status']} `));
    r.on('data', (d) => (body += d));
    r.on('end', () => resolve(body));
    r.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

/** A request on a fresh connection presenting `m`: '200 a', or how it was refused. */
async function fresh(m: TlsMaterial, ticket?: Buffer): Promise<string> {
  let s: ClientHttp2Session;
  try {
    s = await session(m, ticket);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'error';
  }
  try {
    return await get(s);
  } finally {
    s.destroy();
  }
}

/** `n` fresh connections presenting `m`; the results, and how many connections each worker accepted meanwhile. */
async function many(m: TlsMaterial, n = CONNECTIONS): Promise<{ results: string[]; spread: number[] }> {
  const before = await perWorker(server);
  const results = await Promise.all(Array.from({ length: n }, () => fresh(m)));
  const after = await perWorker(server);
  return { results, spread: after.map((v, i) => v - before[i]) };
}

const refused = (r: string) => r !== '200 a';

test('inbound: after the old root is removed no worker accepts a peer certificate from it, a restarted worker neither; a session opened before stays (as Envoy and Linkerd keep theirs)', async () => {
  const oldPeer = trusting(oldRoot.issue('default', 'caller'), oldRoot, newRoot);
  const newPeer = trusting(newRoot.issue('default', 'caller'), oldRoot, newRoot);
  // Step 2: both roots trusted; the server still presents an old-root certificate.
  server.tls.rotate(trusting(oldRoot.issue('default', 'web'), oldRoot, newRoot));
  // Step 3: the server presents a new-root certificate.
  server.tls.rotate(trusting(newRoot.issue('default', 'web'), oldRoot, newRoot));
  // A rotation reaches the workers by message: both roots are accepted by both once it has.
  const end = Date.now() + 5000;
  let both: { results: string[]; spread: number[] };
  do both = await many(newPeer);
  while (both.results.some(refused) && Date.now() < end);
  expect(both.results).toEqual(Array(CONNECTIONS).fill('200 a'));
  const old = await many(oldPeer);
  expect(old.results).toEqual(Array(CONNECTIONS).fill('200 a'));
  expect(Math.min(...old.spread)).toBeGreaterThan(0);
  // A long-lived session from the old-root peer, opened before the removal.
  const held = await session(oldPeer);
  expect(await get(held)).toBe('200 a');
  // Resumption works while nothing changed (so the check after the removal means something).
  expect(tickets.length).toBeGreaterThan(0);
  const ticket = tickets.at(-1)!;
  const before = reused;
  // Twenty tries: each worker has its own ticket keys, and the kernel sends all twenty to the other one 2^-20 of the time.
  await Promise.all(Array.from({ length: 20 }, () => fresh(oldPeer, ticket)));
  expect(reused).toBeGreaterThan(before);

  // Step 4: the old root is removed.
  server.tls.rotate(trusting(newRoot.issue('default', 'web'), newRoot));
  let after: { results: string[]; spread: number[] };
  const end2 = Date.now() + 5000;
  do after = await many(oldPeer);
  while (!after.results.every(refused) && Date.now() < end2);
  expect(after.results.filter((r) => !refused(r))).toEqual([]);
  expect(Math.min(...after.spread)).toBeGreaterThan(0); // both workers saw (and refused) some
  // Nor does a session ticket from before let it back in: each rotation makes a new secure
  // context with new ticket keys, so the peer gets a full handshake against the new bundle.
  const resumedAt = reused;
  const resumed = await Promise.all(Array.from({ length: 10 }, () => fresh(oldPeer, ticket)));
  expect(resumed.filter((r) => !refused(r))).toEqual([]);
  expect(reused).toBe(resumedAt);
  const ok = await many(newPeer);
  expect(ok.results).toEqual(Array(CONNECTIONS).fill('200 a'));
  expect(Math.min(...ok.spread)).toBeGreaterThan(0);
  // The session authenticated before the removal is not closed by it (docs/trust-anchor-rotation.md, "Open connections").
  expect(await get(held)).toBe('200 a');
  held.destroy();

  // A worker that crashes is restarted with the current material: it refuses the old root too.
  const slots = (server as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } | null; listening: boolean }[] } }).pool.slots;
  const w = slots[1].worker!;
  await w.terminate();
  const up = Date.now() + 15_000;
  while (!(slots[1].worker && slots[1].worker !== w && slots[1].listening) && Date.now() < up) await new Promise((r) => setTimeout(r, 20));
  await untilReady(server);
  const restarted = await many(oldPeer);
  expect(restarted.results.filter((r) => !refused(r))).toEqual([]);
  expect(restarted.spread[1]).toBeGreaterThan(0);
  expect((await many(newPeer)).results).toEqual(Array(CONNECTIONS).fill('200 a'));
}, 90_000);

test('outbound: once the client sidecar drops the old root, neither of its workers reuses a pooled session to a peer still presenting an old-root certificate, nor opens a new one', async () => {
  const call = () => httpText(client.outboundPort, '/name', 'stale');
  // Pooled sessions from both workers to the stale peer (old root, trusted by everyone so far).
  const warm = await Promise.all(Array.from({ length: CONNECTIONS }, call));
  expect(warm.map((r) => `${r.status} ${r.body}`)).toEqual(Array(CONNECTIONS).fill('200 a'));
  // The client renews during the rotation, then drops the old root (steps 3 and 4 at once for it).
  client.tls.rotate(trusting(newRoot.issue('default', 'client'), newRoot));
  const end = Date.now() + 5000;
  let got: { status: number; body: string }[];
  let spread: number[];
  do {
    const before = await perWorker(client);
    got = await Promise.all(Array.from({ length: CONNECTIONS }, call));
    spread = (await perWorker(client)).map((v, i) => v - before[i]);
  } while (got.some((r) => r.status === 200) && Date.now() < end);
  // Every request failed, on both workers (the app's connections spread over them): a pooled
  // session reused, or a new one verified with the old bundle, would have answered 200.
  expect(got.filter((r) => r.status === 200)).toEqual([]);
  expect(Math.min(...spread)).toBeGreaterThan(0);
}, 60_000);
