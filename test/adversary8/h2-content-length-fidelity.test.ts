import { testPki } from '../helpers/pki.js';
import { bothMeshes, h2request } from './h2-mesh.js';

/**
 * ADV8-10. In HTTP/2 the end of a message is END_STREAM; a content-length is the sender's
 * to give or not. HTTP/1.1 between the sidecars needs one for framing (or chunks).
 *
 * What happened on `mux`: the framing's content-length reached the other side as if the
 * sender had sent it: a gRPC trailers-only response (HEADERS with END_STREAM) reached the
 * client with `content-length: 0`, a small response with its length, and a bodyless POST
 * reached the app with `content-length: 0`; on `h2` none of them has one. Now the sidecars
 * carry the sender's own in `wren-content-length`, and only it becomes the content-length.
 */
const pki = testPki();
const meshes = bothMeshes(pki);

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  test('a trailers-only gRPC response and a small response without a content-length reach the client without one', async () => {
    mesh().handler = (s) => void s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5' }, { endStream: true });
    const only = await h2request(mesh().client, { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' }, { body: Buffer.from([0, 0, 0, 0, 0]) });
    expect({ status: only.headers?.['grpc-status'], cl: only.headers?.['content-length'] }).toEqual({ status: '5', cl: undefined });
    mesh().handler = (s) => {
      s.respond({ ':status': 200 });
      s.end('small');
    };
    const small = await h2request(mesh().client, {});
    expect({ body: small.body.toString(), cl: small.headers?.['content-length'] }).toEqual({ body: 'small', cl: undefined });
  });

  test('content-lengths the app gives are kept: HEAD, an empty response, a small one', async () => {
    mesh().handler = (s, h) => {
      if (h[':method'] === 'HEAD') return void s.respond({ ':status': 200, 'content-length': '1234' }, { endStream: true });
      if (h[':path'] === '/empty') return void s.respond({ ':status': 200, 'content-length': '0' }, { endStream: true });
      s.respond({ ':status': 200, 'content-length': '5' });
      s.end('small');
    };
    expect((await h2request(mesh().client, { ':method': 'HEAD' })).headers?.['content-length']).toBe('1234');
    expect((await h2request(mesh().client, { ':path': '/empty' })).headers?.['content-length']).toBe('0');
    expect((await h2request(mesh().client, {})).headers?.['content-length']).toBe('5');
  });

  test('a bodyless POST reaches the app without a content-length; one the client gives is kept', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200 });
      s.end('ok');
    };
    await h2request(mesh().client, { ':method': 'POST', ':path': '/bodyless' });
    await h2request(mesh().client, { ':method': 'POST', ':path': '/bodyless-cl', 'content-length': '0' });
    const seen = (p: string) => mesh().closed.find((c) => c.path === p)?.headers['content-length'];
    expect({ none: seen('/bodyless'), given: seen('/bodyless-cl') }).toEqual({ none: undefined, given: '0' });
  });
});
