import * as grpc from '@grpc/grpc-js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { echoClient, echoPackage, fakeGrpc, grpcOptions, type EchoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import { LogCapture } from './helpers/log-capture.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * HTTP/2 and gRPC between sidecars on either transport (protocol.meshHttp2): `mux`, the
 * default, carries each call as an HTTP/1.1 message (chunked body, trailers) on a virtual
 * connection of the mesh multiplexer and the peer speaks HTTP/2 to its app again; `h2`
 * carries it as a stream on the HTTP/2 session. The four call types, metadata both ways,
 * statuses, trailers-only errors and cancellation behave the same on both; on `mux` the
 * calls take the pool's bound per peer (limits.maxConcurrentStreams) and the inbound still
 * sees an HTTP/2 request (access log protocol, the app gets HTTP/2).
 */
const pki = testPki();
const on = { telemetry: { accessLog: { enabled: true } } };

interface Pair {
  readonly backend: FakeGrpc;
  readonly server: Proxy;
  readonly client: Proxy;
  readonly serverLog: LogCapture;
  readonly echo: EchoClient;
}
const pairs = new Map<string, Pair>();

beforeAll(async () => {
  for (const meshHttp2 of ['mux', 'h2'] as const) {
    const backend = await fakeGrpc();
    const serverLog = new LogCapture();
    const server = await startProxy({ pki, serviceAccount: 'echo', config: { ...on, protocol: { meshHttp2 } }, accessLog: serverLog });
    const client = await startProxy({
      pki, serviceAccount: 'client',
      // Two streams per peer on `mux`: the bound test below queues the third call.
      config: { protocol: { meshHttp2 }, limits: { maxConcurrentStreams: 2 } },
      services: [meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' })],
    });
    pairs.set(meshHttp2, { backend, server, client, serverLog, echo: echoClient(client.outboundPort, 'echo:50051') });
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

const unary = (c: EchoClient, req: object, md = new grpc.Metadata()) =>
  new Promise<{ err: grpc.ServiceError | null; res?: { message: string; caller: string }; headers?: grpc.Metadata; trailers?: grpc.Metadata }>((resolve) => {
    let headers: grpc.Metadata | undefined, trailers: grpc.Metadata | undefined;
    const call = c.Unary(req, md, (err: grpc.ServiceError | null, res: never) => setImmediate(() => resolve({ err, res, headers, trailers })));
    call.on('metadata', (m: grpc.Metadata) => (headers = m));
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });

/** A channel with a subchannel pool of its own: a second connection to the client sidecar (grpc-js shares one otherwise). */
const secondConnection = (client: Proxy): EchoClient =>
  new (echoPackage().Echo)(`127.0.0.1:${client.outboundPort}`, grpc.credentials.createInsecure(), {
    ...grpcOptions, 'grpc.default_authority': 'echo:50051', 'grpc.use_local_subchannel_pool': 1,
  }) as EchoClient;

describe.each(['mux', 'h2'])('protocol.meshHttp2 %s', (t) => {
  const pair = () => pairs.get(t)!;

  test('unary: metadata both ways, the caller identity, response trailers; a backend status crosses unchanged', async () => {
    const md = new grpc.Metadata();
    md.set('x-custom', `on-${t}`);
    const r = await unary(pair().echo, { message: 'hi' }, md);
    expect(r.err).toBeNull();
    expect(r.res!.message).toBe('hi');
    expect(r.res!.caller).toBe(`By=${pair().server.tls.spiffeId};URI=${pair().client.tls.spiffeId}`);
    expect(r.headers!.get('x-echo-header')).toEqual([`on-${t}`]);
    expect(r.trailers!.get('x-trailer')).toEqual(['done']);
    const failed = await unary(pair().echo, { message: 'x', failCode: grpc.status.NOT_FOUND });
    expect(failed.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(failed.err?.details).toBe(`failed as asked (${grpc.status.NOT_FOUND})`);
    expect(failed.trailers!.get('x-trailer')).toEqual(['done']);
  });

  test('server, client and bidirectional streams; the inbound sees an HTTP/2 request', async () => {
    const got = await new Promise<number[]>((resolve, reject) => {
      const idx: number[] = [];
      const call = pair().echo.ServerStream({ message: 's', count: 5, delayMs: 5 });
      call.on('data', (m: { index: number }) => idx.push(m.index));
      call.on('error', reject);
      call.on('end', () => resolve(idx));
    });
    expect(got).toEqual([0, 1, 2, 3, 4]);
    const summary = await new Promise<string>((resolve, reject) => {
      const call = pair().echo.ClientStream((e: grpc.ServiceError | null, r: { message: string }) => (e ? reject(e) : resolve(r.message)));
      for (let i = 0; i < 4; i++) call.write({ payload: Buffer.alloc(1000) });
      call.end();
    });
    expect(summary).toBe('got 4 messages, 4000 bytes');
    // Bidi: each answer arrives before the next message is sent (the request body is still open).
    const bidi = pair().echo.Bidi();
    const answers: string[] = [];
    for (const m of ['a', 'b', 'c']) {
      bidi.write({ message: m });
      answers.push(await new Promise<string>((resolve) => bidi.once('data', (r: { message: string }) => resolve(r.message))));
    }
    bidi.end();
    await new Promise((r) => bidi.on('status', r));
    expect(answers).toEqual(['echo a', 'echo b', 'echo c']);
    const line = await pair().serverLog.find((e) => e['path'] === '/wren.test.Echo/Bidi', 5000);
    expect(line).toMatchObject({ protocol: 'HTTP/2', response_code: 200 });
  });

  test('a cancelled call is cancelled at the backend', async () => {
    const before = pair().backend.cancelled.filter((c) => c === 'server-stream').length;
    const call = pair().echo.ServerStream({ message: 'slow', count: 100, delayMs: 50 });
    call.on('error', () => undefined);
    await new Promise((r) => call.once('data', r));
    call.cancel();
    expect(await until(() => pair().backend.cancelled.filter((c) => c === 'server-stream').length > before, 5000)).toBe(true);
  });
});

test('mux: calls beyond the streams a peer may carry wait for one (limits.maxConcurrentStreams), counted; none fails', async () => {
  const { client } = pairs.get('mux')!;
  const limit = /wren_limit_exceeded_total\{direction="outbound",limit="mesh-http2-streams-per-peer"\} (\d+)/;
  const before = await metric(client, limit);
  // The client sidecar lets each app connection open two streams: four in all toward a bound of two.
  const extra = secondConnection(client);
  try {
    const calls = [pairs.get('mux')!.echo, pairs.get('mux')!.echo, extra, extra].map((c, i) => unary(c, { message: `q${i}`, delayMs: 150 }));
    const results = await Promise.all(calls);
    expect(results.map((r) => r.err?.code ?? 0)).toEqual([0, 0, 0, 0]);
    expect(results.map((r) => r.res!.message)).toEqual(['q0', 'q1', 'q2', 'q3']);
  } finally {
    extra.close();
  }
  expect(await metric(client, limit)).toBeGreaterThan(before);
});

test('h2: the calls take the HTTP/2 session, not the pool (no wait is ever counted)', async () => {
  const { client } = pairs.get('h2')!;
  const extra = secondConnection(client);
  try {
    const results = await Promise.all([pairs.get('h2')!.echo, pairs.get('h2')!.echo, extra, extra].map((c, i) => unary(c, { message: `q${i}`, delayMs: 150 })));
    expect(results.map((r) => r.err?.code ?? 0)).toEqual([0, 0, 0, 0]);
  } finally {
    extra.close();
  }
  expect(await metric(client, /wren_limit_exceeded_total\{direction="outbound",limit="mesh-http2-streams-per-peer"\} (\d+)/)).toBe(0);
});
