import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { once } from 'node:events';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { FLAG_FIN, FrameType } from '../proxy/mux/frame.js';
import { RawMux } from './adversary6/raw-mux.js';

/**
 * A mux peer that sends its request and the stream's FIN in the same DATA frame (its half
 * of the virtual connection ends) is answered, through every layer of the inbound stack,
 * and then the stream ends (RFC 9112 section 9.6: "a client ... might close its sending
 * side"); a mux peer that goes away resets the stream instead. The app answers after the
 * FIN has arrived (/slow), as a forwarded request does. docs/security.md, "The mesh
 * multiplexer"; docs/http1-codec.md for TCP and TLS, where a FIN is the client gone.
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  const policy = { authorizationPolicies: [{ name: 'default/no-admin', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }] };
  server = await startProxy({ pki, serviceAccount: 'web', config: { policy } });
  client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'mux' } }, services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

/** Writes `wire`, half-closes, and collects the reply until the server closes (or `ms`). */
async function halfClose(s: Socket, wire: string, ms = 5000): Promise<{ text: string; closed: boolean }> {
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('error', () => undefined);
  s.write(wire);
  s.end();
  const closed = await Promise.race([once(s, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  s.destroy();
  return { text, closed };
}

test('mux: a request with its FIN in the same DATA frame is answered through the mTLS stack (authorization included), then the stream ends with FIN', async () => {
  const peer = await RawMux.open(pki, server.inboundPort, 'caller');
  const head = (path: string): string => `GET ${path} HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  peer.data(1, head('/slow?ms=100'), FLAG_FIN);
  peer.data(3, head('/admin'), FLAG_FIN);
  const finOn = (id: number): boolean => peer.frames.some((f) => f.type === FrameType.Data && f.id === id && (f.flags & FLAG_FIN) !== 0);
  expect(await peer.until(() => finOn(1) && finOn(3), 5000)).toBe(true);
  expect(peer.text(1)).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nslow web$/);
  // The DENY policy judged it as any other request.
  expect(peer.text(3)).toMatch(/^HTTP\/1\.1 403 [^]*wren-proxy-error: /i);
  // Ended cleanly: no RESET for either stream, and the session still serves a keep-alive stream.
  expect(peer.frames.filter((f) => f.type === FrameType.Reset)).toEqual([]);
  peer.data(5, head('/name'));
  expect(await peer.until(() => /\r\n\r\nweb$/.test(peer.text(5)), 5000)).toBe(true);
  expect(peer.closed).toBe(false);
  peer.close();
});

// On TCP and TLS a FIN cannot be told from a client that left (node's http.ClientRequest
// destroy() sends one): it cancels the request, as Envoy, hyper and node do
// (docs/http1-codec.md), so an app's abandoned request does not hold its upstream.
test('mTLS HTTP/1.1 (ALPN http/1.1): close_notify and FIN after a request cancel it, and the connection closes without waiting for the app', async () => {
  const m = pki.issue('default', 'caller');
  const s = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
  await once(s, 'secureConnect');
  const t0 = Date.now();
  const r = await halfClose(s, `GET /slow?ms=3000 HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`);
  expect(r).toEqual({ text: '', closed: true });
  expect(Date.now() - t0).toBeLessThan(2000);
});

test('plain TCP into the outbound: a FIN after a request cancels it, and the connection closes without waiting for the app', async () => {
  const s = connect(client.outboundPort, '127.0.0.1');
  await once(s, 'connect');
  const t0 = Date.now();
  const r = await halfClose(s, 'GET /slow?ms=3000 HTTP/1.1\r\nhost: web\r\n\r\n');
  expect(r).toEqual({ text: '', closed: true });
  expect(Date.now() - t0).toBeLessThan(2000);
});
