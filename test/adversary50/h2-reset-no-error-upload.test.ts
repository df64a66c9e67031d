import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { testPki } from '../helpers/pki.js';
import { FLAG, FRAME, FrameReader, clientStart, frame, headerBlock, rstStream } from '../helpers/h2-frames.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import { meshService, startProxy } from '../helpers/proxy.js';
import { until } from '../helpers/until.js';
import { startH2Mesh } from '../adversary8/h2-mesh.js';

/**
 * A client that resets its stream with NO_ERROR after our complete response, its upload
 * still going. RFC 9113 section 8.1 has a server end a request early with RST_STREAM
 * NO_ERROR; a client that does so has abandoned its request, which Envoy takes as any
 * downstream reset (the upstream stream is reset). node:http2 leaves such a stream as
 * the client's END_STREAM would (rstCode 0, no 'aborted', the body's 'end'), so where a
 * node:http2 server took the request (protocol.outboundHttp2 node; every inbound HTTP/2
 * connection from a peer sidecar, and h2c on a PERMISSIVE port), the truncated upload
 * went on to the app as a complete one. The frame-level server reset the upstream already.
 */
const pki = testPki();
const NO_ERROR = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Raw frames (node:http2's client sends END_STREAM before a close()'s RST_STREAM): a POST
 * whose first part goes with the head, the response awaited whole, a second part, then
 * RST_STREAM NO_ERROR.
 */
async function resetAfterResponse(sock: Socket, fields: [string, string][]): Promise<void> {
  sock.on('error', () => undefined);
  let responseEnded!: () => void;
  const ended = new Promise<void>((r) => (responseEnded = r));
  const reader = new FrameReader((type, flags, id) => {
    if (id === 1 && (type === FRAME.DATA || type === FRAME.HEADERS) && (flags & FLAG.END_STREAM) !== 0) responseEnded();
  });
  sock.on('data', (d: Buffer) => reader.push(d));
  sock.write(Buffer.concat([clientStart(), frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock(fields)), frame(FRAME.DATA, 0, 1, Buffer.from('first,'))]));
  await ended;
  await sleep(30);
  sock.write(frame(FRAME.DATA, 0, 1, Buffer.from('second,')));
  await sleep(30);
  sock.write(rstStream(1, NO_ERROR));
}

const post = (path: string): [string, string][] => [[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'app']];

describe.each([
  ['mux', 'node'],
  ['h2', 'node'],
  ['mux', 'frames'],
  ['h2', 'frames'],
])('meshHttp2 %s, outboundHttp2 %s', (transport, outboundHttp2) => {
  test('an h2c app sees the upload reset, never a whole request', async () => {
    const protocol = { meshHttp2: transport, outboundHttp2 };
    const mesh = await startH2Mesh(pki, transport as 'mux', { client: { protocol }, server: { protocol } });
    try {
      mesh.handler = (stream) => {
        stream.respond({ ':status': 200 });
        stream.end('early');
      };
      const sock = connect(mesh.client.outboundPort, '127.0.0.1');
      await resetAfterResponse(sock, post('/reset-no-error'));
      expect(await until(() => mesh.closed.some((c) => c.path === '/reset-no-error'), 5000)).toBe(true);
      const seen = mesh.closed.find((c) => c.path === '/reset-no-error')!;
      // Reset (CANCEL), not ended: before, rstCode 0 and the body 'first,second,' as if whole.
      expect(seen.rstCode).not.toBe(0);
      sock.destroy();
    } finally {
      await mesh.close();
    }
  });
});

/** An HTTP/1.1 app that answers at once and records how each request body ended. */
async function h1App(): Promise<{ port: number; seen: Map<string, 'end' | 'aborted'>; close(): Promise<void> }> {
  const seen = new Map<string, 'end' | 'aborted'>();
  const app = createHttpServer((req: IncomingMessage, res) => {
    res.end('early');
    let ended = false;
    req.on('data', () => undefined);
    req.on('end', () => {
      ended = true;
      seen.set(req.url!, 'end');
    });
    // The request's own 'close' comes with the response's end here; the connection's is the cut.
    req.socket.on('close', () => {
      if (!ended) seen.set(req.url!, 'aborted');
    });
  });
  const l = await listenOnLoopback(app);
  return { port: l.port, seen, close: () => l.close() };
}

/**
 * To a port declared http1 the request goes as HTTP/1.1, whose hops end the upload once
 * the response is whole (the app's connection is closed mid-body): this held before the
 * fix too, and is kept so that no hop of either kind lets the truncated upload through.
 */
describe.each([
  ['mux', 'node'],
  ['h2', 'node'],
  ['mux', 'frames'],
])('a port declared http1, meshHttp1 %s, outboundHttp2 %s', (meshHttp1, outboundHttp2) => {
  test('the HTTP/1.1 app sees its connection cut mid-body, never a whole request', async () => {
    const app = await h1App();
    const protocol = { meshHttp1, outboundHttp2 };
    const server = await startProxy({ pki, serviceAccount: 'app', config: { protocol } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol }, services: [meshService('app', 80, [{ appPort: app.port, proxy: server }], { protocol: 'http1' })] });
    try {
      const sock = connect(client.outboundPort, '127.0.0.1');
      await resetAfterResponse(sock, post('/h1-reset'));
      expect(await until(() => app.seen.has('/h1-reset'), 5000)).toBe(true);
      expect(app.seen.get('/h1-reset')).toBe('aborted');
      sock.destroy();
    } finally {
      await client.close();
      await server.close();
      await app.close();
    }
  });
});

test('a peer sidecar resetting NO_ERROR on the mTLS inbound (node:http2 server): the app sees the reset', async () => {
  const mesh = await startH2Mesh(pki, 'h2');
  try {
    mesh.handler = (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('early');
    };
    const cert = pki.issue('default', 'client');
    const target = mesh.server.inboundPort;
    const sock = tlsConnect({ host: '127.0.0.1', port: target, key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    await new Promise((r) => sock.once('secureConnect', r));
    expect(sock.alpnProtocol).toBe('h2');
    await resetAfterResponse(sock, [...post('/peer-reset'), ['wren-target-port', String(mesh.appPort)]]);
    expect(await until(() => mesh.closed.some((c) => c.path === '/peer-reset'), 5000)).toBe(true);
    expect(mesh.closed.find((c) => c.path === '/peer-reset')!.rstCode).not.toBe(0);
    sock.destroy();
  } finally {
    await mesh.close();
  }
});
