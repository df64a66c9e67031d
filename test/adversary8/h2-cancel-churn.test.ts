import * as grpc from '@grpc/grpc-js';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from '../helpers/fake-grpc.js';
import { metric } from '../helpers/admin-metric.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV8-6. Calls cancelled all at once (deadlines that fire together, or an app's HTTP/2
 * rapid reset: test/abuse-rapid-reset.test.ts) must not cost the mTLS connection to the peer.
 *
 * What happened on `mux`: a cancelled call closes its virtual connection, and a client
 * session closed its TLS connection as soon as its last virtual connection went, so when
 * every call in flight was cancelled (the idle virtual connections taken by those calls
 * first), the next call paid a new TLS handshake, and under a flood of cancellations the
 * caller's sidecar spent its time in handshakes (the rapid-reset test counted 88-154 new
 * peer connections in 4 s, and its well-behaved callers got 504s). On `h2` the session
 * stays. A client session now closes after the idle timeout with no stream, as the pool's
 * idle virtual connections would have.
 */
const pki = testPki();
const pairs = new Map<string, { backend: FakeGrpc; server: Proxy; client: Proxy; echo: EchoClient }>();
beforeAll(async () => {
  for (const meshHttp2 of ['mux', 'h2'] as const) {
    const backend = await fakeGrpc();
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { protocol: { meshHttp2 } } });
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

const call = (c: EchoClient, req: object, deadlineMs?: number): Promise<number> =>
  new Promise((resolve) => c.Unary(req, new grpc.Metadata(), deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null) => resolve(err?.code ?? 0)));

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  test('rounds of calls all cancelled by their deadline keep the one connection to the peer', async () => {
    const p = pairs.get(t)!;
    expect(await call(p.echo, { message: 'warm' })).toBe(0);
    const peerConnections = /wren_peer_connections_total\{kind="mtls"\} (\d+)/;
    const before = await metric(p.client, peerConnections);
    for (let round = 0; round < 5; round++) {
      const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => call(p.echo, { message: `r${round}c${i}`, delayMs: 1000 }, 100)));
      expect(new Set(codes)).toEqual(new Set([grpc.status.DEADLINE_EXCEEDED]));
      // Until the cancellations have reached the peer sidecar.
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await call(p.echo, { message: 'after' })).toBe(0);
    expect(await metric(p.client, peerConnections)).toBe(before);
  });
});
