import { connect as h2connect, type ClientHttp2Session, type Http2SecureServer, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { closedPort } from './helpers/closed-port.js';

/**
 * The inbound survives streams that are already gone when it handles them (seen under
 * load: an uncaught TypeError / ERR_HTTP2_INVALID_STREAM crashed the sidecar): node can
 * emit 'stream' for a stream whose session is destroyed, and a peer can reset a CONNECT
 * stream while the connect to the app is pending. Each is a reset: nothing is thrown.
 */
const pki = testPki();
let server: Proxy, opaqueServer: Proxy;
let app: FakeApp;
let deadPort = 0;
const uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

beforeAll(async () => {
  app = await fakeApp('web');
  // A port nobody listens on: the app connect fails (ECONNREFUSED) after the peer reset.
  deadPort = await closedPort();
  server = await startProxy({ pki, serviceAccount: 'web' });
  opaqueServer = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { opaquePorts: [deadPort] } } });
  process.on('uncaughtException', onUncaught);
});

afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  await Promise.all([server.close(), opaqueServer.close()]);
  await app.close();
});

function peer(p: Proxy): ClientHttp2Session {
  const m = pki.issue('default', 'client');
  const s = h2connect(`https://127.0.0.1:${p.inboundPort}`, { key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, rejectUnauthorized: false });
  s.on('error', () => undefined);
  return s;
}

/** The inbound's mTLS HTTP/2 server (private), to replay a 'stream' event as node emits it. */
function secureServerOf(p: Proxy): Http2SecureServer {
  return (p as unknown as { inbound: { secure: Http2SecureServer } }).inbound.secure;
}

async function get(p: Proxy): Promise<number> {
  const s = peer(p);
  const st = s.request({ ':method': 'GET', ':path': '/name', ':authority': 'web', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' });
  st.on('error', () => undefined);
  st.resume();
  const status = await new Promise<number>((r) => {
    st.on('response', (h) => r(Number(h[':status'])));
    st.on('close', () => r(-1));
  });
  s.destroy();
  return status;
}

test("a 'stream' event for a stream whose session is already destroyed is treated as a reset (request and CONNECT)", async () => {
  const secure = secureServerOf(server);
  const captured: { stream: ServerHttp2Stream; headers: IncomingHttpHeaders }[] = [];
  const grab = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => captured.push({ stream, headers });
  secure.prependListener('stream', grab);
  expect(await get(server)).toBe(200);
  secure.off('stream', grab);
  expect(captured).toHaveLength(1);
  const { stream, headers } = captured[0];
  stream.session?.destroy();
  await new Promise((r) => setImmediate(r));
  expect(stream.session).toBeUndefined();

  const flags = 0x1;
  expect(() => secure.emit('stream', stream, headers, flags, [])).not.toThrow();
  expect(() => secure.emit('stream', stream, { ...headers, ':method': 'CONNECT', ':path': undefined }, 0, [])).not.toThrow();
  await new Promise((r) => setTimeout(r, 100));
  expect(uncaught).toEqual([]);
  // The inbound keeps serving.
  expect(await get(server)).toBe(200);
});

test('a CONNECT the peer resets while the app connect is pending never throws (respond on a destroyed stream)', async () => {
  const secure = secureServerOf(opaqueServer);
  // Runs after the inbound's handler has started the connect to the app: the stream is
  // gone (as when the peer's RST_STREAM is read) before ECONNREFUSED comes back.
  let reset = 0;
  const resetNow = (stream: ServerHttp2Stream) => {
    reset++;
    stream.destroy();
  };
  secure.on('stream', resetNow);
  for (let i = 0; i < 5; i++) {
    const s = peer(opaqueServer);
    const st = s.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${deadPort}`, 'wren-target-port': String(deadPort) });
    st.on('error', () => undefined);
    await new Promise((r) => st.once('close', r));
    await new Promise((r) => setTimeout(r, 50));
    s.destroy();
  }
  secure.off('stream', resetNow);
  expect(reset).toBe(5);
  await new Promise((r) => setTimeout(r, 100));
  expect(uncaught).toEqual([]);
  expect(await get(opaqueServer)).toBe(200);
});
