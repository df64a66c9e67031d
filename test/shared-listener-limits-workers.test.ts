import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';
import { untilReady } from './helpers/until-ready.js';

/**
 * The listener limits hold for the sidecar, not per listener worker (config `concurrency`
 * 2): `limits.maxConnectionsPerListener` per listener (Envoy's per-listener connection
 * limit, which counts across its workers) and `limits.maxStreamsPerCaller` per caller, in
 * the memory the workers share (proxy/workers/shared-limits.ts). Real workers (dist/),
 * real sockets, real mTLS; the kernel spreads the connections over both workers'
 * SO_REUSEPORT sockets, and each test checks that it did (wren_worker_connections_total):
 * with a count per worker, a spread over both admits more than the limit.
 */
const pki = testPki();
let app: FakeApp;
let capped: Proxy;
const MAX_CONNECTIONS = 4;
const MAX_STREAMS = 5;
/** Connections each test opens: all on one worker happens once in 2^(N-1) rounds. */
const ATTEMPTS = 2 * MAX_CONNECTIONS;

beforeAll(async () => {
  app = await fakeApp('web');
  capped = await startProxy({ pki, serviceAccount: 'capped', config: { concurrency: 2, limits: { maxConnectionsPerListener: MAX_CONNECTIONS, maxStreamsPerCaller: MAX_STREAMS } } });
  await untilReady(capped);
}, 30_000);

afterAll(async () => {
  await capped?.close();
  await app.close();
});

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Connections each of `p`'s two workers accepted so far. */
const perWorker = (p: Proxy) => Promise.all([0, 1].map((w) => metric(p, new RegExp(`wren_worker_connections_total\\{worker="${w}"\\} (\\d+)`))));
const limitCount = (p: Proxy, direction: string, limit: string) => metric(p, new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="${limit}"\\} (\\d+)`));

/**
 * One connection to the outbound port carrying one HTTP/1.1 request (no route: the proxy
 * answers 404 itself and keeps the connection). Admitted: the socket, left open; refused
 * at accept: null (closed without a response).
 */
function outboundConnection(): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: capped.outboundPort });
    let got = '';
    s.on('error', () => undefined);
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) resolve(s);
    });
    s.once('close', () => resolve(null));
    s.write('GET /x HTTP/1.1\r\nhost: nowhere.example\r\n\r\n');
  });
}

/** One mTLS connection to the inbound port, as a peer sidecar makes: the socket once the handshake is done, null if closed first. */
function inboundConnection(caller = 'caller'): Promise<TLSSocket | null> {
  const m = pki.issue('default', caller);
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: capped.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
    s.on('error', () => undefined);
    s.once('secureConnect', () => resolve(s));
    s.once('close', () => resolve(null));
  });
}

/** Opens `n` connections one after another (each admitted one stays open), with the spread the workers saw. */
async function openSequentially<S extends Socket>(n: number, open: () => Promise<S | null>): Promise<{ admitted: S[]; refused: number; spread: number[] }> {
  const before = await perWorker(capped);
  const admitted: S[] = [];
  let refused = 0;
  for (let i = 0; i < n; i++) {
    const s = await open();
    if (s) admitted.push(s);
    else refused++;
  }
  const spread = (await perWorker(capped)).map((v, i) => v - before[i]!);
  return { admitted, refused, spread };
}

test.each([
  ['outbound', outboundConnection],
  ['inbound', () => inboundConnection()],
] as const)('maxConnectionsPerListener N on the %s listener: N open for the sidecar, not N per worker; closing one frees its place', async (direction, open) => {
  // Whichever worker held them gives their places back (once it has seen them close): the next N are admitted.
  const placesFreed = () =>
    until(async () => {
      const again = await openSequentially<Socket>(MAX_CONNECTIONS, open);
      for (const s of again.admitted) s.destroy();
      return again.admitted.length === MAX_CONNECTIONS;
    }, 5000);
  // All attempts on one worker proves nothing (one worker alone holds N): the round runs again,
  // once the last round's connections are let go.
  for (let round = 0; round < 3; round++) {
    if (round > 0) expect(await placesFreed()).toBe(true);
    // Read per round: a round run again refused (and counted) its own ATTEMPTS - N before.
    const refusedBefore = await limitCount(capped, direction, 'max-connections');
    const { admitted, refused, spread } = await openSequentially<Socket>(ATTEMPTS, open);
    try {
      if (Math.min(...spread) === 0) continue;
      expect(spread[0]! + spread[1]!).toBe(ATTEMPTS);
      expect(admitted.length).toBe(MAX_CONNECTIONS);
      expect(refused).toBe(ATTEMPTS - MAX_CONNECTIONS);
      expect(await limitCount(capped, direction, 'max-connections')).toBe(refusedBefore + ATTEMPTS - MAX_CONNECTIONS);
      // Every admitted connection is still open: the refusals were not closures of held ones.
      expect(admitted.every((s) => !s.destroyed)).toBe(true);
    } finally {
      for (const s of admitted) s.destroy();
    }
    expect(await placesFreed()).toBe(true);
    return;
  }
  throw new Error('the kernel sent every connection to one worker three rounds in a row');
}, 30_000);

/** A connection from `caller` on each worker: opened one at a time, the worker told by which one counted it; the others closed. */
async function connectionPerWorker(caller: string): Promise<TLSSocket[]> {
  const held: (TLSSocket | undefined)[] = [undefined, undefined];
  for (let i = 0; i < 20 && !(held[0] && held[1]); i++) {
    const before = await perWorker(capped);
    const s = await inboundConnection(caller);
    if (!s) throw new Error('connection refused');
    const w = (await perWorker(capped)).findIndex((v, j) => v > before[j]!);
    if (w >= 0 && !held[w]) held[w] = s;
    else s.destroy();
  }
  if (!held[0] || !held[1]) throw new Error('the kernel sent every connection to one worker');
  return held as TLSSocket[];
}

/** A slow request on `socket`'s HTTP/2 session: its status. */
function slowRequest(session: ClientHttp2Session, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = session.request({ ':path': `/slow?ms=${ms}`, 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' }, { endStream: true });
    r.on('error', reject);
    r.once('response', (h) => {
      r.resume();
      r.once('end', () => resolve(Number(h[':status'])));
    });
  });
}

const h2session = (socket: TLSSocket): ClientHttp2Session => {
  const session = h2connect(`https://127.0.0.1:${capped.inboundPort}`, { createConnection: () => socket });
  session.on('error', () => undefined);
  return session;
};

