import { connect as h2connect, constants, type IncomingHttpHeaders } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import { FLAG, FRAME, FrameReader, frame, headerBlock, rstStream } from '../helpers/h2-frames.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * Found by review (adv23): an app that resets a gRPC call's stream (RST_STREAM) gave its
 * caller UNAVAILABLE whatever the code, where calling the app directly gives what gRPC's
 * PROTOCOL-HTTP2.md ("Errors") maps the code to: CANCEL is CANCELLED, ENHANCE_YOUR_CALM
 * RESOURCE_EXHAUSTED, INADEQUATE_SECURITY PERMISSION_DENIED, REFUSED_STREAM UNAVAILABLE,
 * the rest INTERNAL. The server's sidecar knew the code and turned it into a plain reset
 * (UNAVAILABLE before the head; after it, a mesh multiplexer RESET without the code, or the
 * inbound's rescue with UNAVAILABLE); a Linkerd proxy passes the code on (linkerd2-proxy#281).
 * Now the code crosses both sidecars (a multiplexer RESET carries it) and the one error
 * mapping gives the caller its gRPC status; a caller that is not gRPC gets its stream reset
 * with the app's code where that means the same to it (CANCEL). The app writes raw frames,
 * so that only the sidecars decide.
 */
const pki = testPki();
/** What the app does with the next request: reset before its response head, or after the head and one message. */
let next: { when: 'before' | 'after'; code: number; grpc: boolean } = { when: 'before', code: 0, grpc: true };
/** An empty gRPC message, length-prefixed. */
const MESSAGE = Buffer.alloc(5);

function rawApp(): Server {
  return createServer((socket: Socket) => {
    socket.on('error', () => undefined);
    let preface = 24;
    socket.write(frame(FRAME.SETTINGS, 0, 0));
    const reader = new FrameReader((type, flags, id) => {
      if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      if (type !== FRAME.HEADERS) return;
      const { when, code, grpc } = next;
      if (when === 'before') return void socket.write(rstStream(id, code));
      socket.write(Buffer.concat([
        frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['content-type', grpc ? 'application/grpc' : 'application/octet-stream']])),
        frame(FRAME.DATA, 0, id, MESSAGE),
      ]));
      // Later than the head, as an app that fails mid-call: the head and the message have
      // reached the caller (its sidecars relay them as they come) when the reset arrives.
      setTimeout(() => socket.write(rstStream(id, code)), 50);
    });
    socket.on('data', (d: Buffer) => {
      const n = Math.min(preface, d.length);
      preface -= n;
      if (d.length > n) reader.push(d.subarray(n));
    });
  });
}

interface Got {
  status?: number;
  headers?: IncomingHttpHeaders;
  trailers?: IncomingHttpHeaders;
  body: number;
  rstCode: number;
}

function call(client: Proxy, grpc: boolean): Promise<Got> {
  return new Promise((resolve) => {
    const s = h2connect(`http://127.0.0.1:${client.outboundPort}`).on('error', () => undefined);
    const req = s.request(grpc
      ? { ':method': 'POST', ':path': '/wren.test.Echo/Unary', ':authority': 'echo:50051', 'content-type': 'application/grpc', te: 'trailers' }
      : { ':method': 'POST', ':path': '/x', ':authority': 'echo:50051', 'content-type': 'application/octet-stream' });
    const got: Got = { body: 0, rstCode: 0 };
    req.on('response', (h) => {
      got.status = Number(h[':status']);
      got.headers = h;
    });
    req.on('data', (d: Buffer) => (got.body += d.length));
    req.on('trailers', (t) => (got.trailers = t));
    req.on('error', () => undefined);
    req.on('close', () => {
      got.rstCode = req.rstCode ?? 0;
      s.close();
      resolve(got);
    });
    req.end(MESSAGE);
  });
}

const pairs = new Map<string, { server: Proxy; client: Proxy }>();
let app: { port: number; close(): Promise<void> };
/** meshHttp2, and the server's appHttp2 with the client's outboundHttp2: Wren's frame-level codecs or node:http2 at both ends. */
const MODES = [['mux', 'frames'], ['mux', 'node'], ['h2', 'frames'], ['h2', 'node']] as const;
beforeAll(async () => {
  app = await listenOnLoopback(rawApp());
  for (const [meshHttp2, codec] of MODES) {
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2, appHttp2: codec } } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2, outboundHttp2: codec } }, services: [meshService('echo', 50051, [{ appPort: app.port, proxy: server }], { protocol: 'grpc' })] });
    pairs.set(`${meshHttp2}/${codec}`, { server, client });
  }
});
afterAll(async () => {
  for (const p of pairs.values()) {
    await p.client.close();
    await p.server.close();
  }
  await app.close();
});

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INADEQUATE_SECURITY, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = constants;
/** PROTOCOL-HTTP2.md's mapping, for a client: the code the app resets with -> the call's grpc-status. */
const MAPPED: [string, number, number][] = [
  ['CANCEL', NGHTTP2_CANCEL, 1],
  ['ENHANCE_YOUR_CALM', NGHTTP2_ENHANCE_YOUR_CALM, 8],
  ['INADEQUATE_SECURITY', NGHTTP2_INADEQUATE_SECURITY, 7],
  ['INTERNAL_ERROR', NGHTTP2_INTERNAL_ERROR, 13],
];

describe.each(MODES.map(([m, a]) => `${m}/${a}`))('meshHttp2 / appHttp2 and outboundHttp2: %s', (mode) => {
  test.each(MAPPED)('an app reset %s before the response head: the caller gets its mapped grpc-status', async (_name, code, status) => {
    next = { when: 'before', code, grpc: true };
    const got = await call(pairs.get(mode)!.client, true);
    expect([got.status, got.headers?.['grpc-status'], got.headers?.['wren-proxy-error'], got.rstCode]).toEqual([200, String(status), 'upstream-reset', 0]);
  });

  test.each([...MAPPED, ['REFUSED_STREAM', NGHTTP2_REFUSED_STREAM, 14] as [string, number, number]])('an app reset %s after the head and a message: the call ends with its mapped grpc-status in trailers', async (_name, code, status) => {
    next = { when: 'after', code, grpc: true };
    const got = await call(pairs.get(mode)!.client, true);
    expect([got.status, got.body, got.trailers?.['grpc-status'], got.trailers?.['wren-proxy-error'], got.rstCode]).toEqual([200, MESSAGE.length, String(status), 'upstream-reset', 0]);
  });

  test('a caller that is not gRPC gets its stream reset CANCEL when the app cancels after the head', async () => {
    next = { when: 'after', code: NGHTTP2_CANCEL, grpc: false };
    const got = await call(pairs.get(mode)!.client, false);
    expect([got.status, got.rstCode]).toEqual([200, NGHTTP2_CANCEL]);
  });

  test('a caller that is not gRPC gets INTERNAL_ERROR, not REFUSED_STREAM, when the app refuses after the head (the request was processed)', async () => {
    next = { when: 'after', code: NGHTTP2_REFUSED_STREAM, grpc: false };
    const got = await call(pairs.get(mode)!.client, false);
    expect([got.status, got.rstCode]).toEqual([200, NGHTTP2_INTERNAL_ERROR]);
  });
});
