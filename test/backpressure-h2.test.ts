import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki } from './helpers/pki.js';
import { assertBuilt, startProxyProcess, type ProxyProcess } from './helpers/proxy-process.js';

/**
 * Issue 12 ("Tail and memory"): a slow client or a slow app never makes a sidecar's memory
 * grow beyond a configured bound. 1 GB goes each way over HTTP/2 through a real pair of
 * sidecars (each its own `wren proxy` process, so its RSS is its own): an upload to an app
 * that never reads, and a download to a client that never reads. What stops the sender is
 * HTTP/2 flow control on every hop (RFC 9113 §5.2): a sidecar reads a stream only as fast
 * as the next hop takes it, so it never acknowledges (WINDOW_UPDATE) more than its
 * configured windows (`limits.http2InitialStreamWindowBytes`, `...ConnectionWindowBytes`)
 * ahead of what it has passed on. The bytes the sender gets out therefore stop near two
 * windows (outbound + inbound) plus the far end's own window and a few stream buffers, and
 * the sidecars' RSS stays flat while the sender waits.
 */
const pki = testPki();
const GB = 1 << 30;
const CHUNK = Buffer.alloc(64 * 1024, 120);
const STREAM_WINDOW = 256 * 1024;
const CONNECTION_WINDOW = 1024 * 1024;
const MAX_STREAMS = 64;
/** Node's HTTP/2 default window for the app and the client (neither sets one): 65,535 bytes. */
const PEER_DEFAULT_WINDOW = 65_535;
/** Stream buffers between the hops (readable/writable high-water marks of 16 KiB, a frame in flight), per stream and in all. */
const STREAM_SLACK = 256 * 1024;
const SLACK = 512 * 1024;
/** How much a sidecar's RSS may grow while 1 GB waits behind it. */
const RSS_GROWTH_MB = 40;

let dir: string;
let app: Http2Server;
let appPort = 0;
let inbound: ProxyProcess, outbound: ProxyProcess;
/** Bytes of the current download the app got out (write callbacks). */
let appSent = 0;
const held: ServerHttp2Stream[] = [];

beforeAll(async () => {
  assertBuilt();
  dir = await mkdtemp(join(tmpdir(), 'wren-backpressure-'));
  app = createH2cServer();
  app.on('stream', (stream, headers) => {
    held.push(stream);
    stream.on('error', () => undefined);
    // Uploads are never read (no 'data' listener, never resumed) nor answered.
    if (headers[':path'] !== '/download') return;
    stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
    const pump = (): void => {
      while (appSent < GB && !stream.destroyed) {
        const ok = stream.write(CHUNK, (err) => err || (appSent += CHUNK.length));
        if (!ok) return void stream.once('drain', pump);
      }
    };
    pump();
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as import('node:net').AddressInfo).port;
  const limits = { http2InitialStreamWindowBytes: STREAM_WINDOW, http2InitialConnectionWindowBytes: CONNECTION_WINDOW, maxConcurrentStreams: MAX_STREAMS };
  inbound = await startProxyProcess(pki, dir, 'web', { limits });
  outbound = await startProxyProcess(pki, dir, 'client', {
    limits,
    mesh: { services: [{ name: 'app', ports: [{ port: 80, protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: appPort, proxyPort: inbound.inboundPort, identity: inbound.spiffeId }] }] }] },
  });
}, 30_000);

afterAll(async () => {
  for (const s of held) s.destroy();
  await Promise.all([outbound?.close(), inbound?.close()]);
  await new Promise((r) => app?.close(r));
  await rm(dir, { recursive: true, force: true });
});

function client(): ClientHttp2Session {
  const s = h2connect(`http://127.0.0.1:${outbound.outboundPort}`);
  s.on('error', () => undefined);
  return s;
}

/** Resolves once `progress()` has not moved for `quietMs` (the sender is blocked), or after `maxMs`. */
async function stalled(progress: () => number, quietMs: number, maxMs: number): Promise<number> {
  const end = Date.now() + maxMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < end) {
    const now = progress();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return progress();
}

