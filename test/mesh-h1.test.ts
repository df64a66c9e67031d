import { connect as tlsConnect } from 'node:tls';
import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { metric } from './helpers/admin-metric.js';

/**
 * HTTP/1.1 between sidecars over pooled mTLS connections (protocol.meshHttp1 'h1'): what
 * travels, the pool's bound, the inbound side's checks. The rest of the data path runs
 * on this transport too with WREN_TEST_MESH_HTTP1=h1 (docs/configuration.md).
 */
const pki = testPki();
const foreign = testPki();
const BOUND = 3;
/** WREN_TEST_MESH_HTTP1=mux runs this suite on the multiplexed transport (its streams are the pool's connections). */
const MUX = process.env['WREN_TEST_MESH_HTTP1'] === 'mux';
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: MUX ? 'mux' : 'h1', meshHttp1MaxConnectionsPerPeer: BOUND } },
    // The wait for a free connection is bounded by the connect timeout (1 s by default); the
    // fourth wave below waits about 500 ms on a quiet machine, and a CI run's parallel suites
    // once stretched that past 1 s (503). 5 s keeps the test about the bound, not the machine.
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }], { policy: { timeouts: { connectMs: '5s' } } })],
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

/** One HTTP/1.1 request written by hand on an mTLS connection to the server's inbound port (ALPN http/1.1). */
function rawH1(opts: { key?: string; cert?: string; ca?: string }, head: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false, ...opts });
    let got = '';
    socket.on('data', (d) => {
      got += d.toString('latin1');
      // A whole response: the JSON body of /echo, or any body framed by a Content-Length.
      const cl = /content-length: (\d+)\r\n/i.exec(got);
      const at = got.indexOf('\r\n\r\n');
      if (/\r\n0\r\n\r\n$/.test(got) || (cl && at >= 0 && got.length - at - 4 >= Number(cl[1]))) {
        resolve(got);
        socket.destroy();
      }
    });
    socket.once('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    socket.once('close', () => resolve(got === '' ? 'closed' : got));
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'http/1.1') resolve(`alpn:${socket.alpnProtocol}`);
      socket.write(head);
    });
  });
}

test('HTTP/1.1 crosses as HTTP/1.1 on at most meshHttp1MaxConnectionsPerPeer mTLS connections; excess requests wait for one', async () => {
  const before = await metric(client, /wren_peer_connections_total\{kind="mtls"\} (\d+)/);
  // 4x the bound at once, each held 150 ms by the app: one exchange per connection at a time.
  const all = await Promise.all(Array.from({ length: 4 * BOUND }, () => get('/slow?ms=150')));
  expect(all.map((r) => r.status)).toEqual(Array(4 * BOUND).fill(200));
  // HTTP/2 would have opened one connection; an unbounded pool one per request.
  // mux: the BOUND virtual connections share one mTLS connection.
  expect((await metric(client, /wren_peer_connections_total\{kind="mtls"\} (\d+)/)) - before).toBe(MUX ? 1 : BOUND);
  // The bound fired (requests waited for a connection), and says so.
  expect(await metric(client, /wren_limit_exceeded_total\{direction="outbound",limit="mesh-http1-connections-per-peer"\} (\d+)/)).toBeGreaterThan(0);
  // The peer's caller identity came from the mTLS handshake (XFCC), and the mesh headers did not reach the app.
  const echo = JSON.parse((await get('/echo')).body) as { headers: Record<string, string>; httpVersion: string };
  expect(echo.headers['x-forwarded-client-cert']).toContain('URI=spiffe://cluster.local/ns/default/sa/client');
  expect(Object.keys(echo.headers).filter((k) => k.startsWith('wren-'))).toEqual([]);
});

test('mesh headers from the app are stripped: it cannot pick the target port or forge XFCC over the HTTP/1.1 transport', async () => {
  const r = await get('/echo', { 'wren-target-port': '1', 'wren-orig-proto': 'HTTP/2', 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/default/sa/admin' });
  expect(r.status).toBe(200);
  const echo = JSON.parse(r.body) as { headers: Record<string, string>; httpVersion: string };
  expect(echo.httpVersion).toBe('1.1');
  expect(echo.headers['x-forwarded-client-cert']).not.toContain('sa/admin');
  expect(echo.headers['x-forwarded-client-cert']).toContain('URI=spiffe://cluster.local/ns/default/sa/client');
});

test('the inbound port serves HTTP/1.1 (ALPN http/1.1) to a mesh peer, through the mTLS stack with its identity', async () => {
  const m = pki.issue('default', 'caller');
  const reply = await rawH1({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem }, `GET /echo HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`);
  expect(reply).toMatch(/^HTTP\/1\.1 200/);
  expect(reply).toContain('URI=spiffe://cluster.local/ns/default/sa/caller');
  // The target port is validated exactly as for HTTP/2: a reserved or malformed one is refused.
  for (const port of ['15006', 'abc', '']) {
    const bad = await rawH1({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem }, `GET /echo HTTP/1.1\r\nhost: web\r\nwren-target-port: ${port}\r\n\r\n`);
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(bad).not.toContain('"name":"web"');
  }
});

test('HTTP/1.1 from a peer without a valid mesh certificate is refused at the handshake', async () => {
  const head = `GET /echo HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\n\r\n`;
  const f = foreign.issue('default', 'client');
  for (const opts of [{}, { key: f.keyPem, cert: f.certChainPem }]) {
    const reply = await rawH1(opts, head);
    expect(reply).toMatch(/^(error:|closed)/);
    expect(reply).not.toContain('HTTP/1.1 200');
  }
});

test('HTTP/2 from the app keeps the HTTP/2 session (one connection, not the HTTP/1.1 pool)', async () => {
  const h2app = await fakeH2cApp('h2web');
  const before = await metric(client, /wren_peer_connections_total\{kind="mtls"\} (\d+)/);
  const svc = meshService('h2web', 80, [{ appPort: h2app.port, proxy: server }]);
  client.applySnapshot({ version: '2', source: 'test', services: [meshService('web', 80, [{ appPort: app.port, proxy: server }]), svc] });
  try {
    const s = h2connect(`http://127.0.0.1:${client.outboundPort}`);
    const status = await new Promise<number>((resolve, reject) => {
      const req = s.request({ ':path': '/name', ':authority': 'h2web' });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    s.close();
    expect(status).toBe(200);
    // The HTTP/2 session to the peer (the HTTP/1.1 pool's connections do not carry HTTP/2).
    expect((await metric(client, /wren_peer_connections_total\{kind="mtls"\} (\d+)/)) - before).toBe(1);
  } finally {
    await h2app.close();
  }
});
