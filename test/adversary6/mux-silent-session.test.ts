import { connect as tlsConnect } from 'node:tls';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';
import { MUX_ALPN } from '../../proxy/mux/mux-session.js';

/**
 * ADV6-5. A peer that completes the mTLS handshake with ALPN wren-mux/1 and then sends
 * nothing keeps the connection for limits.idleConnectionTimeoutMs (1 h), where the same
 * peer on ALPN http/1.1 or h2 is closed after limits.requestHeadersTimeoutMs (10 s):
 * docs/configuration.md, "an HTTP/1.1 request head must arrive within this (408); an
 * HTTP/2 connection's first stream ... too (closed)". Silent connections then fill
 * maxConnectionsPerListener (4096) for an hour each: the slowloris the limit exists for.
 */
const pki = testPki();
let server: Proxy;

beforeAll(async () => {
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: { requestHeadersTimeoutMs: 300 } } });
});

afterAll(async () => {
  await server.close();
});

/** Milliseconds until the server closes a silent connection with that ALPN (-1: still open after `ms`). */
function closedAfter(alpn: string, ms: number): Promise<number> {
  const m = pki.issue('default', 'mallory');
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: [alpn], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
    let start = 0;
    const t = setTimeout(() => {
      socket.destroy();
      resolve(-1);
    }, ms);
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.once('secureConnect', () => (start = Date.now()));
    socket.once('close', () => {
      clearTimeout(t);
      resolve(start === 0 ? -2 : Date.now() - start);
    });
  });
}

test('a silent mux connection is closed after requestHeadersTimeoutMs, as a silent HTTP/1.1 or HTTP/2 one is', async () => {
  const [h1, h2, mux] = await Promise.all([closedAfter('http/1.1', 5000), closedAfter('h2', 5000), closedAfter(MUX_ALPN, 5000)]);
  // The two other transports show the promise holds there (and that 300 ms is what the server runs with).
  expect(h1).toBeGreaterThanOrEqual(0);
  expect(h2).toBeGreaterThanOrEqual(0);
  expect(mux).toBeGreaterThanOrEqual(0);
}, 20_000);
