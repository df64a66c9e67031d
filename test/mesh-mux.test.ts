import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { FrameType, frameHeader } from '../proxy/mux/frame.js';
import { MUX_ALPN } from '../proxy/mux/mux-session.js';
import { metric } from './helpers/admin-metric.js';
import { rawHead, statusLine } from './helpers/raw-http.js';
import { listenOnLoopback } from './helpers/fake-app.js';

/**
 * HTTP/1.1 between sidecars on the mesh multiplexer (protocol.meshHttp1 'mux', ALPN
 * wren-mux/1): virtual HTTP/1.1 connections on one mTLS connection per peer. The whole
 * data-path suite also runs on it with WREN_TEST_MESH_HTTP1=mux.
 */
const pki = testPki();
const foreign = testPki();
const BOUND = 8;
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: 'mux', meshHttp1MaxConnectionsPerPeer: BOUND } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web', ...headers } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('concurrent HTTP/1.1 requests to a peer share one mTLS connection, with the caller identity and no mesh header reaching the app', async () => {
  const before = await metric(client, /wren_peer_connections_total\{kind="mtls"\} (\d+)/);
  const all = await Promise.all(Array.from({ length: 3 * BOUND }, (_, i) => get(`/slow?ms=${50 + (i % 5) * 20}`)));
  expect(all.map((r) => r.status)).toEqual(Array(3 * BOUND).fill(200));
  expect((await metric(client, /wren_peer_connections_total\{kind="mtls"\} (\d+)/)) - before).toBe(1);
  // BOUND virtual connections at most: the rest waited, as on the h1 pool.
  expect(await metric(client, /wren_limit_exceeded_total\{direction="outbound",limit="mesh-http1-connections-per-peer"\} (\d+)/)).toBeGreaterThan(0);
  const r = await get('/echo', { 'wren-target-port': '1', 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/default/sa/admin' });
  const echo = JSON.parse(r.body) as { headers: Record<string, string>; httpVersion: string };
  expect(echo.httpVersion).toBe('1.1');
  expect(echo.headers['x-forwarded-client-cert']).toContain('URI=spiffe://cluster.local/ns/default/sa/client');
  expect(echo.headers['x-forwarded-client-cert']).not.toContain('sa/admin');
  expect(Object.keys(echo.headers).filter((k) => k.startsWith('wren-'))).toEqual([]);
});

/** One request written by hand as a mux stream on an mTLS connection to the server's inbound port. */
function rawMux(opts: { key?: string; cert?: string; ca?: string }, head: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: [MUX_ALPN], rejectUnauthorized: false, ...opts });
    let got = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // DATA frames of stream 1: their payloads are the response.
      let text = '';
      for (let at = 0; at + 10 <= got.length; ) {
        const len = got.readUInt32BE(at);
        if (got[at + 4] === FrameType.Data && got.readUInt32BE(at + 6) === 1) text += got.toString('latin1', at + 10, at + 10 + len);
        at += 10 + len;
      }
      const cl = /content-length: (\d+)\r\n/i.exec(text);
      const end = text.indexOf('\r\n\r\n');
      if (cl && end >= 0 && text.length - end - 4 >= Number(cl[1])) {
        resolve(text);
        socket.destroy();
      }
    });
    socket.once('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    socket.once('close', () => resolve('closed'));
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== MUX_ALPN) return resolve(`alpn:${socket.alpnProtocol}`);
      const body = Buffer.from(head, 'latin1');
      socket.write(Buffer.concat([frameHeader(FrameType.Data, 0, 1, body.length), body]));
    });
  });
}

test('the inbound port serves mux streams to a mesh peer through the mTLS stack, with the peer identity of the handshake', async () => {
  const m = pki.issue('default', 'caller');
  const reply = await rawMux({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem }, `GET /echo HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`);
  expect(reply).toMatch(/^HTTP\/1\.1 200/);
  expect(reply).toContain('URI=spiffe://cluster.local/ns/default/sa/caller');
  // The target port is validated as on the other transports.
  const bad = await rawMux({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem }, `GET /echo HTTP/1.1\r\nhost: web\r\nwren-target-port: 15006\r\n\r\n`);
  expect(bad).toMatch(/^HTTP\/1\.1 400 /);
});

