import * as grpc from '@grpc/grpc-js';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { echoClient, echoPackage, fakeGrpc, grpcOptions, type EchoClient, type FakeGrpc } from '../helpers/fake-grpc.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV8-4. The cluster's circuit breaker and the per-peer bound, for gRPC calls.
 *
 * On `h2` a peer is one HTTP/2 connection whose calls are streams: the circuit breaker's
 * maxConnections counts the connection, maxRequests the calls (Envoy's max_connections and
 * max_requests for an HTTP/2 upstream; Istio's tcp.maxConnections and http2MaxRequests),
 * and a stream beyond what a session may carry waits in the session for one to end.
 *
 * What happened on `mux`: each call's virtual connection took one of the cluster's
 * connection slots, as an HTTP/1.1 connection does. A gRPC service with maxConnections 1
 * and maxRequests 100 ran one call at a time, the next waited as a pending request and the
 * rest failed UNAVAILABLE (circuit breaker overflow) where `h2` ran all four; and a call
 * beyond limits.maxConcurrentStreams (the pool's bound per peer) failed after the connect
 * timeout (1 s) while long-lived streams held the bound, where `h2` served it.
 */
const pki = testPki();
interface Pair { backend: FakeGrpc; server: Proxy; client: Proxy; echo: EchoClient }
const pairs = new Map<string, Pair>();
beforeAll(async () => {
  for (const meshHttp2 of ['mux', 'h2'] as const) {
    const backend = await fakeGrpc();
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2 } } });
    const client = await startProxy({
      pki, serviceAccount: 'client', config: { protocol: { meshHttp2 }, limits: { maxConcurrentStreams: 4 } },
      services: [
        meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc', policy: { circuitBreaker: { maxConnections: 1, maxPendingRequests: 1, maxRequests: 100 } } }),
        meshService('watch', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' }),
      ],
    });
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

const unary = (c: EchoClient, req: object): Promise<number> =>
  new Promise((resolve) => c.Unary(req, new grpc.Metadata(), (err: grpc.ServiceError | null) => resolve(err?.code ?? 0)));

/** A channel of its own to the client sidecar (a connection of its own: the sidecar bounds streams per connection too). */
const channel = (client: Proxy, authority: string): EchoClient =>
  new (echoPackage().Echo)(`127.0.0.1:${client.outboundPort}`, grpc.credentials.createInsecure(), {
    ...grpcOptions, 'grpc.default_authority': authority, 'grpc.use_local_subchannel_pool': 1,
  }) as EchoClient;

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const pair = () => pairs.get(t)!;

  test('circuit breaker maxConnections 1, maxRequests 100: four concurrent calls all run', async () => {
    expect(await unary(pair().echo, { message: 'warm' })).toBe(0);
    const codes = await Promise.all([0, 1, 2, 3].map((i) => unary(pair().echo, { message: `c${i}`, delayMs: 300 })));
    expect(codes).toEqual([0, 0, 0, 0]);
  });

  test('long-lived streams holding limits.maxConcurrentStreams to a peer: another call does not fail', async () => {
    const channels = [0, 1, 2, 3].map(() => channel(pair().client, 'watch:50051'));
    const other = channel(pair().client, 'watch:50051');
    try {
      // Four watches of 1.5 s (past the 1 s connect timeout) on four connections: the bound per peer.
      // Each watch's status with its details and when it came: a failure says which error it was.
      const started = Date.now();
      const watches = channels.map((c) => new Promise<{ code: number; details: string; afterMs: number }>((resolve) => {
        const s = c.ServerStream({ message: 'w', count: 15, delayMs: 100 });
        s.on('data', () => undefined);
        s.on('status', (st: grpc.StatusObject) => resolve({ code: st.code, details: st.details, afterMs: Date.now() - started }));
        s.on('error', () => undefined);
      }));
      await new Promise((r) => setTimeout(r, 300));
      expect(await unary(other, { message: 'one more' })).toBe(0);
      expect(await Promise.all(watches)).toEqual([0, 1, 2, 3].map(() => expect.objectContaining({ code: 0 })));
    } finally {
      for (const c of [...channels, other]) c.close();
    }
  });
});
