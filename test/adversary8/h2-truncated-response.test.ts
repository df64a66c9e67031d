import { constants, type ServerHttp2Stream } from 'node:http2';
import { testPki } from '../helpers/pki.js';
import { bothMeshes, h2request } from './h2-mesh.js';

/**
 * ADV8-1. An HTTP/2 app whose response stops before END_STREAM: it resets the stream
 * (RST_STREAM CANCEL or NO_ERROR) after headers and some DATA, or its connection dies.
 * RFC 9113 section 8.1: a response is complete only with END_STREAM; RST_STREAM NO_ERROR
 * means "complete" only after it. The client must see a reset, never a clean end with
 * part of the body.
 *
 * What happened, on both transports: node:http2 ends a client stream's readable side
 * ('end', no 'error') when it is closed by RST_STREAM CANCEL or NO_ERROR or by its
 * session going away, so the inbound's response body (h2-call.ts) "ended"; the inbound
 * wrote END_STREAM (h2) or the last chunk (mux), and the client got a clean 200 with
 * "partial" for body.
 */
const pki = testPki();
const meshes = bothMeshes(pki);

/** Headers, then "partial" without END_STREAM (trailers awaited), then `cut` 50 ms later. */
const cutAfterData = (cut: (s: ServerHttp2Stream) => void, headers: Record<string, string> = {}) => (s: ServerHttp2Stream): void => {
  s.respond({ ':status': 200, ...headers }, { waitForTrailers: true });
  s.write('partial');
  setTimeout(() => cut(s), 50);
};

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  test.each([
    ['RST_STREAM CANCEL', (s: ServerHttp2Stream) => s.close(constants.NGHTTP2_CANCEL)],
    ['RST_STREAM NO_ERROR before END_STREAM', (s: ServerHttp2Stream) => s.close(constants.NGHTTP2_NO_ERROR)],
    ['RST_STREAM INTERNAL_ERROR', (s: ServerHttp2Stream) => s.close(constants.NGHTTP2_INTERNAL_ERROR)],
    ['the app connection dies', (s: ServerHttp2Stream) => s.session?.socket.destroy()],
  ])('app response cut after DATA by %s: the client sees a reset, not END_STREAM', async (_what, cut) => {
    mesh().handler = cutAfterData(cut);
    const r = await h2request(mesh().client, { ':path': '/cut' });
    expect(r.status).toBe(200);
    expect({ ended: r.ended, reset: r.rstCode !== 0 }).toEqual({ ended: false, reset: true });
  });

  // Never a clean end without grpc-status (which gRPC reads as a complete call). Since
  // adv22 the outbound ends such a call as Linkerd's gRPC rescue does: trailers after what
  // was relayed, with grpc-status and wren-proxy-error (test/grpc-mid-stream-failure.test.ts);
  // since adv23 on node:http2 there too (WREN_TEST_APP_HTTP2=node), and the status is what
  // gRPC gives the app's own reset code, CANCEL: CANCELLED (PROTOCOL-HTTP2.md, "Errors";
  // test/adversary23/h2-app-reset-code.test.ts), where it was UNAVAILABLE, a lost upstream.
  test('a gRPC response cut before its trailers by RST_STREAM CANCEL: CANCELLED in trailers, never a clean end without grpc-status', async () => {
    mesh().handler = cutAfterData((s) => s.close(constants.NGHTTP2_CANCEL), { 'content-type': 'application/grpc' });
    const r = await h2request(mesh().client, { ':method': 'POST', ':path': '/pkg.Svc/Call', 'content-type': 'application/grpc', te: 'trailers' }, { body: Buffer.from([0, 0, 0, 0, 0]) });
    expect({ ended: r.ended, rstCode: r.rstCode, body: r.body.toString() }).toEqual({ ended: true, rstCode: 0, body: 'partial' });
    expect(r.trailers).toMatchObject({ 'grpc-status': '1', 'wren-proxy-error': 'upstream-reset' });
    expect(r.trailers?.['grpc-message']).toEqual(expect.any(String));
  });

  test('a complete response with trailers still ends cleanly (the guard above is not a reset for every stream)', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200 }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'x-done': '1' }));
      s.write('all');
      setTimeout(() => s.end(), 20);
    };
    const r = await h2request(mesh().client, { ':path': '/whole' });
    expect({ ended: r.ended, rstCode: r.rstCode, body: r.body.toString(), done: r.trailers?.['x-done'] }).toEqual({ ended: true, rstCode: 0, body: 'all', done: '1' });
  });

  test('a response with a content-length cut by the app connection dying: a reset', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200, 'content-length': '100' });
      s.write('partial');
      setTimeout(() => s.session?.socket.destroy(), 50);
    };
    const r = await h2request(mesh().client, { ':path': '/cl' });
    expect(r.ended).toBe(false);
  });
});