test('mux from a peer without a valid mesh certificate is refused at the handshake', async () => {
  const head = `GET /echo HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\n\r\n`;
  const f = foreign.issue('default', 'client');
  for (const opts of [{}, { key: f.keyPem, cert: f.certChainPem }]) {
    const reply = await rawMux(opts, head);
    expect(reply).toMatch(/^(error:|closed)/);
  }
});

test('a malformed frame closes that peer connection and the listener keeps serving', async () => {
  const m = pki.issue('default', 'caller');
  const closed = await new Promise<string>((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: [MUX_ALPN], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
    socket.on('data', () => undefined);
    socket.once('close', () => resolve('closed'));
    socket.once('error', () => undefined);
    socket.once('secureConnect', () => socket.write(frameHeader(7 as FrameType, 0, 1, 0)));
  });
  expect(closed).toBe('closed');
  expect((await get('/echo')).status).toBe(200);
});

test("requests that open virtual connections during the session's handshake are all answered, bodied ones among bodyless ones", async () => {
  // A request with a body waits for the session's handshake before its first bytes; a bodyless
  // one opened after it writes at once. The peer takes stream ids in the order they first
  // appear on the wire, so the ids must appear in the order the streams were opened, or the
  // bodied request is dropped as one for a closed stream and never answered (mux-session.ts open()).
  const fresh = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: 'mux', meshHttp1MaxConnectionsPerPeer: 64 } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])],
  });
  try {
    const post = 'POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\n' + 'x'.repeat(100);
    const get = 'GET /name HTTP/1.1\r\nHost: web\r\n\r\n';
    const all = await Promise.all(Array.from({ length: 16 }, (_, i) => rawHead(fresh.outboundPort, i % 2 === 0 ? post : get, 5000).then(statusLine)));
    expect(all).toEqual(Array(16).fill('HTTP/1.1 200 OK'));
  } finally {
    await fresh.close();
  }
});

// The same on every transport to a peer (h2 and h1 already gave up after the connect timeout).
test.each(['mux', 'h1', 'h2'])("meshHttp1 %s: a peer session whose TLS handshake never finishes is given up at the connect timeout: the retry connects again and succeeds", async (mode) => {
  // The first TCP connection to the peer is accepted and never answered (a wedged peer, a
  // path that drops silently); later ones reach the server sidecar.
  const held: Socket[] = [];
  let accepted = 0;
  const relay = createNetServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
    if (++accepted === 1) return;
    const u = netConnect(server.inboundPort, '127.0.0.1');
    held.push(u);
    u.on('error', () => s.destroy());
    s.on('error', () => u.destroy());
    s.pipe(u).pipe(s);
  });
  const l = await listenOnLoopback(relay);
  const peer = { inboundPort: l.port, tls: server.tls } as unknown as Proxy;
  const policy = { timeouts: { connectMs: '300ms' }, outlierDetection: { enabled: false } };
  const fresh = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: mode } }, services: [meshService('web', 80, [{ appPort: app.port, proxy: peer }], { policy })] });
  try {
    // The attempt on the stuck connection times out; the retry (a connect failure is always
    // retried) goes on a new connection, where mux's used to join the stuck session again.
    const t0 = Date.now();
    expect(statusLine(await rawHead(fresh.outboundPort, 'GET /name HTTP/1.1\r\nHost: web\r\n\r\n', 5000))).toBe('HTTP/1.1 200 OK');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(accepted).toBe(2);
    expect(statusLine(await rawHead(fresh.outboundPort, 'GET /name HTTP/1.1\r\nHost: web\r\n\r\n', 5000))).toBe('HTTP/1.1 200 OK');
    expect(accepted).toBe(2);
  } finally {
    await fresh.close();
    for (const s of held) s.destroy();
    await l.close();
  }
});
