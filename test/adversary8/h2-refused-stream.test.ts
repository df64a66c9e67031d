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

test('mux: five concurrent calls with 200 KB bodies to a peer that takes two streams, from a sidecar that has not learnt its limit: none fails', async () => {
  // The pool kept 16 KiB of a body to send again: calls refused with more failed UNAVAILABLE.
  // (On h2 a new session's burst beyond the peer's SETTINGS is refused too, and replayed by
  // the retry layer only up to its maxBufferedBodyBytes.)
  // A client sidecar of its own: its first session to the peer has learnt nothing of its limit yet.
  const p = pairs.get('mux')!;
  const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2: 'mux' } }, services: [meshService('echo', 50051, [{ appPort: p.backend.port, proxy: p.server }], { protocol: 'grpc' })] });
  const echo = echoClient(client.outboundPort, 'echo:50051');
  try {
    const payload = Buffer.alloc(200_000, 7);
    const results = await Promise.all([0, 1, 2, 3, 4].map((i) => unary(echo, { message: `big${i}`, payload, delayMs: 200 })));
    expect(results).toEqual([0, 1, 2, 3, 4].map((i) => ({ code: 0, message: `big${i}` })));
  } finally {
    echo.close();
    await client.close();
  }
});

test('mux: twenty concurrent calls to a peer that takes two streams, from a sidecar that has not learnt its limit: the peer\'s limit is learnt at the first refusal, the rest wait for a stream, none fails', async () => {
  // What happened: the limit learnt was the streams open when the first refusal came back
  // (all twenty, less one), and each refused call went again on a new session where the
  // same burst was refused again: after three refusals a call failed UNAVAILABLE.
  const p = pairs.get('mux')!;
  const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp2: 'mux' } }, services: [meshService('echo', 50051, [{ appPort: p.backend.port, proxy: p.server }], { protocol: 'grpc' })] });
  const echo = echoClient(client.outboundPort, 'echo:50051');
  try {
    const payload = Buffer.alloc(50_000, 7);
    const n = Array.from({ length: 20 }, (_, i) => i);
    const results = await Promise.all(n.map((i) => unary(echo, { message: `c${i}`, payload, delayMs: 50 })));
    expect(results).toEqual(n.map((i) => ({ code: 0, message: `c${i}` })));
  } finally {
    echo.close();
    await client.close();
  }
});
