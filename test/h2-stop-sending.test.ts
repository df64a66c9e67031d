import { connect as h2connect, constants, createServer as createH2cServer, type Http2Server, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * An app that answers before it has read the request and then tells the client to stop
 * sending: a complete response, then RST_STREAM(NO_ERROR) (RFC 9113 section 8.1: "A server
 * can send a complete response prior to the client sending an entire request if the
 * response does not depend on any portion of the request that has not been sent and
 * received. When this is true, a server MAY request that the client abort transmission of
 * a request without error by sending a RST_STREAM with an error code of NO_ERROR"). grpc-go
 * does this when its handler returns before the client's END_STREAM (envoyproxy/envoy#44749).
 *
 * The caller gets the whole response, and its upload is not left stuck: the sidecar that
 * was told to stop drops the rest of the body as it comes (the caller's stream ends as it
 * would with node:http2 between them), instead of leaving it paused until the stream idle
 * timeout. Each transport toward the app and between the sidecars.
 */
const pki = testPki();
let app: Http2Server;
let appPort: number;
const proxies: Proxy[] = [];
/** Bytes the app read of each request before it answered. */
let appRead = 0;

beforeAll(async () => {
  app = createH2cServer();
  app.on('stream', (st) => {
    st.on('error', () => undefined);
    st.once('data', (d: Buffer) => {
      appRead += d.length;
      st.respond({ ':status': 200, 'content-type': 'text/plain' });
      st.end('stop', () => st.close(constants.NGHTTP2_NO_ERROR));
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  await new Promise((r) => app.close(r));
});

/** POSTs `chunks` of 64 KiB, each written when the previous one was taken: resolves with the response and whether the whole upload went out. */
function upload(port: number, chunks: number): Promise<{ status: number; body: string; sent: number; rstCode: number | undefined }> {
  const s: ClientHttp2Session = h2connect(`http://127.0.0.1:${port}`);
  s.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    const st = s.request({ ':method': 'POST', ':path': '/up', ':authority': 'up:82', 'content-type': 'application/octet-stream' });
    let status = 0;
    let body = '';
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    st.on('response', (h) => (status = Number(h[':status'])));
    st.setEncoding('utf8');
    st.on('data', (d: string) => (body += d));
    st.on('error', reject);
    st.on('close', () => {
      s.close();
      resolve({ status, body, sent, rstCode: st.rstCode });
    });
    const next = (): void => {
      if (st.destroyed) return;
      if (sent === chunks) return void st.end();
      sent++;
      st.write(chunk, next);
    };
    next();
  });
}

test('direct (no sidecar): the client gets the response and its stream ends without error, the upload cut short', async () => {
  appRead = 0;
  const r = await upload(appPort, 64);
  expect(r).toMatchObject({ status: 200, body: 'stop' });
  expect(r.rstCode === undefined || r.rstCode === constants.NGHTTP2_NO_ERROR).toBe(true);
  expect(r.sent).toBeLessThan(64);
});

describe.each([
  ['frames to the app, mux between the sidecars', { appHttp2: 'frames', meshHttp2: 'mux' }],
  ['frames to the app, HTTP/2 between the sidecars', { appHttp2: 'frames', meshHttp2: 'h2' }],
  ['node:http2 to the app, mux between the sidecars', { appHttp2: 'node', meshHttp2: 'mux' }],
])('%s', (_name, protocol) => {
  let client: Proxy;

  beforeAll(async () => {
    const server = await startProxy({ pki, serviceAccount: 'up', config: { protocol: { appHttp2: protocol.appHttp2 } } });
    client = await startProxy({
      pki,
      serviceAccount: 'client',
      // The stream idle timeout (limits.streamIdleTimeoutMs, 300 s) is far past the test's: an upload left stuck fails by the test's own timeout.
      config: { protocol: { meshHttp2: protocol.meshHttp2 } },
      services: [meshService('up', 82, [{ appPort, proxy: server }], { protocol: 'http2' })],
    });
    proxies.push(server, client);
  });

  test('a complete response then RST_STREAM(NO_ERROR) from the app: the caller gets the response and its 4 MiB upload is not left stuck', async () => {
    appRead = 0;
    const r = await upload(client.outboundPort, 64);
    expect(r.status).toBe(200);
    expect(r.body).toBe('stop');
    // The app took at most a window's worth before it answered; the caller's stream ended without an error.
    expect(appRead).toBeGreaterThan(0);
    expect(r.rstCode === undefined || r.rstCode === constants.NGHTTP2_NO_ERROR).toBe(true);
  }, 20_000);
});
