import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { meshMuxPool } from './mesh-mux-pool.js';
import { TlsIdentity } from '../tls/tls-identity.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { FakeClock } from '../../common/clock.js';
import { testPki } from '../../test/helpers/pki.js';
import { MuxSession, MUX_ALPN, MUX_ALPN_2 } from '../mux/mux-session.js';
import { controlFrame, FrameType } from '../mux/frame.js';

const pki = testPki();

function request(): ProxyRequest {
  return {
    method: 'GET', scheme: 'http', authority: 'web', path: '/', headers: {}, body: null, trailers: () => undefined,
    origProto: 'HTTP/1.1', source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
  };
}

test("a session whose TLS handshake is not done at the connect timeout is destroyed: its requests fail with CONNECT_TIMEOUT and the next one connects again", async () => {
  // Accepts TCP and never answers the handshake (a wedged peer).
  const accepted: Socket[] = [];
  const server = createNetServer((s) => void accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const clock = new FakeClock();
  const tls = new TlsIdentity(pki.issue('default', 'client'));
  const peer = pki.issue('default', 'web').spiffeId;
  // The virtual connections' own connect timers are real ones (the socket's): a minute, far off.
  const pool = meshMuxPool({ tls, maxConnectionsPerPeer: 8, connectTimeoutMs: 60_000, maxHeaderBytes: 16384, idleTimeoutMs: 0, windowBytes: 1 << 20, connectionWindowBytes: 1 << 20, clock });
  try {
    const first = pool.request('127.0.0.1', port, request(), {}, undefined, 0, peer).catch((e: unknown) => e);
    const joined = pool.request('127.0.0.1', port, request(), {}, undefined, 0, peer).catch((e: unknown) => e);
    for (let i = 0; i < 50 && accepted.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(accepted.length).toBe(1);
    clock.advance(59_999);
    await new Promise((r) => setTimeout(r, 20));
    expect(accepted[0].destroyed).toBe(false);
    clock.advance(1);
    for (const r of [await first, await joined]) expect((r as ProxyError).code).toBe('CONNECT_TIMEOUT');
    // A new session: the stuck one is not joined again.
    const next = pool.request('127.0.0.1', port, request(), {}, undefined, 0, peer).catch((e: unknown) => e);
    for (let i = 0; i < 50 && accepted.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(accepted.length).toBe(2);
    clock.advance(60_000);
    expect(((await next) as ProxyError).code).toBe('CONNECT_TIMEOUT');
  } finally {
    pool.destroy();
    for (const s of accepted) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

/**
 * A peer sidecar that takes the session and never ends its side (allowHalfOpen, reads and
 * answers nothing): how long after the pool ends the session does it destroy the connection?
 * The peer learns it by writing (a window grant every 20 ms), as a socket closed after its
 * FIN sends nothing more until it gets bytes.
 */
async function endedSessionLife(closeTimeoutMs: number, waitMs: number): Promise<number | null> {
  const m = pki.issue('default', 'web');
  const conns: TLSSocket[] = [];
  let endAt = 0;
  let closedAfter: number | null = null;
  const server = createTlsServer({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: [MUX_ALPN], allowHalfOpen: true }, (s) => {
    conns.push(s);
    s.on('error', () => undefined);
    s.resume();
    s.once('end', () => (endAt = Date.now()));
    const grants = setInterval(() => s.write(controlFrame(FrameType.Window, 0, 1)), 20);
    s.once('close', () => {
      clearInterval(grants);
      closedAfter = Date.now() - endAt;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const pool = meshMuxPool({ tls: new TlsIdentity(pki.issue('default', 'client')), maxConnectionsPerPeer: 8, connectTimeoutMs: 60_000, maxHeaderBytes: 16384, idleTimeoutMs: 0, windowBytes: 1 << 20, connectionWindowBytes: 1 << 20, closeTimeoutMs });
  try {
    const pending = pool.request('127.0.0.1', port, request(), {}, undefined, 0, m.spiffeId).catch((e: unknown) => e);
    for (let i = 0; i < 200 && conns.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(conns.length).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    // The pool closes: the session's last stream goes, then the session ends its side.
    pool.destroy();
    await pending;
    for (let i = 0; i < 200 && endAt === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(endAt).toBeGreaterThan(0);
    for (let t = 0; t < waitMs && closedAfter === null; t += 10) await new Promise((r) => setTimeout(r, 10));
    return closedAfter;
  } finally {
    for (const s of conns) s.destroy();
    await new Promise((r) => server.close(r));
  }
}

test('the close timeout of its sessions is the one given (limits.delayedCloseTimeoutMs), 0 for none', async () => {
  // 150 ms: destroyed well before the sessions' default 1 s.
  const after = await endedSessionLife(150, 3000);
  expect(after).not.toBeNull();
  expect(after!).toBeLessThan(800);
  // 0: no bound, the peer's side stays open.
  expect(await endedSessionLife(0, 1500)).toBeNull();
}, 20_000);

/**
 * A peer's inbound that speaks the multiplexer with the ALPN ids given (the release before
 * wren-mux/2 listed only /1): each virtual connection answers its requests with `200 ok`;
 * PINGs are known only on /2, as there (on /1 a PING is malformed and closes the connection).
 */
async function muxPeer(alpn: string[]): Promise<{ port: number; spiffeId: string; conns: TLSSocket[]; sessions: MuxSession[]; closes: (string | null)[]; close: () => Promise<void> }> {
  const m = pki.issue('default', 'web');
  const conns: TLSSocket[] = [];
  const sessions: MuxSession[] = [];
  const closes: (string | null)[] = [];
  const server = createTlsServer({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: alpn }, (s) => {
    conns.push(s);
    s.on('error', () => undefined);
    const session = new MuxSession(s, {
      client: false, windowBytes: 1 << 20, connectionWindowBytes: 1 << 20, maxStreams: 100,
      onClose: (why) => closes.push(why),
      onStream: (st) => {
        st.on('error', () => undefined);
        let head = '';
        st.on('data', (d: Buffer) => {
          head += d.toString('latin1');
          while (head.includes('\r\n\r\n')) {
            head = head.slice(head.indexOf('\r\n\r\n') + 4);
            st.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
          }
        });
      },
    });
    if (s.alpnProtocol === MUX_ALPN_2) session.usePing();
    sessions.push(session);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port, spiffeId: m.spiffeId, conns, sessions, closes,
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

async function statusOf(p: Promise<ProxyResponse>): Promise<number> {
  const res = await p;
  for await (const _ of res.body ?? []) void _;
  return res.status;
}

describe('keepalive (limits.peerKeepalive) and the ALPN version', () => {
  const keepalive = { intervalMs: 40, timeoutMs: 30 };
  const poolFor = (timeouts: { n: number }) =>
    meshMuxPool({ tls: new TlsIdentity(pki.issue('default', 'client')), maxConnectionsPerPeer: 8, connectTimeoutMs: 5000, maxHeaderBytes: 16384, idleTimeoutMs: 0, windowBytes: 1 << 20, connectionWindowBytes: 1 << 20, keepalive, onLimit: (limit) => { if (limit === 'peer-keepalive-timeout') timeouts.n++; } });

  test('to a peer of this release: wren-mux/2, PINGed while idle, answered, the one session kept', async () => {
    const peer = await muxPeer([MUX_ALPN_2, MUX_ALPN]);
    const timeouts = { n: 0 };
    const pool = poolFor(timeouts);
    try {
      expect(await statusOf(pool.request('127.0.0.1', peer.port, request(), {}, undefined, 0, peer.spiffeId))).toBe(200);
      expect(peer.conns.map((c) => c.alpnProtocol)).toEqual([MUX_ALPN_2]);
      const read = peer.conns[0].bytesRead;
      await new Promise((r) => setTimeout(r, 400));
      // PINGs (14 bytes each) arrived while no request was made.
      expect(peer.conns[0].bytesRead - read).toBeGreaterThanOrEqual(3 * 14);
      expect(await statusOf(pool.request('127.0.0.1', peer.port, request(), {}, undefined, 0, peer.spiffeId))).toBe(200);
      expect(peer.conns).toHaveLength(1);
      expect(peer.closes).toEqual([]);
      expect(timeouts.n).toBe(0);
    } finally {
      pool.destroy();
      await peer.close();
    }
  });

  test('to a peer of the release before (wren-mux/1 only): /1 chosen, no PING sent, its requests served on the one session', async () => {
    const peer = await muxPeer([MUX_ALPN]);
    const timeouts = { n: 0 };
    const pool = poolFor(timeouts);
    try {
      for (let i = 0; i < 4; i++) {
        expect(await statusOf(pool.request('127.0.0.1', peer.port, request(), {}, undefined, 0, peer.spiffeId))).toBe(200);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(peer.conns.map((c) => c.alpnProtocol)).toEqual([MUX_ALPN]);
      // Idle: not a byte (a PING would close the connection as malformed).
      const read = peer.conns[0].bytesRead;
      await new Promise((r) => setTimeout(r, 300));
      expect(peer.conns[0].bytesRead).toBe(read);
      expect(peer.closes).toEqual([]);
      expect(timeouts.n).toBe(0);
    } finally {
      pool.destroy();
      await peer.close();
    }
  });
});
