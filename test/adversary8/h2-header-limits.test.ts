import { testPki } from '../helpers/pki.js';
import { bothMeshes, h2request } from './h2-mesh.js';

/**
 * ADV8-2. Header and trailer sections of HTTP/2 requests and responses: `mux` must give the
 * answers `h2` gives. On `h2` the bounds are the HTTP/2 sessions': the listeners take 512
 * fields and limits.maxHeaderBytes (431 past it, measured as RFC 9113 section 6.5.2 does)
 * in a request's head, up to 4 x maxHeaderBytes in its trailers (the session's
 * SETTINGS_MAX_HEADER_LIST_SIZE); a response's sections, on the sessions to the app and to
 * the peer, up to 128 fields and 64 KiB each (peer-pool.ts).
 *
 * What happened on `mux`: the HTTP/1.1 codec's limits, made for HTTP/1.1 callers, applied
 * to the HTTP/1.1 message between the sidecars: the peer answered 431 to a request with
 * 110 fields (its mesh server: 100 + 16 for the mesh's own) or 40 KiB of trailers (16 +
 * 12 KiB) that the outbound had accepted; the client sidecar's pool refused a response
 * head of 100 fields or over 16 KiB (502 upstream-protocol) and reset a response whose
 * trailers were over 16 KiB or 100 fields: a gRPC status with large details
 * (grpc-status-details-bin) became a reset.
 */
const pki = testPki();
const meshes = bothMeshes(pki);

const fields = (n: number, prefix: string): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, 'v']));
const KiB = 1024;

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  test('a request with 120 header fields and one with 40 KiB of trailers reach the app', async () => {
    mesh().handler = (s, h) => {
      s.on('end', () => {
        s.respond({ ':status': 200 });
        s.end(String(Object.keys(h).filter((k) => k.startsWith('x-q')).length));
      });
    };
    const many = await h2request(mesh().client, fields(120, 'x-q'));
    expect({ status: many.status, body: many.body.toString() }).toEqual({ status: 200, body: '120' });
    const big = await h2request(mesh().client, { ':method': 'POST' }, { body: 'abc', trailers: { 'x-big': 'a'.repeat(40 * KiB) } });
    expect({ status: big.status, ended: big.ended }).toEqual({ status: 200, ended: true });
    expect(String(mesh().closed.at(-1)?.trailers?.['x-big']).length).toBe(40 * KiB);
  });

  test('a request head over limits.maxHeaderBytes gets 431 from the client sidecar', async () => {
    const r = await h2request(mesh().client, { 'x-big': 'a'.repeat(20 * KiB) });
    expect({ status: r.status, error: r.headers?.['wren-proxy-error'] }).toEqual({ status: 431, error: 'headers-too-large' });
  });

  test('a response with 120 header fields, one with a 60 KiB header, one with 120 trailers and one with 60 KiB of trailers reach the client', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200, ...fields(120, 'x-h') });
      s.end('ok');
    };
    const many = await h2request(mesh().client, {});
    expect({ status: many.status, n: Object.keys(many.headers ?? {}).filter((k) => k.startsWith('x-h')).length }).toEqual({ status: 200, n: 120 });
    mesh().handler = (s) => {
      s.respond({ ':status': 200, 'x-big': 'a'.repeat(60 * KiB) });
      s.end('ok');
    };
    const big = await h2request(mesh().client, {});
    expect({ status: big.status, size: String(big.headers?.['x-big']).length }).toEqual({ status: 200, size: 60 * KiB });
    for (const trailers of [fields(120, 'x-t'), { 'grpc-status': '3', 'grpc-status-details-bin': 'A'.repeat(60 * KiB) }]) {
      mesh().handler = (s) => {
        s.respond({ ':status': 200 }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers(trailers));
        s.end('ok');
      };
      const r = await h2request(mesh().client, {});
      expect({ ended: r.ended, rstCode: r.rstCode }).toEqual({ ended: true, rstCode: 0 });
      expect(Object.keys(r.trailers ?? {}).sort()).toEqual(Object.keys(trailers).sort());
    }
  });
});