test('maxStreamsPerCaller K: one caller with K slow requests on each worker gets K through in all; another caller is not held by it', async () => {
  const before = await limitCount(capped, 'inbound', 'max-streams-per-caller');
  const sessions = (await connectionPerWorker('greedy')).map(h2session);
  try {
    // K on each worker: with a count per worker all 2K would be admitted.
    const greedy = sessions.flatMap((s) => Array.from({ length: MAX_STREAMS }, () => slowRequest(s, 3000)));
    await new Promise((r) => setTimeout(r, 1000));
    // While the greedy caller holds its K, another caller is served.
    const [other] = (await Promise.all([inboundConnection('other')])).map((s) => h2session(s!));
    expect(await slowRequest(other!, 0)).toBe(200);
    other!.close();
    const statuses = await Promise.all(greedy);
    expect(statuses.filter((s) => s === 200)).toHaveLength(MAX_STREAMS);
    expect(statuses.filter((s) => s === 503)).toHaveLength(MAX_STREAMS);
    expect(await limitCount(capped, 'inbound', 'max-streams-per-caller')).toBe(before + MAX_STREAMS);
    // Every slot was given back, on both workers: K more are admitted at once.
    const again = await Promise.all(sessions.flatMap((s, i) => Array.from({ length: i === 0 ? 2 : MAX_STREAMS - 2 }, () => slowRequest(s, 0))));
    expect(again).toEqual(Array(MAX_STREAMS).fill(200));
  } finally {
    for (const s of sessions) s.destroy();
  }
}, 30_000);

/** The worker that accepted each of `n` outbound connections opened one at a time (-1: refused), with the sockets admitted. */
async function outboundByWorker(n: number): Promise<{ workers: number[]; admitted: Socket[] }> {
  const workers: number[] = [];
  const admitted: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const before = await perWorker(capped);
    const s = await outboundConnection();
    const w = (await perWorker(capped)).findIndex((v, j) => v > before[j]!);
    workers.push(s ? w : -1);
    if (s) admitted.push(s);
  }
  return { workers, admitted };
}

test("a worker that crashes takes its connections' places with it: its replacement starts from the other worker's count", async () => {
  const slots = (capped as unknown as { pool: { slots: { worker: { terminate(): Promise<number> } | null; listening: boolean }[] } }).pool.slots;
  for (let round = 0; round < 3; round++) {
    const held = await outboundByWorker(MAX_CONNECTIONS);
    try {
      expect(held.admitted.length).toBe(MAX_CONNECTIONS);
      const onFirst = held.workers.filter((w) => w === 0).length;
      // Worker 0 must hold some and worker 1 some, or the round proves nothing.
      if (onFirst === 0 || onFirst === MAX_CONNECTIONS) continue;
      await slots[0]!.worker!.terminate();
      const end = Date.now() + 10_000;
      while (!(slots[0]!.listening && slots[0]!.worker) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      await untilReady(capped);
      // Worker 1's connections are still open and counted; worker 0's places are free again.
      const more = await outboundByWorker(MAX_CONNECTIONS);
      try {
        expect(more.admitted.length).toBe(onFirst);
        expect(more.workers.filter((w) => w === -1)).toHaveLength(MAX_CONNECTIONS - onFirst);
      } finally {
        for (const s of more.admitted) s.destroy();
      }
      return;
    } finally {
      for (const s of held.admitted) s.destroy();
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error('the kernel sent every connection to one worker three rounds in a row');
}, 40_000);
