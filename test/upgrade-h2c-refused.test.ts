import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * h2c is never an upgrade through the mesh (RFC 9113 section 3.1 deprecates it; Envoy
 * strips it from Upgrade): an h2c tunnel switched to behind the sidecar would carry HTTP/2
 * requests its layers never see (XFCC, authorization). Before: a mesh peer's extended
 * CONNECT with `:protocol: h2c` reached the app as `Upgrade: h2c`, and `Upgrade: h2c,
 * websocket` on HTTP/1.1 got past the exact-match check. Now the extended CONNECT is a
 * 400 (the one error table) and on HTTP/1.1 the h2c offer is dropped from the list.
 */
const pki = testPki();
let server: Proxy, client: Proxy;
let appPort = 0;
let appClose: () => Promise<void>;
const heads: string[] = [];

beforeAll(async () => {
  const srv = createNetServer((s: Socket) => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n')) {
        heads.push(buf);
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
      }
    });
    s.on('error', () => undefined);
  });
  const l = await listenOnLoopback(srv);
  appPort = l.port;
  appClose = l.close;
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki, serviceAccount: 'client',
    services: [meshService('web', 80, [{ appPort, proxy: server }], { clusterIPs: ['10.96.0.21'] })],
    originalDst: () => ({ address: '10.96.0.21', port: 80 }),
  });
});

afterAll(async () => {
  await Promise.all([server.close(), client.close()]);
  await appClose();
});

test('an extended CONNECT with :protocol h2c never reaches the app as an h2c upgrade', async () => {
  const m = pki.issue('default', 'mallory');
  const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  await new Promise((r) => s.once('remoteSettings', r));
  let status = -1;
  try {
    const st = s.request({ ':method': 'CONNECT', ':protocol': 'h2c', ':scheme': 'http', ':path': '/x', ':authority': 'web', 'wren-target-port': String(appPort), 'wren-orig-method': 'GET' }, { endStream: false });
    st.on('error', () => undefined);
    status = await new Promise<number>((r) => {
      st.on('response', (h) => r(Number(h[':status'])));
      st.on('close', () => r(-1));
    });
  } catch {
    // refused locally: fine
  }
  await new Promise((r) => setTimeout(r, 200));
  s.destroy();
  expect(heads.join('').toLowerCase()).not.toContain('upgrade: h2c');
  expect(status).toBe(400);
});

test('HTTP/1.1 `Upgrade: h2c, websocket` from the app: only websocket is offered on; h2c never reaches the callee', async () => {
  const before = heads.length;
  const got = await new Promise<string>((resolve) => {
    let buf = '';
    const s = netConnect(client.outboundPort, '127.0.0.1', () =>
      s.write('GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n'),
    );
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n')) s.destroy();
    });
    s.on('close', () => resolve(buf));
    s.on('error', () => resolve(buf));
    setTimeout(() => s.destroy(), 8000);
  });
  const head = heads.slice(before).join('').toLowerCase();
  expect(head).toContain('upgrade: websocket');
  expect(head).not.toContain('h2c');
  expect(got).toMatch(/^HTTP\/1\.1 101/);
});
