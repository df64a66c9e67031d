import { connect, createServer, type Http2Server, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * HTTP/2 messages whose body is empty but present: a request of HEADERS and then an empty
 * DATA frame with END_STREAM (what `nghttp -d /dev/null` and node's `req.end(Buffer.alloc(0))`
 * send), and a response of HEADERS and then trailers with no DATA (a gRPC server that sends
 * its metadata, then fails the call). The end of such a body comes in the same read as its
 * head, before the layer that will read it has attached its listeners; every call must
 * still end, with its trailers, on each HTTP/2 implementation the proxy can use.
 */
const pki = testPki();
let app: Http2Server;
let appPort = 0;

beforeAll(async () => {
  app = createServer();
  app.on('stream', (stream, headers) => {
    let bytes = 0;
    stream.on('data', (d: Buffer) => (bytes += d.length));
    // Answered once the request has ended, as a unary gRPC server does.
    stream.on('end', () => {
      if (headers[':path'] === '/metadata-then-status') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-meta': 'm' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '7', 'grpc-message': 'denied' }));
        stream.end();
      } else {
        stream.respond({ ':status': 200, 'x-request-bytes': String(bytes) });
        stream.end('done');
      }
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => app.close(r));
});

interface Outcome {
  readonly status: number;
  readonly headers: Record<string, unknown>;
  readonly trailers: Record<string, unknown>;
  readonly body: string;
}

function call(session: ClientHttp2Session, path: string, body: Buffer): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, ':authority': 'h2:81', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    let got = '';
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (d: Buffer) => (got += d.toString('latin1')));
    req.on('end', () => resolve({ status: Number(headers[':status']), headers, trailers, body: got }));
    req.on('error', reject);
    // Bounded: a call that hangs fails the test with what it got instead of timing out jest.
    req.setTimeout(5000, () => reject(new Error(`${path}: no end within 5 s (headers ${JSON.stringify(headers)})`)));
    req.end(body);
  });
}

describe.each([
  ["Wren's HTTP/2 server and client (the defaults)", {}],
  ['node:http2 for the app-facing server and for the delivery to the app', { outboundHttp2: 'node', appHttp2: 'node' }],
])('empty HTTP/2 bodies through a pair: %s', (_name, protocol) => {
  let server: Proxy;
  let client: Proxy;
  let session: ClientHttp2Session;

  beforeAll(async () => {
    server = await startProxy({ pki, serviceAccount: 'h2', config: { protocol } });
    client = await startProxy({ pki, serviceAccount: 'client', config: { protocol }, services: [meshService('h2', 81, [{ appPort, proxy: server }], { protocol: 'http2' })] });
    session = connect(`http://127.0.0.1:${client.outboundPort}`);
  });

  afterAll(async () => {
    session.close();
    await client.close();
    await server.close();
  });

  test('an empty request body (an empty DATA frame with END_STREAM) reaches the app as an ended body, and its response comes back', async () => {
    const r = await call(session, '/echo', Buffer.alloc(0));
    expect(r.status).toBe(200);
    expect(r.headers['x-request-bytes']).toBe('0');
    expect(r.body).toBe('done');
  });

  test('a response of headers and then trailers, no DATA, ends with its trailers, after an empty or a non-empty request body', async () => {
    for (const body of [Buffer.alloc(0), Buffer.from('hello')]) {
      const r = await call(session, '/metadata-then-status', body);
      expect(r.status).toBe(200);
      expect(r.headers['x-meta']).toBe('m');
      expect(r.trailers['grpc-status']).toBe('7');
      expect(r.trailers['grpc-message']).toBe('denied');
      expect(r.body).toBe('');
    }
  });

  test('many such calls at once all end', async () => {
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => call(session, i % 2 === 0 ? '/metadata-then-status' : '/echo', Buffer.alloc(0))));
    expect(all.filter((r) => r.status === 200)).toHaveLength(20);
    expect(all.filter((r, i) => (i % 2 === 0 ? r.trailers['grpc-status'] === '7' : r.body === 'done'))).toHaveLength(20);
  });
});
