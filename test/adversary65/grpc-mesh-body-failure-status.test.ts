import { connect as h2connect, createServer as createH2cServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * Found by the gRPC adversary review (adv65): a gRPC response the server's sidecar could
 * not relay after its head for a reason of its own (here the app's trailers, 70 000 bytes,
 * over the 64 KiB list the frame-level client to the app takes: UPSTREAM_PROTOCOL, what
 * the same oversize list in the response head gives as a Trailers-Only INTERNAL) reached
 * the caller as grpc-status 14 UNAVAILABLE "stream reset by the peer (code 0)" on the
 * default mesh transport (protocol.meshHttp2 mux): the inbound cut the virtual connection,
 * a plain RESET, and the caller's sidecar ended the call as a lost upstream, which gRPC
 * clients and retry policies take as worth retrying. On `meshHttp2: h2` the inbound's
 * node:http2 server ended the call with the failure's own status in trailers. Now the
 * inbound on `mux` does too (write-response.ts H1ResponseWriter grpcRescue): the caller
 * gets grpc-status 13 INTERNAL with the reason, on either transport.
 */
const pki = testPki();
const BIG = 70_000;
const MODES = ['mux', 'h2'] as const;
const pairs = new Map<string, { server: Proxy; client: Proxy }>();
let app: { port: number; close(): Promise<void> };

beforeAll(async () => {
  // node:http2 sends a header block of at most 64 KiB unless told otherwise (it resets the stream FRAME_SIZE_ERROR).
  const h2 = createH2cServer({ maxSendHeaderBlockLength: 1024 * 1024 } as Parameters<typeof createH2cServer>[0]);
  h2.on('stream', (s: ServerHttp2Stream) => {
    s.on('error', () => undefined);
    s.resume();
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'x-big': 'a'.repeat(BIG) }));
    s.end(Buffer.alloc(5));
  });
  app = await listenOnLoopback(h2);
  for (const meshHttp2 of MODES) {
    // The frame-level client to the app (appHttp2 frames, the default, pinned against WREN_TEST_APP_HTTP2).
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2, appHttp2: 'frames' } } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2 } }, services: [meshService('echo', 50051, [{ appPort: app.port, proxy: server }], { protocol: 'grpc' })] });
    pairs.set(meshHttp2, { server, client });
  }
});

afterAll(async () => {
  for (const p of pairs.values()) {
    await p.client.close();
    await p.server.close();
  }
  await app.close();
});

function call(client: Proxy): Promise<{ headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders | undefined; body: number }> {
  return new Promise((resolve, reject) => {
    const s = h2connect(`http://127.0.0.1:${client.outboundPort}`).on('error', () => undefined);
    const req = s.request({ ':method': 'POST', ':path': '/wren.test.Echo/Unary', ':authority': 'echo:50051', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    let body = 0;
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (d: Buffer) => (body += d.length));
    req.on('error', reject);
    req.on('close', () => {
      s.close();
      resolve({ headers, trailers, body });
    });
    req.end(Buffer.alloc(5));
  });
}

test.each(MODES)('meshHttp2 %s: trailers the inbound cannot take end the call INTERNAL with the reason, after what was relayed', async (mode) => {
  const got = await call(pairs.get(mode)!.client);
  expect([got.headers[':status'], got.body]).toEqual([200, 5]);
  expect([got.trailers?.['grpc-status'], got.trailers?.['wren-proxy-error']]).toEqual(['13', 'upstream-protocol']);
  expect(decodeURIComponent(String(got.trailers?.['grpc-message']))).toMatch(/^the upstream sent an invalid response: response headers over 65536 bytes/);
});
