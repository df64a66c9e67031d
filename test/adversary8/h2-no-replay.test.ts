import { testPki } from '../helpers/pki.js';
import { startH2Mesh, h2request, type H2Mesh } from './h2-mesh.js';

/**
 * ADV8-3. A bodyless non-idempotent request (POST with END_STREAM on its HEADERS) that the
 * app received, on a virtual connection the pool had used before, and that the peer then
 * cuts before any response byte (here its stream idle timeout; a peer sidecar going away
 * mid-request does the same).
 *
 * What happened on `mux`: the HTTP/1.1 pool took the cut for a stale keep-alive connection
 * (closed by the server while idle, the request never seen) and sent the request once
 * more, on a new virtual connection: the app got the POST twice. On `h2` the stream's reset
 * is the request's failure, and the app sees it once. RFC 9110 section 9.2.2: a proxy MUST
 * NOT automatically retry a non-idempotent request; only idempotent ones may be resent
 * when a connection closes before the response (a refused stream, never processed, may be
 * resent whatever the method: RFC 9113 section 8.7).
 */
const pki = testPki();
const meshes = new Map<string, H2Mesh>();
beforeAll(async () => {
  for (const t of ['mux', 'h2'] as const) meshes.set(t, await startH2Mesh(pki, t, { server: { limits: { streamIdleTimeoutMs: 400 } } }));
});
afterAll(async () => {
  for (const m of meshes.values()) await m.close();
});

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  test('a bodyless POST the app received, cut by the peer before any response byte, reaches the app once and fails', async () => {
    const mesh = meshes.get(t)!;
    let charged = 0;
    mesh.handler = (s, h) => {
      // /charge never answers: the peer's stream idle timeout cuts it.
      if (h[':path'] === '/charge') return void charged++;
      s.respond({ ':status': 200 });
      s.end('ok');
    };
    // A first exchange, so that the next request goes on a connection used before.
    expect((await h2request(mesh.client, {})).status).toBe(200);
    const r = await h2request(mesh.client, { ':method': 'POST', ':path': '/charge' }, { timeoutMs: 5000 });
    expect(r.status).toBe(502);
    expect(charged).toBe(1);
  });
});
