import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { seededRandom, systemClock } from '../common/clock.js';
import { silentLogger } from '../common/logger.js';
import { generateIssuer } from '../control-plane/identity/issuer.js';
import { ControlPlane, DEFAULT_GRPC_CONNECTION_LIMITS, type GrpcConnectionLimits } from '../control-plane/server.js';
import { DirSource } from '../control-plane/sources/dir-source.js';
import { startProxy, waitFor } from './control-plane-harness.js';

/**
 * The control plane's gRPC port (15010: discovery and Certify, TLS, no client certificate
 * needed to connect) bounds what one connection holds and for how long, as istiod does
 * (keepalive 30 s / 10 s, max connection age 30 min + 10 s grace): grpc-js's defaults kept
 * a connection that never made a call, and a call that never sent its message, for ever
 * (docs/security.md, "The control plane's gRPC connections"). Real TLS and HTTP/2 on
 * loopback; a client without a certificate, as anyone who can reach the port.
 */
const TD = 'cluster.local';
let dir: string;
const planes: ControlPlane[] = [];
const sessions: ClientHttp2Session[] = [];

async function start(limits: Partial<GrpcConnectionLimits>, transport: 'tls' | 'insecure' = 'tls'): Promise<ControlPlane> {
  const cp = await ControlPlane.start({
    listen: '127.0.0.1:0', admin: null, trustDomain: TD, clock: systemClock, random: seededRandom(7), logger: silentLogger,
    source: (ctx) => new DirSource({ ...ctx, dir }),
    identity: { issuer: generateIssuer(TD), authenticator: null },
    transport,
    grpcConnections: limits,
  });
  planes.push(cp);
  await cp.whenReady();
  return cp;
}

/** An HTTP/2 connection over TLS without a client certificate, once its SETTINGS exchange is done. */
async function open(cp: ControlPlane): Promise<ClientHttp2Session> {
  const s = connect(`https://127.0.0.1:${cp.grpcPort}`, { rejectUnauthorized: false });
  s.on('error', () => undefined);
  sessions.push(s);
  await new Promise<void>((resolve) => s.once('remoteSettings', () => resolve()));
  return s;
}

/** A Certify call whose request message never comes (grpc-js waits for it). */
function pendingCertify(s: ClientHttp2Session): ClientHttp2Stream {
  const st = s.request({ ':method': 'POST', ':path': '/wren.identity.v1.Identity/Certify', 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
  st.on('error', () => undefined);
  return st;
}

const closed = (s: ClientHttp2Session): Promise<void> => new Promise((resolve) => (s.closed || s.destroyed ? resolve() : s.once('close', () => resolve())));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wren-cp-grpc-limits-'));
});

afterAll(async () => {
  for (const s of sessions) s.destroy();
  for (const cp of planes) await cp.kill();
  await rm(dir, { recursive: true, force: true });
});

test('the defaults are istiod\'s (keepalive 30 s / 10 s, age 30 min + 10 s grace), with an idle close and a per-connection call limit', () => {
  expect(DEFAULT_GRPC_CONNECTION_LIMITS).toEqual({ keepaliveMs: 30_000, keepaliveTimeoutMs: 10_000, maxIdleMs: 300_000, maxAgeMs: 1_800_000, maxAgeGraceMs: 10_000, maxConcurrentStreams: 100 });
});

test('a connection that never makes a call is closed once idle for maxIdleMs', async () => {
  const cp = await start({ maxIdleMs: 300 });
  const s = await open(cp);
  await closed(s);
  expect(s.closed || s.destroyed).toBe(true);
});

test('calls that never send their message end with their connection at maxAgeMs + maxAgeGraceMs, and one connection holds at most maxConcurrentStreams', async () => {
  const cp = await start({ maxAgeMs: 500, maxAgeGraceMs: 200 });
  const s = await open(cp);
  expect(s.remoteSettings.maxConcurrentStreams).toBe(DEFAULT_GRPC_CONNECTION_LIMITS.maxConcurrentStreams);
  const calls = [pendingCertify(s), pendingCertify(s)];
  await Promise.all(calls.map((c) => new Promise((resolve) => (c.closed ? resolve(null) : c.once('close', resolve)))));
  await closed(s);
  expect(calls.every((c) => c.closed)).toBe(true);
});

test('the server pings a quiet connection every keepaliveMs (a peer gone without a FIN is found)', async () => {
  const cp = await start({ keepaliveMs: 200, keepaliveTimeoutMs: 5_000 });
  const s = await open(cp);
  // node:http2 answers the PING itself; it emits 'ping' for each one received.
  await new Promise((resolve) => s.once('ping', resolve));
  expect(s.closed).toBe(false);
});

test('a proxy whose discovery stream is cut at max age reconnects and keeps its config', async () => {
  const cp = await start({ maxAgeMs: 300, maxAgeGraceMs: 100 }, 'insecure');
  const p = startProxy(`127.0.0.1:${cp.grpcPort}`, { backoff: { initialMs: 20, maxMs: 100 } });
  try {
    await p.client.onFirstSnapshot();
    await waitFor(() => p.client.stats.reconnects >= 2 && p.client.connected, 'two reconnects after max age');
    expect(p.client.current()).not.toBeNull();
    expect(p.client.stats.rejected).toBe(0);
  } finally {
    await p.client.stop();
  }
});
