import * as grpc from '@grpc/grpc-js';
import { connect as h2connect, constants, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { echoPackage, grpcOptions, type EchoClient } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by review (adv22): a gRPC response whose upstream failed after its headers (the app
 * reset the stream, the server's sidecar went away mid-stream) reached the caller as
 * RST_STREAM INTERNAL_ERROR, which gRPC maps to INTERNAL (PROTOCOL-HTTP2.md, "Errors"):
 * a status clients and retry policies take for a bug in the server rather than a lost
 * upstream. The caller's sidecar now ends such a call the way Linkerd's gRPC rescue does:
 * trailers after what was relayed, grpc-status UNAVAILABLE with grpc-message and
 * `wren-proxy-error`. The app is a raw HTTP/2 server, so that only the sidecars decide.
 * With node:http2 as the outbound's server (protocol.outboundHttp2 node) the call was still
 * reset (INTERNAL) until adv23: both servers now end it alike (write-response.ts).
 */
const pki = testPki();
let app: Http2Server, appClose: () => Promise<void>, client: Proxy, nodeClient: Proxy, h2Client: Proxy, server: Proxy;
const MESSAGES = 3;
/** An empty EchoResponse, length-prefixed (uncompressed, length 0). */
const EMPTY_MESSAGE = Buffer.alloc(5);
let appStreamsClosed = 0;

beforeAll(async () => {
  app = createH2cServer();
  app.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.on('close', () => appStreamsClosed++);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    for (let i = 0; i < MESSAGES; i++) stream.write(EMPTY_MESSAGE);
    // After the messages went out the app's connection is lost: the response is cut.
    setTimeout(() => stream.session?.destroy(), 50);
  });
  const listening = await listenOnLoopback(app);
  appClose = listening.close;
  server = await startProxy({ pki, serviceAccount: 'echo' });
  // The frame-level server for the app's h2c (the default, pinned: WREN_TEST_APP_HTTP2=node
  // would run node:http2 there, which nodeClient below does).
  client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { outboundHttp2: 'frames' } }, services: [meshService('echo', 50051, [{ appPort: listening.port, proxy: server }], { protocol: 'grpc' })] });
  // node:http2 there (protocol.outboundHttp2 node): it reset such a call (INTERNAL) until adv23.
  nodeClient = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { outboundHttp2: 'node' } }, services: [meshService('echo', 50051, [{ appPort: listening.port, proxy: server }], { protocol: 'grpc' })] });
  // The pair on HTTP/2 between the sidecars (protocol.meshHttp2 h2): the server sidecar's
  // node:http2 server rescues the call itself, and the caller's ends it after those trailers.
  h2Client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { outboundHttp2: 'frames', meshHttp2: 'h2' } }, services: [meshService('echo', 50051, [{ appPort: listening.port, proxy: server }], { protocol: 'grpc' })] });
});
/** The caller's sidecar by its outbound HTTP/2 server (protocol.outboundHttp2), and the pair on meshHttp2 h2. */
const callers = (): [string, Proxy][] => [['frames', client], ['node', nodeClient], ['frames, meshHttp2 h2', h2Client]];

/** A grpc-js Echo client through `sidecar`'s outbound listener. */
function echoVia(sidecar: Proxy): EchoClient {
  const { Echo } = echoPackage();
  return new Echo(`127.0.0.1:${sidecar.outboundPort}`, grpc.credentials.createInsecure(), { ...grpcOptions, 'grpc.default_authority': 'echo:50051' }) as EchoClient;
}

afterAll(async () => {
  await h2Client.close();
  await nodeClient.close();
  await client.close();
  await server.close();
  await appClose();
});

