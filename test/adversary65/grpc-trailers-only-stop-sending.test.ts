import { connect as h2connect, constants, type IncomingHttpHeaders } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import { FLAG, FRAME, FrameReader, frame, rstStream } from '../helpers/h2-frames.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * Found by the gRPC adversary review (adv65): a client-streaming or bidi call that a sidecar
 * failed before any response (no ready endpoints, the app resetting the stream before its
 * head, any error the one table maps) got its Trailers-Only status, and then its stream
 * stayed open for as long as the client kept it so: nothing reads the rest of the request,
 * yet the caller was never told to stop sending (its data went nowhere, the stream held a
 * slot of its connection until the client ended it or the 5 min stream idle timeout). A
 * gRPC server ends such a call with RST_STREAM NO_ERROR after its status (RFC 9113 section
 * 8.1), as both of Wren's HTTP/2 servers already did after a rescue's trailers (a response
 * cut after its head: test/grpc-mid-stream-failure.test.ts). Now a Trailers-Only error from
 * a sidecar, its own or the peer's relayed, ends the same way.
 */
const pki = testPki();
const MESSAGE = Buffer.alloc(5);

/** An app that resets every stream with CANCEL before a response head, writing raw frames so that only the sidecars decide. */
function resettingApp(): Server {
  return createServer((socket: Socket) => {
    socket.on('error', () => undefined);
    let preface = 24;
    socket.write(frame(FRAME.SETTINGS, 0, 0));
    const reader = new FrameReader((type, flags, id) => {
      if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      if (type === FRAME.HEADERS) socket.write(rstStream(id, constants.NGHTTP2_CANCEL));
    });
    socket.on('data', (d: Buffer) => {
      const n = Math.min(preface, d.length);
      preface -= n;
      if (d.length > n) reader.push(d.subarray(n));
    });
  });
}

interface Got { headers: IncomingHttpHeaders; closed: boolean; rstCode: number | undefined }

/**
 * A gRPC call whose request is never ended (a client stream still sending): its response
 * head, and whether the stream was closed within `withinMs` of it.
 */
function openCall(client: Proxy, authority: string, withinMs = 2000): Promise<Got> {
  return new Promise((resolve) => {
    const s = h2connect(`http://127.0.0.1:${client.outboundPort}`).on('error', () => undefined);
    const req = s.request({ ':method': 'POST', ':path': '/wren.test.Echo/ClientStream', ':authority': authority, 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => undefined);
    req.resume();
    req.write(MESSAGE);
    let timer: NodeJS.Timeout | undefined;
    const done = (headers: IncomingHttpHeaders, closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ headers, closed, rstCode: closed ? req.rstCode : undefined });
    };
    req.on('response', (headers) => {
      if (req.closed) return done(headers, true);
      req.once('close', () => done(headers, true));
      // Bounds the wait for the reset that ends the test when it is missing.
      timer = setTimeout(() => done(headers, false), withinMs);
    });
  });
}

/** meshHttp2 between the sidecars, and the caller's outbound HTTP/2 server (the frame-level one or node:http2). */
const MODES = [['mux', 'frames'], ['mux', 'node'], ['h2', 'frames'], ['h2', 'node']] as const;
const pairs = new Map<string, { server: Proxy; client: Proxy }>();
let app: { port: number; close(): Promise<void> };

beforeAll(async () => {
  app = await listenOnLoopback(resettingApp());
  for (const [meshHttp2, codec] of MODES) {
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2, appHttp2: codec } } });
    const client = await startProxy({
      pki,
      serviceAccount: 'client',
      config: { protocol: { meshHttp2, outboundHttp2: codec } },
      services: [
        meshService('echo', 50051, [{ appPort: app.port, proxy: server }], { protocol: 'grpc' }),
        meshService('empty', 50051, [{ appPort: app.port, proxy: server, ready: false }], { protocol: 'grpc' }),
      ],
    });
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

describe.each(MODES.map(([m, c]) => `${m}/${c}`))('meshHttp2 / outboundHttp2: %s', (mode) => {
  test("the caller's sidecar's own Trailers-Only error (no ready endpoints) ends the call: RST_STREAM NO_ERROR while the client still sends", async () => {
    const got = await openCall(pairs.get(mode)!.client, 'empty:50051');
    expect([got.headers[':status'], got.headers['content-type'], got.headers['grpc-status'], got.headers['wren-proxy-error']]).toEqual([200, 'application/grpc', '14', 'no-endpoints']);
    expect([got.closed, got.rstCode]).toEqual([true, constants.NGHTTP2_NO_ERROR]);
  });

  test("the peer's Trailers-Only error, relayed (the app reset the stream before its head), ends the call the same way", async () => {
    const got = await openCall(pairs.get(mode)!.client, 'echo:50051');
    expect([got.headers[':status'], got.headers['grpc-status'], got.headers['wren-proxy-error']]).toEqual([200, '1', 'upstream-reset']);
    expect([got.closed, got.rstCode]).toEqual([true, constants.NGHTTP2_NO_ERROR]);
  });
});
