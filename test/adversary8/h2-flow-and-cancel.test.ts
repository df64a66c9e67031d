import * as grpc from '@grpc/grpc-js';
import { connect as h2connect, type ClientHttp2Stream } from 'node:http2';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from '../helpers/fake-grpc.js';
import { settled, until } from '../helpers/until.js';
import type { Proxy } from '../../proxy/proxy.js';
import { startH2Mesh, type H2Mesh } from './h2-mesh.js';

/**
 * What holds on `mux` as on `h2` (guards): a client that never reads a large response and
 * an app that never reads a large upload hold a bounded number of bytes in the mesh (the
 * stream windows, not the body); a client that resets its stream mid-upload, with or
 * without a content-length, never gives the app a complete request (it sees the reset, and
 * only the bytes sent); a gRPC deadline and a cancelled client stream cancel the call at
 * the backend.
 */
const pki = testPki();
const MiB = 1024 * 1024;
const meshes = new Map<string, H2Mesh>();
const grpcPairs = new Map<string, { backend: FakeGrpc; server: Proxy; client: Proxy; echo: EchoClient }>();
beforeAll(async () => {
  for (const t of ['mux', 'h2'] as const) {
    meshes.set(t, await startH2Mesh(pki, t));
    const backend = await fakeGrpc();
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2: t } } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2: t } }, services: [meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' })] });
    grpcPairs.set(t, { backend, server, client, echo: echoClient(client.outboundPort, 'echo:50051') });
  }
});
afterAll(async () => {
  for (const m of meshes.values()) await m.close();
  for (const p of grpcPairs.values()) {
    p.echo.close();
    await p.client.close();
    await p.server.close();
    await p.backend.close();
  }
});

/** Writes 64 KiB chunks into `s` as long as it takes them (up to 256 MiB); `count` sees each accepted write. */
function flood(s: ClientHttp2Stream | import('node:http2').ServerHttp2Stream, count: (n: number) => void): void {
  const chunk = Buffer.alloc(64 * 1024, 1);
  let n = 0;
  const pump = (): void => {
    while (n < 256 * MiB && !s.destroyed) {
      n += chunk.length;
      if (!s.write(chunk, () => count(chunk.length))) return void s.once('drain', pump);
    }
  };
  pump();
}

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const mesh = () => meshes.get(t)!;

  test('a client that never reads a large response: the app can write only a bounded amount, which stops growing', async () => {
    let flushed = 0;
    mesh().handler = (s) => {
      s.respond({ ':status': 200 });
      flood(s, (n) => (flushed += n));
    };
    const c = h2connect(`http://127.0.0.1:${mesh().client.outboundPort}`);
    try {
      const r = c.request({ ':authority': 'app', ':path': '/big' });
      r.pause();
      // Stops growing: the same for 500 ms, within 10 s (a loaded machine takes a while to fill the windows).
      const level = await settled(() => flushed, 500, 10_000);
      expect(level).toBeDefined();
      expect(level).toBeGreaterThan(0);
      expect(level).toBeLessThan(16 * MiB);
    } finally {
      c.destroy();
    }
  });

  test('an app that never reads a large upload: the client can send only a bounded amount, which stops growing', async () => {
    mesh().handler = (s) => void s.pause();
    const c = h2connect(`http://127.0.0.1:${mesh().client.outboundPort}`);
    try {
      const r = c.request({ ':authority': 'app', ':path': '/up', ':method': 'POST' });
      r.on('error', () => undefined);
      let flushed = 0;
      flood(r, (n) => (flushed += n));
      // Stops growing: the same for 500 ms, within 10 s (a loaded machine takes a while to fill the windows).
      const level = await settled(() => flushed, 500, 10_000);
      expect(level).toBeDefined();
      expect(level).toBeGreaterThan(0);
      expect(level).toBeLessThan(16 * MiB);
    } finally {
      c.destroy();
    }
  });

  test.each([['chunked', {}], ['with a content-length', { 'content-length': '100' }]])('a client reset mid-upload (%s): the app sees a reset and only the bytes sent', async (_what, extra) => {
    mesh().handler = (s) => {
      s.on('end', () => {
        // node:http2 ends a reset stream's body too: no answer then.
        if (s.destroyed) return;
        s.respond({ ':status': 200 });
        s.end('complete');
      });
    };
    const path = `/upload-${Object.keys(extra).length}`;
    const seen = () => mesh().closed.find((x) => x.path === path);
    const c = h2connect(`http://127.0.0.1:${mesh().client.outboundPort}`);
    try {
      const r = c.request({ ':authority': 'app', ':path': path, ':method': 'POST', ...extra });
      r.on('error', () => undefined);
      r.write('x'.repeat(50));
      // The app has the request open, the body not ended.
      expect(await until(() => seen() !== undefined, 300)).toBe(false);
      r.close(8);
      expect(await until(() => seen() !== undefined, 3000)).toBe(true);
      expect({ rst: seen()!.rstCode !== 0, body: seen()!.body.length }).toEqual({ rst: true, body: 50 });
    } finally {
      c.destroy();
    }
  });

  test('a gRPC deadline and a cancelled client stream cancel the call at the backend', async () => {
    const p = grpcPairs.get(t)!;
    const before = p.backend.cancelled.length;
    const err = await new Promise<grpc.ServiceError | null>((resolve) => p.echo.Unary({ message: 'slow', delayMs: 3000 }, new grpc.Metadata(), { deadline: Date.now() + 300 }, (e: grpc.ServiceError | null) => resolve(e)));
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    const streams = () => p.backend.started.filter((c) => c === 'client-stream').length;
    const streamsBefore = streams();
    const call = p.echo.ClientStream(() => undefined);
    call.write({ payload: Buffer.alloc(1000) });
    // Cancelled once the call is open at the backend (a cancel that overtakes the call leaves nothing there to cancel).
    expect(await until(() => streams() > streamsBefore, 3000)).toBe(true);
    call.cancel();
    expect(await until(() => p.backend.cancelled.length >= before + 2, 3000)).toBe(true);
    expect(p.backend.cancelled.slice(before).sort()).toEqual(['client-stream', 'unary']);
  });
});
