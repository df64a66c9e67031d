import { createServer } from 'node:http';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeH2cApp, fakeTcpApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import type { Duplex } from 'node:stream';
import type { Proxy } from '../proxy/proxy.js';

/**
 * A mesh peer's CONNECT stream (the opaque TCP tunnel between sidecars) to a port this
 * workload has not declared opaque is sniffed at the inbound like a plaintext connection:
 * HTTP in it goes through the mTLS inbound stack (XFCC from the session's peer, request
 * id, authorization), as Istio and Linkerd parse traffic to a non-opaque port whatever the
 * peer claims. Before: any workload with a mesh certificate (e.g. a compromised pod)
 * could write raw HTTP with a forged X-Forwarded-Client-Cert and the app received it.
 * Non-HTTP bytes, and silence until the detection timeout, are still spliced.
 */
const pki = testPki();
let server: Proxy, opaqueServer: Proxy;
let appPort = 0;
let appClose: () => Promise<void>;
let tcpApp: FakeApp, h2App: FakeApp;
const seen: { xfcc: string | undefined; rid: string | undefined; xff: string | undefined }[] = [];

beforeAll(async () => {
  const app = createServer((req, res) => {
    seen.push({ xfcc: req.headers['x-forwarded-client-cert'] as string | undefined, rid: req.headers['x-request-id'] as string | undefined, xff: req.headers['x-forwarded-for'] as string | undefined });
    res.end('ok');
  });
  const l = await listenOnLoopback(app);
  appPort = l.port;
  appClose = l.close;
  tcpApp = await fakeTcpApp('hello\n');
  h2App = await fakeH2cApp('h2web');
  server = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { detectTimeoutMs: 300 } } });
  opaqueServer = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { detectTimeoutMs: 300, opaquePorts: [appPort] } } });
});

afterAll(async () => {
  await Promise.all([server.close(), opaqueServer.close()]);
  await appClose();
  await tcpApp.close();
  await h2App.close();
});

const FORGED = 'By=spiffe://cluster.local/ns/default/sa/web;URI=spiffe://cluster.local/ns/default/sa/admin';

function mallory(p: Proxy): ClientHttp2Session {
  const m = pki.issue('default', 'mallory');
  const s = h2connect(`https://127.0.0.1:${p.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  return s;
}

/** Opens a CONNECT to `port`, writes `data`, and collects what comes back until `until` matches, the stream closes, or 8 s. */
async function tunnel(p: Proxy, port: number, data: string, until: (got: string) => boolean): Promise<{ status: number; got: string }> {
  const s = mallory(p);
  const st = s.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${port}`, 'wren-target-port': String(port) });
  st.on('error', () => undefined);
  if (data) st.write(data);
  let got = '';
  let status = 0;
  st.on('response', (h) => (status = Number(h[':status'])));
  await new Promise<void>((r) => {
    const t = setTimeout(r, 8000);
    const done = () => {
      clearTimeout(t);
      r();
    };
    st.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (until(got)) done();
    });
    st.on('close', done);
  });
  s.destroy();
  return { status, got };
}

test('raw HTTP in a CONNECT to a non-opaque port is parsed: the app gets the peer session XFCC and a request id, never the forged XFCC', async () => {
  const before = seen.length;
  const r = await tunnel(server, appPort, `GET /admin HTTP/1.1\r\nHost: web\r\nX-Forwarded-Client-Cert: ${FORGED}\r\n\r\n`, (g) => g.endsWith('ok'));

  expect(r.status).toBe(200);
  expect(r.got).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/);
  const now = seen.slice(before);
  expect(now).toHaveLength(1);
  expect(now[0].xfcc).toContain('URI=spiffe://cluster.local/ns/default/sa/mallory');
  expect(now[0].xfcc).not.toContain('sa/admin');
  expect(now[0].rid).toBeTruthy();
  // The caller's address is the session peer's, as for a request on the session itself.
  expect(now[0].xff).toContain('127.0.0.1');
});

test('non-HTTP bytes in a CONNECT to a non-opaque port are spliced at once (no detection wait)', async () => {
  const t0 = Date.now();
  const r = await tunnel(server, tcpApp.port, 'ping\n', (g) => g.includes('ping\n'));
  expect(r.status).toBe(200);
  expect(r.got).toBe('hello\nping\n');
  expect(Date.now() - t0).toBeLessThan(2000);
});

test('a silent client (server-speaks-first) on a non-opaque port is spliced after the detection timeout', async () => {
  const r = await tunnel(server, tcpApp.port, '', (g) => g.includes('hello\n'));
  expect(r.status).toBe(200);
  expect(r.got).toBe('hello\n');
});

test('a port this workload declares opaque (protocol.opaquePorts) is spliced unparsed, as configured', async () => {
  const before = seen.length;
  const r = await tunnel(opaqueServer, appPort, 'GET /x HTTP/1.1\r\nHost: web\r\n\r\n', (g) => g.endsWith('ok'));
  expect(r.status).toBe(200);
  const now = seen.slice(before);
  expect(now).toHaveLength(1);
  // Not parsed by the sidecar: no request id, no XFCC added.
  expect(now[0].rid).toBeUndefined();
  expect(now[0].xfcc).toBeUndefined();
});

test('h2c (prior knowledge) in a CONNECT to a non-opaque port is parsed too: forged XFCC replaced by the peer session identity', async () => {
  const outer = mallory(server);
  const st = outer.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${h2App.port}`, 'wren-target-port': String(h2App.port) });
  st.on('error', () => undefined);
  const inner = h2connect('http://web', { createConnection: () => st as unknown as Duplex });
  inner.on('error', () => undefined);
  const req = inner.request({ ':path': '/echo', ':authority': 'web', 'x-forwarded-client-cert': FORGED, 'wren-target-port': '1' });
  req.on('error', () => undefined);
  let body = '';
  req.on('data', (d: Buffer) => (body += d.toString()));
  let status = 0;
  req.on('response', (h) => (status = Number(h[':status'])));
  await new Promise((r) => req.on('close', r));
  inner.destroy();
  outer.destroy();
  expect(status).toBe(200);
  const echoed = JSON.parse(body) as { headers: Record<string, string> };
  expect(echoed.headers['x-forwarded-client-cert']).toContain('URI=spiffe://cluster.local/ns/default/sa/mallory');
  expect(echoed.headers['x-forwarded-client-cert']).not.toContain('sa/admin');
  expect(echoed.headers['x-request-id']).toBeTruthy();
});
