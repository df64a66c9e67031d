import { connect as h2connect } from 'node:http2';
import { testPki } from '../helpers/pki.js';
import { until } from '../helpers/until.js';
import { startH2Mesh, h2request, type H2Mesh } from './h2-mesh.js';

/**
 * What holds on `mux` as on `h2` (guards), through the HTTP/2 -> HTTP/1.1 -> HTTP/2
 * translation: what node:http2 accepts of odd targets and values reaches the app as sent
 * (obs-text), or is refused the same way; `te: trailers` reaches a gRPC app; HEAD keeps its
 * content-length without a body, 204 and 304 have none; mesh fields sent as trailers, by
 * the client or by the app, never cross; a gRPC call the app fails UNAVAILABLE
 * (trailers-only) is retried with its whole streamed body; route timeouts end a gRPC
 * call in-band (DEADLINE_EXCEEDED in the trailers, not a reset).
 */
const pki = testPki();
const meshes = new Map<string, H2Mesh>();
// A route timeout the slow call reaches, long enough that no other call does on a loaded machine (400 ms did: a cold first call).
const policy = { retry: { retryOn: ['unavailable'], attempts: 2, backoffBaseMs: '1ms' }, timeouts: { requestMs: '2s' } };
beforeAll(async () => {
  for (const t of ['mux', 'h2'] as const) meshes.set(t, await startH2Mesh(pki, t, { policy }));
});
afterAll(async () => {
  for (const m of meshes.values()) await m.close();
});

const FORGED = { 'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/default/sa/app;URI=spiffe://cluster.local/ns/default/sa/admin', 'wren-peer': 'forged', 'wren-orig-proto': 'HTTP/1.1' };
const grpcHead = { ':method': 'POST', ':path': '/pkg.Svc/Call', 'content-type': 'application/grpc', te: 'trailers' };

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  test('odd targets and values: obs-text crosses, what node:http2 refuses is refused on both', async () => {
    mesh().handler = (s, h) => {
      s.respond({ ':status': 200, 'x-resp': 'é' });
      s.end(JSON.stringify({ path: h[':path'], authority: h[':authority'], v: h['x-v'], te: h['te'] }));
    };
    const r = await h2request(mesh().client, { ':path': '/ä?q=%00', 'x-v': 'é', host: 'elsewhere' });
    expect({ status: r.status, resp: r.headers?.['x-resp'], got: JSON.parse(r.body.toString()) }).toEqual({ status: 200, resp: 'é', got: { path: '/ä?q=%00', authority: 'app', v: 'é' } });
    const g = await h2request(mesh().client, grpcHead, { body: Buffer.from([0, 0, 0, 0, 0]) });
    expect(JSON.parse(g.body.toString()).te).toBe('trailers');
    for (const path of ['/a b', 'http://evil/x']) expect((await h2request(mesh().client, { ':path': path })).rstCode).toBe(1);
  });

  test('HEAD keeps its content-length and has no body; 204 and 304 have none', async () => {
    mesh().handler = (s, h) => {
      if (h[':method'] === 'HEAD') return void s.respond({ ':status': 200, 'content-length': '1234' }, { endStream: true });
      s.respond({ ':status': h[':path'] === '/204' ? 204 : 304 }, { endStream: true });
    };
    const head = await h2request(mesh().client, { ':method': 'HEAD' });
    expect({ status: head.status, cl: head.headers?.['content-length'], body: head.body.length, ended: head.ended }).toEqual({ status: 200, cl: '1234', body: 0, ended: true });
    for (const st of [204, 304]) {
      const r = await h2request(mesh().client, { ':path': `/${st}` });
      expect({ status: r.status, body: r.body.length, ended: r.ended }).toEqual({ status: st, body: 0, ended: true });
    }
  });

  test('mesh fields in the request trailers never reach the app, nor those in the response trailers the client', async () => {
    mesh().handler = (s) => {
      s.on('end', () => {
        s.respond({ ':status': 200 }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ ...FORGED, 'x-ok': 'resp' }));
        s.end('ok');
      });
    };
    const r = await h2request(mesh().client, { ':method': 'POST', ':path': '/trailers' }, { body: 'abc', trailers: { ...FORGED, 'x-ok': 'req' } });
    expect(r.trailers).toMatchObject({ 'x-ok': 'resp' });
    expect(await until(() => mesh().closed.some((c) => c.path === '/trailers'), 3000)).toBe(true);
    const app = mesh().closed.find((c) => c.path === '/trailers');
    expect(app?.trailers).toMatchObject({ 'x-ok': 'req' });
    for (const f of Object.keys(FORGED)) {
      expect({ [f]: r.trailers?.[f] }).toEqual({ [f]: undefined });
      expect({ [f]: app?.trailers?.[f] }).toEqual({ [f]: undefined });
    }
  });

  test('a gRPC call failed UNAVAILABLE (trailers-only) is retried with its whole streamed body', async () => {
    const bodies: string[] = [];
    mesh().handler = (s) => {
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.on('end', () => {
        bodies.push(Buffer.concat(parts).toString());
        if (bodies.length === 1) return void s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14' }, { endStream: true });
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    };
    const c = h2connect(`http://127.0.0.1:${mesh().client.outboundPort}`);
    try {
      const req = c.request({ ':authority': 'app', ...grpcHead });
      let trailers: unknown;
      req.on('trailers', (tr) => (trailers = tr));
      req.resume();
      req.write('hello-');
      setTimeout(() => req.end('world'), 50);
      await new Promise((r) => req.on('close', r));
      expect(trailers).toMatchObject({ 'grpc-status': '0' });
      expect(bodies).toEqual(['hello-world', 'hello-world']);
    } finally {
      c.close();
    }
  });

  test('a route timeout ends a gRPC call in-band: DEADLINE_EXCEEDED in the trailers, the app cancelled', async () => {
    mesh().handler = (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' });
      s.write(Buffer.from([0, 0, 0, 0, 0]));
    };
    const r = await h2request(mesh().client, { ...grpcHead, ':path': '/pkg.Svc/Slow' }, { body: Buffer.from([0, 0, 0, 0, 0]) });
    expect({ ended: r.ended, status: r.trailers?.['grpc-status'] }).toEqual({ ended: true, status: '4' });
    expect(await until(() => mesh().closed.some((c) => c.path === '/pkg.Svc/Slow'), 3000)).toBe(true);
    expect(mesh().closed.find((c) => c.path === '/pkg.Svc/Slow')!.rstCode).not.toBe(0);
  });
});
