import * as grpc from '@grpc/grpc-js';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from '../helpers/fake-grpc.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV8-5. A peer sidecar that takes fewer streams at once than its callers send it (its
 * limits.maxConcurrentStreams lower than theirs): gRPC calls, which always have a body.
 *
 * On `h2` the peer's SETTINGS_MAX_CONCURRENT_STREAMS holds the calls beyond it in the
 * caller's session until a stream ends (RFC 9113 section 5.1.2). What happened on `mux`:
 * the multiplexer learns the peer's limit only from its refusals (RESET Refused), and the
 * HTTP/1.1 pool sent a refused request again only without a body, so every call past the
 * peer's limit in that burst failed UNAVAILABLE "stream refused" though the peer had
 * processed none of it (RFC 9113 section 8.7: a refused stream may be retried whatever it
 * carries). The pool now keeps what it sent of a small body until the response starts, so
 * a refused call goes again, whole, on another virtual connection.
 */
const pki = testPki();
const pairs = new Map<string, { backend: FakeGrpc; server: Proxy; client: Proxy; echo: EchoClient }>();
beforeAll(async () => {
  for (const meshHttp2 of ['mux', 'h2'] as const) {
    const backend = await fakeGrpc();
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2 }, limits: { maxConcurrentStreams: 2 } } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2 } }, services: [meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' })] });
    pairs.set(meshHttp2, { backend, server, client, echo: echoClient(client.outboundPort, 'echo:50051') });
  }
});
afterAll(async () => {
  for (const p of pairs.values()) {
    p.echo.close();
    await p.client.close();
    await p.server.close();
    await p.backend.close();
  }
});

const unary = (c: EchoClient, req: object): Promise<{ code: number; message?: string }> =>
  new Promise((resolve) => c.Unary(req, new grpc.Metadata(), (err: grpc.ServiceError | null, res?: { message: string }) => resolve({ code: err?.code ?? 0, message: res?.message })));

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  test('five concurrent gRPC calls to a peer that takes two streams at once all succeed, each answered with its own request', async () => {
    const p = pairs.get(t)!;
    expect((await unary(p.echo, { message: 'warm' })).code).toBe(0);
    const payload = Buffer.alloc(2000, 7);
    const results = await Promise.all([0, 1, 2, 3, 4].map((i) => unary(p.echo, { message: `m${i}`, payload, delayMs: 200 })));
    expect(results).toEqual([0, 1, 2, 3, 4].map((i) => ({ code: 0, message: `m${i}` })));
  });
});