describe.each(['frames', 'node', 'frames, meshHttp2 h2'])('protocol.outboundHttp2 %s', (codec) => {
  const caller = (): Proxy => new Map(callers()).get(codec)!;

  test('a server stream cut after some messages ends with UNAVAILABLE in trailers, after the messages', async () => {
    const c = echoVia(caller());
    try {
      const r = await new Promise<{ got: number; code?: number; details?: string; label?: unknown }>((resolve) => {
        let got = 0;
        const call = c.ServerStream({ message: 'm' });
        call.on('data', () => got++);
        call.on('error', (e: grpc.ServiceError) => resolve({ got, code: e.code, details: e.details, label: e.metadata.get('wren-proxy-error') }));
        call.on('end', () => resolve({ got }));
      });
      expect([r.got, r.code, r.label]).toEqual([MESSAGES, grpc.status.UNAVAILABLE, ['upstream-reset']]);
      expect(r.details).toMatch(/^the upstream reset the stream/);
    } finally {
      c.close();
    }
  });

  test('the trailers are the end of the call: a caller still sending gets RST_STREAM NO_ERROR after them (Early Server Closure)', async () => {
    const before = appStreamsClosed;
    const s = h2connect(`http://127.0.0.1:${caller().outboundPort}`);
    try {
      const req = s.request({ ':method': 'POST', ':path': '/wren.test.Echo/Bidi', ':authority': 'echo:50051', 'content-type': 'application/grpc', te: 'trailers' });
      req.write(EMPTY_MESSAGE); // the request stays open
      const out = await new Promise<{ trailers: Record<string, unknown>; rst: number }>((resolve) => {
        let trailers: Record<string, unknown> = {};
        req.on('trailers', (t) => (trailers = t));
        req.on('error', () => undefined);
        req.resume();
        req.on('close', () => resolve({ trailers, rst: req.rstCode ?? -1 }));
      });
      expect([out.trailers['grpc-status'], out.trailers['wren-proxy-error'], out.rst]).toEqual(['14', 'upstream-reset', constants.NGHTTP2_NO_ERROR]);
    } finally {
      s.destroy();
    }
    expect(appStreamsClosed).toBeGreaterThan(before);
  });
});

test('an HTTP/2 response that is not gRPC is still reset when its upstream fails mid-body', async () => {
  const s = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  try {
    // The app answers application/grpc whatever is asked: a caller that did not ask in gRPC is
    // not given gRPC trailers it did not ask for; its stream is reset as before.
    const req = s.request({ ':method': 'POST', ':path': '/x', ':authority': 'echo:50051', 'content-type': 'application/octet-stream' });
    req.end();
    req.resume();
    req.on('error', () => undefined);
    const rst = await new Promise<number>((resolve) => req.on('close', () => resolve(req.rstCode ?? -1)));
    expect(rst).toBe(constants.NGHTTP2_INTERNAL_ERROR);
  } finally {
    s.destroy();
  }
});

describe('an app that ends its response, then resets the stream while the caller still sends', () => {
  // node:http2's stream.close(INTERNAL_ERROR) on a stream whose client still sends does
  // both: END_STREAM (no trailers), then RST_STREAM INTERNAL_ERROR. Directly, the client
  // learns at once (grpc-js: INTERNAL). Through the pair the reset was lost after the
  // complete response (the upload read on and dropped, or left paused), so the caller's
  // stream stayed half-open: a bidi call that never ended, until the stream idle timeout.
  let resetApp: Http2Server, resetClose: () => Promise<void>, resetClient: Proxy;
  beforeAll(async () => {
    resetApp = createH2cServer();
    resetApp.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.write(EMPTY_MESSAGE);
      setTimeout(() => stream.close(constants.NGHTTP2_INTERNAL_ERROR), 50);
    });
    const l = await listenOnLoopback(resetApp);
    resetClose = l.close;
    resetClient = await startProxy({ pki, serviceAccount: 'client', services: [meshService('echo', 50051, [{ appPort: l.port, proxy: server }], { protocol: 'grpc' })] });
  });
  afterAll(async () => {
    await resetClient.close();
    await resetClose();
  });

  test('the caller is reset, not left with a half-open stream', async () => {
    const c = echoVia(resetClient);
    try {
      const out = await new Promise<string>((resolve) => {
        const call = c.Bidi();
        call.on('data', () => undefined);
        call.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code}`));
        call.on('end', () => resolve('end'));
        call.write({ message: 'm' }); // and the call's side stays open
        // Far below the stream idle timeout (5 min): only the reset ends the call in time.
        setTimeout(() => resolve('still open'), 5000);
      });
      expect(out).toBe(`error ${grpc.status.INTERNAL}`);
    } finally {
      c.close();
    }
  }, 10_000);
});
