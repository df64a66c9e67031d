import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { clientStart, frame, FLAG, FRAME, headerBlock } from './helpers/h2-frames.js';

/**
 * Issue 11 item 7 (found by the adversarial review): the HTTP/2 request-headers
 * timeout was armed only until a connection's FIRST stream opens (h2-session-guard.ts
 * `sawStream`). A client that completes one request and then sends a HEADERS frame
 * without END_HEADERS (and no CONTINUATION) holds the connection until the idle timeout
 * (default 1 h), not the 10 s headers timeout: the slowloris of the issue, one request
 * later. nghttp2 allows no other frame on the connection meanwhile, so nothing else can
 * end it. Envoy's request_headers_timeout applies to every stream's headers.
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  const limits = { requestHeadersTimeoutMs: 1000 };
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits } });
  client = await startProxy({ pki, serviceAccount: 'client', config: { limits } });
}, 20_000);

afterAll(async () => {
  await Promise.all([server.close(), client.close()]);
  await app.close();
});

const block = (port: number) => headerBlock([[':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'web'], ['wren-target-port', String(port)]]);

/** One complete request, then half a HEADERS frame for the next stream; ms until the proxy closes the connection (or -1 after 8 s). */
function slowloris(s: Socket, port: number): Promise<number> {
  return new Promise((resolve) => {
    let t0 = 0;
    let got = 0;
    const timer = setTimeout(() => {
      s.destroy();
      resolve(-1);
    }, 8000 + 5000);
    s.on('data', (d: Buffer) => {
      got += d.length;
      // After the first response arrives (any bytes past the server's SETTINGS), start the half-sent HEADERS.
      if (t0 === 0 && got > 60) {
        t0 = Date.now();
        const b = block(port);
        s.write(frame(FRAME.HEADERS, FLAG.END_STREAM /* no END_HEADERS */, 3, b.subarray(0, 10)));
        clearTimeout(timer);
        setTimeout(() => {
          s.destroy();
          resolve(-1);
        }, 8000);
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => resolve(t0 === 0 ? -2 : Date.now() - t0));
    s.write(Buffer.concat([clientStart(), frame(FRAME.SETTINGS, FLAG.ACK, 0), frame(FRAME.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1, block(port))]));
  });
}

test('mTLS port: half-sent HEADERS on the second stream is closed by the headers timeout', async () => {
  const m = pki.issue('default', 'mallory');
  const s = await new Promise<Socket>((resolve) => {
    const t = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem }, () => resolve(t));
  });
  const ms = await slowloris(s, app.port);
  expect(ms).toBeGreaterThan(0);
  expect(ms).toBeLessThan(4000);
}, 30_000);

test('outbound h2c port: the same', async () => {
  const s = await new Promise<Socket>((resolve) => {
    const t = netConnect(client.outboundPort, '127.0.0.1', () => resolve(t));
  });
  const ms = await slowloris(s, 1);
  expect(ms).toBeGreaterThan(0);
  expect(ms).toBeLessThan(4000);
}, 30_000);
