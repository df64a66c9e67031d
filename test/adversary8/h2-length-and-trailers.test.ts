import { testPki } from '../helpers/pki.js';
import { bothMeshes, h2request } from './h2-mesh.js';

/**
 * ADV8-8. An HTTP/2 message may have a content-length and trailers both (RFC 9113 section
 * 8.1: trailers follow the DATA frames whatever framed them); HTTP/1.1 carries trailers
 * only in a chunked body, where a content-length may not be sent (RFC 9112 section 6.2).
 *
 * What happened on `mux`: the message between the sidecars kept the content-length and
 * dropped the trailers, so a response's grpc-status (or any trailer) after a body with a
 * declared length never reached the client, nor a request's trailers the app; `h2` passes
 * both. Now such a message crosses chunked, its length in `wren-content-length`, which the
 * far sidecar turns back into the content-length.
 */
const pki = testPki();
const meshes = bothMeshes(pki);

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  test('a response with a content-length and trailers reaches the client with both', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200, 'content-length': '6', 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'x-t': '1' }));
      s.write('abc');
      // Streamed: the rest comes later.
      setTimeout(() => s.end('def'), 30);
    };
    const r = await h2request(mesh().client, {});
    expect({ status: r.status, cl: r.headers?.['content-length'], body: r.body.toString(), trailers: r.trailers, ended: r.ended }).toEqual({
      status: 200, cl: '6', body: 'abcdef', trailers: expect.objectContaining({ 'grpc-status': '0', 'x-t': '1' }), ended: true,
    });
    expect(r.headers?.['wren-content-length']).toBeUndefined();
  });

  test('a request with a content-length and trailers reaches the app with both', async () => {
    mesh().handler = (s) => {
      s.on('end', () => {
        if (s.destroyed) return;
        s.respond({ ':status': 200 });
        s.end('ok');
      });
    };
    const r = await h2request(mesh().client, { ':method': 'POST', ':path': '/cl-trailers', 'content-length': '3' }, { body: 'abc', trailers: { 'x-t': '1' } });
    expect(r.status).toBe(200);
    const seen = mesh().closed.find((c) => c.path === '/cl-trailers')!;
    expect({ cl: seen.headers['content-length'], body: seen.body.toString(), trailers: seen.trailers?.['x-t'], mesh: seen.headers['wren-content-length'] }).toEqual({ cl: '3', body: 'abc', trailers: '1', mesh: undefined });
  });

  test('a response whose body is longer than its content-length is still cut', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200, 'content-length': '2' });
      s.end('abcdef');
    };
    const r = await h2request(mesh().client, {});
    expect(r.ended && r.body.toString() === 'abcdef').toBe(false);
  });
});