async function settle(): Promise<{ out: number; in: number }> {
  // Let the sidecars' GC catch up before reading RSS as a baseline.
  await new Promise((r) => setTimeout(r, 300));
  return { out: outbound.rssMb(), in: inbound.rssMb() };
}

/**
 * Per stream: the outbound's and the inbound's stream windows, the far end's own window and
 * the stream buffers between. Not the connection window: Node acknowledges that as data
 * arrives (node_http2.cc, OnDataChunkReceived), so only stream windows hold unread bytes.
 */
function expectBound(moved: number, streams: number): void {
  expect(moved).toBeLessThanOrEqual(streams * (2 * STREAM_WINDOW + PEER_DEFAULT_WINDOW + STREAM_SLACK) + SLACK);
}

/**
 * After a transfer stalled having moved `moved` bytes on `streams` streams: the sidecars' RSS
 * is read (before `session` goes), then something moved, no more than the windows allow
 * (expectBound), and neither sidecar grew by RSS_GROWTH_MB over `idle`.
 */
function expectHeld(session: ClientHttp2Session, moved: number, streams: number, idle: { out: number; in: number }): void {
  const rss = { out: outbound.rssMb(), in: inbound.rssMb() };
  session.destroy();
  expect(moved).toBeGreaterThan(0);
  expectBound(moved, streams);
  expect(rss.out - idle.out).toBeLessThan(RSS_GROWTH_MB);
  expect(rss.in - idle.in).toBeLessThan(RSS_GROWTH_MB);
}

test('1 GB uploaded to an app that never reads: the client stops after the windows; the sidecars stay flat', async () => {
  const idle = await settle();
  const session = client();
  const stream = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'app', 'content-type': 'application/octet-stream' });
  stream.on('error', () => undefined);
  let sent = 0;
  const pump = (): void => {
    while (sent < GB && !stream.destroyed) {
      const ok = stream.write(CHUNK, (err) => err || (sent += CHUNK.length));
      if (!ok) return void stream.once('drain', pump);
    }
  };
  pump();
  const moved = await stalled(() => sent, 2000, 20_000);
  // Something flowed (the path works), far less than the gigabyte, and no more than the windows allow.
  expectHeld(session, moved, 1, idle);
}, 40_000);

test('1 GB downloaded by a client that never reads: the app stops after the windows; the sidecars stay flat', async () => {
  const idle = await settle();
  appSent = 0;
  const session = client();
  const stream = session.request({ ':method': 'GET', ':path': '/download', ':authority': 'app' });
  stream.on('error', () => undefined);
  const status = await new Promise<number>((r) => stream.once('response', (h) => r(Number(h[':status']))));
  // Never read: no 'data' listener, paused.
  stream.pause();
  expect(status).toBe(200);
  const moved = await stalled(() => appSent, 2000, 20_000);
  expectHeld(session, moved, 1, idle);
}, 40_000);

test('16 uploads at once on one connection: each is held to its stream windows', async () => {
  const idle = await settle();
  const session = client();
  const streams = 16;
  let sent = 0;
  for (let i = 0; i < streams; i++) {
    const stream = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'app' });
    stream.on('error', () => undefined);
    let mine = 0;
    const pump = (): void => {
      while (mine < GB / streams && !stream.destroyed) {
        const ok = stream.write(CHUNK, (err) => err || ((mine += CHUNK.length), (sent += CHUNK.length)));
        if (!ok) return void stream.once('drain', pump);
      }
    };
    pump();
  }
  const moved = await stalled(() => sent, 2000, 20_000);
  expectHeld(session, moved, streams, idle);
}, 40_000);

test('the outbound listener caps streams per connection (limits.maxConcurrentStreams), so a connection holds at most that many stream windows', async () => {
  const session = client();
  await new Promise<void>((r) => session.once('remoteSettings', () => r()));
  const settings = { ...session.remoteSettings };
  session.destroy();
  expect(settings).toMatchObject({ maxConcurrentStreams: MAX_STREAMS, initialWindowSize: STREAM_WINDOW });
});
