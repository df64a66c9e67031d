import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { clientStart, frame, FRAME, FLAG } from './helpers/h2-frames.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';

/**
 * Issue 11 item 7: every listener has a request-headers timeout, an idle connection
 * timeout and a connection cap, each counted in wren_limit_exceeded_total when it fires.
 * Short configured values here; the defaults are 10 s, 1 h and 4096 (docs/security.md).
 */
const pki = testPki();
let proxy: Proxy, app: FakeApp;

beforeAll(async () => {
  app = await fakeApp('web');
  proxy = await startProxy({ pki, serviceAccount: 'web', config: { limits: { requestHeadersTimeoutMs: '300ms', idleConnectionTimeoutMs: '500ms', streamIdleTimeoutMs: '400ms' } } });
}, 20_000);

afterAll(async () => {
  await proxy.close();
  await app.close();
});

async function limitCount(p: Proxy, direction: string, limit: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="${limit}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

/** Resolves with what the server sent and how long the connection stayed open (capped at `maxMs`). */
function held(s: Socket, maxMs: number): Promise<{ ms: number; closed: boolean; data: string }> {
  const t0 = Date.now();
  let data = '';
  s.on('data', (d: Buffer) => (data += d.toString('latin1')));
  s.on('error', () => undefined);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      s.destroy();
      resolve({ ms: Date.now() - t0, closed: false, data });
    }, maxMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve({ ms: Date.now() - t0, closed: true, data });
    });
  });
}

test('an HTTP/1.1 head that never finishes gets 408 and the connection closes', async () => {
  const before = await limitCount(proxy, 'outbound', 'request-headers-timeout');
  const s = netConnect({ host: '127.0.0.1', port: proxy.outboundPort });
  s.once('connect', () => s.write('GET / HTTP/1.1\r\nhost: web\r\nx-slow: '));
  const r = await held(s, 5000);
  expect(r.closed).toBe(true);
  expect(r.data).toMatch(/^HTTP\/1\.1 408 /);
  expect(r.data).toContain('wren-proxy-error: headers-timeout');
  expect(await limitCount(proxy, 'outbound', 'request-headers-timeout')).toBe(before + 1);
});

test('a half-sent HTTP/2 HEADERS frame on the mTLS port: the connection closes', async () => {
  const before = await limitCount(proxy, 'inbound', 'request-headers-timeout');
  const m = pki.issue('default', 'client');
  const s = tlsConnect({ host: '127.0.0.1', port: proxy.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
  s.once('secureConnect', () => {
    const headers = frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, Buffer.alloc(100, 0x82));
    s.write(Buffer.concat([clientStart(), headers.subarray(0, 20)]));
  });
  const r = await held(s, 5000);
  expect(r.closed).toBe(true);
  expect(await limitCount(proxy, 'inbound', 'request-headers-timeout')).toBe(before + 1);
});

test('a TLS handshake that never finishes on the mTLS port: the connection closes within the request-headers timeout', async () => {
  // The start of a ClientHello (a handshake record header and two bytes of it), then
  // nothing: a slowloris on the handshake. Node's TLS server gives a handshake 120 s by
  // default, so 4096 such connections (maxConnectionsPerListener), 35 a second, kept the
  // inbound listener full while every other wait on it is bounded by 10 s.
  const before = await limitCount(proxy, 'inbound', 'tls-handshake-timeout');
  const s = netConnect({ host: '127.0.0.1', port: proxy.inboundPort });
  s.once('connect', () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00])));
  const r = await held(s, 5000);
  expect(r.closed).toBe(true);
  expect(await limitCount(proxy, 'inbound', 'tls-handshake-timeout')).toBe(before + 1);
});

test('an idle h2c connection on the outbound port is closed after the idle timeout', async () => {
  const before = await limitCount(proxy, 'outbound', 'idle-connection-timeout');
  const session = h2connect(`http://127.0.0.1:${proxy.outboundPort}`);
  session.on('error', () => undefined);
  const t0 = Date.now();
  const closed = new Promise<number>((resolve) => session.once('close', () => resolve(Date.now() - t0)));
  // One request (no such service: 404), then nothing.
  const r = session.request({ ':path': '/', ':authority': 'nowhere.example' }, { endStream: true });
  r.resume();
  const ms = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5000))]);
  expect(ms).toBeGreaterThan(0);
  expect(await limitCount(proxy, 'outbound', 'idle-connection-timeout')).toBe(before + 1);
  session.destroy();
});

test('an idle HTTP/1.1 keep-alive connection is closed after the idle timeout', async () => {
  const before = await limitCount(proxy, 'outbound', 'idle-connection-timeout');
  const s = netConnect({ host: '127.0.0.1', port: proxy.outboundPort });
  s.once('connect', () => s.write('GET / HTTP/1.1\r\nhost: nowhere.example\r\n\r\n'));
  const r = await held(s, 5000);
  expect(r.data).toMatch(/^HTTP\/1\.1 404 /);
  expect(r.closed).toBe(true);
  expect(await limitCount(proxy, 'outbound', 'idle-connection-timeout')).toBe(before + 1);
});

test('connections beyond maxConnectionsPerListener are refused at accept', async () => {
  const capped = await startProxy({ pki, serviceAccount: 'capped', config: { limits: { maxConnectionsPerListener: 2 } } });
  try {
    const open: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const s = netConnect({ host: '127.0.0.1', port: capped.outboundPort });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      open.push(s);
    }
    await new Promise((r) => setTimeout(r, 100));
    const extra = netConnect({ host: '127.0.0.1', port: capped.outboundPort });
    const r = await held(extra, 3000);
    expect(r.closed).toBe(true);
    expect(await limitCount(capped, 'outbound', 'max-connections')).toBe(1);
    for (const s of open) s.destroy();
  } finally {
    await capped.close();
  }
});

test('an HTTP/2 stream on which nothing moves is reset after the stream idle timeout', async () => {
  const before = await limitCount(proxy, 'inbound', 'stream-idle-timeout');
  const m = pki.issue('default', 'client');
  const socket = tlsConnect({ host: '127.0.0.1', port: proxy.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
  await new Promise((r) => socket.once('secureConnect', r));
  const session = h2connect(`https://127.0.0.1:${proxy.inboundPort}`, { createConnection: () => socket });
  session.on('error', () => undefined);
  // The app never answers /hang.
  const r = session.request({ ':path': '/hang', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' }, { endStream: true });
  r.on('error', () => undefined);
  const t0 = Date.now();
  const code = await new Promise<number>((resolve) => r.once('close', () => resolve(r.rstCode)));
  expect(code).toBe(8); // CANCEL
  expect(Date.now() - t0).toBeLessThan(4000);
  expect(await limitCount(proxy, 'inbound', 'stream-idle-timeout')).toBe(before + 1);
  session.destroy();
});
