import * as grpc from '@grpc/grpc-js';
import { connect as h2connect, createServer as createH2cServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import type { Proxy } from '../proxy/proxy.js';
import { parseGrpcTimeout } from '../proxy/resilience/grpc-timeout.js';
import { Ticker, type TickerClient } from './helpers/ticker-service.js';

/**
 * gRPC deadlines and long-lived streams through the outbound resilience layers. The
 * hanging backend is a raw HTTP/2 server that ignores grpc-timeout (a grpc-js server
 * would enforce the deadline itself) and is reached unmeshed, so DEADLINE_EXCEEDED can
 * only come from the client's sidecar.
 */

const pki = testPki();
let client: Proxy, server: Proxy;
let tickServer: grpc.Server, tickPort: number;
let hang: import('node:http2').Http2Server, hangPort: number;
const hangSeen: { headers: IncomingHttpHeaders; closedAt?: number; at: number }[] = [];
const clients: grpc.Client[] = [];

beforeAll(async () => {
  hang = createH2cServer();
  hang.on('stream', (stream: ServerHttp2Stream, headers) => {
    const rec: (typeof hangSeen)[number] = { headers, at: Date.now() };
    hangSeen.push(rec);
    stream.resume();
    stream.on('close', () => (rec.closedAt = Date.now()));
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
  hangPort = (hang.address() as AddressInfo).port;

  tickServer = new grpc.Server();
  tickServer.addService(Ticker.service, {
    Hang: () => undefined,
    Ticks: (call: grpc.ServerWritableStream<{ count: number; intervalMs: number }, { index: number }>) => {
      let i = 0;
      let t: NodeJS.Timeout | undefined;
      const next = () => {
        if (call.cancelled) return;
        if (i >= call.request.count) return void call.end();
        call.write({ index: i++ });
        t = setTimeout(next, call.request.intervalMs);
      };
      call.on('cancelled', () => clearTimeout(t));
      next();
    },
  });
  tickPort = await new Promise<number>((resolve, reject) =>
    tickServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  server = await startProxy({ pki, serviceAccount: 'ticker' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('hang', 50051, [{ appPort: hangPort, proxy: null }], { protocol: 'grpc' }),
      meshService('ticks', 50051, [{ appPort: tickPort, proxy: server }], { protocol: 'grpc' }),
      meshService('ticks-idle', 50051, [{ appPort: tickPort, proxy: server }], { protocol: 'grpc', policy: { timeouts: { idleMs: '1s' } } }),
    ],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await client.close();
  await server.close();
  await new Promise<void>((r) => tickServer.tryShutdown(() => r()));
  await new Promise((r) => hang.close(r));
});

const ticker = (authority: string): TickerClient => {
  const c = new Ticker(`127.0.0.1:${client.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority }) as TickerClient;
  clients.push(c);
  return c;
};

test('a raw gRPC request with grpc-timeout 500m to a hanging backend gets DEADLINE_EXCEEDED from the sidecar in about 500 ms', async () => {
  const seenBefore = hangSeen.length;
  const session = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  try {
    const t0 = Date.now();
    const stream = session.request({
      ':method': 'POST',
      ':path': '/wren.resilience.Ticker/Hang',
      ':authority': 'hang:50051',
      'content-type': 'application/grpc',
      te: 'trailers',
      // 500 ms, not 100: the backend must see the request (to show what was propagated) before
      // the deadline, and with the suite sharing 2 CPUs the hop took over 100 ms once.
      'grpc-timeout': '500m',
    });
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    const headers = await new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
    const took = Date.now() - t0;
    stream.resume();
    // Trailers-only response, as the gRPC spec wants for an immediate error.
    expect(headers[':status']).toBe(200);
    expect(headers['grpc-status']).toBe('4');
    expect(headers['wren-proxy-error']).toBe('deadline-exceeded');
    expect(took).toBeGreaterThanOrEqual(480);
    expect(took).toBeLessThan(1500);
    // The deadline was propagated (what was left of it) and the upstream stream cancelled.
    const rec = hangSeen[seenBefore];
    const propagated = parseGrpcTimeout(String(rec.headers['grpc-timeout']));
    expect(propagated).not.toBeNull();
    expect(propagated!).toBeGreaterThan(0);
    expect(propagated!).toBeLessThanOrEqual(500);
    const end = Date.now() + 1000;
    while (rec.closedAt === undefined && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(rec.closedAt).toBeDefined();
    expect(rec.closedAt! - t0).toBeLessThan(1500);
  } finally {
    session.close();
  }
});

test('a grpc-js call with a 100 ms deadline to a hanging backend fails with DEADLINE_EXCEEDED in about 100 ms', async () => {
  const c = ticker('hang:50051');
  const t0 = Date.now();
  const err = await new Promise<grpc.ServiceError>((resolve) =>
    c.Hang({ count: 1 }, { deadline: new Date(Date.now() + 100) }, (e: grpc.ServiceError | null) => resolve(e!)),
  );
  const took = Date.now() - t0;
  expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  expect(took).toBeGreaterThanOrEqual(80);
  expect(took).toBeLessThan(1000);
});

function collect(c: TickerClient, req: { count: number; intervalMs: number }): Promise<{ ticks: number[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const ticks: number[] = [];
    const call = c.Ticks(req);
    call.on('data', (t: { index: number }) => ticks.push(t.index));
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => resolve({ ticks, status }));
  });
}

test('server streams outlive every default timeout; an idle timeout only ends a stream that goes quiet', async () => {
  const t0 = Date.now();
  const [plain, idleButBusy, idleAndQuiet] = await Promise.all([
    collect(ticker('ticks:50051'), { count: 15, intervalMs: 200 }),
    collect(ticker('ticks-idle:50051'), { count: 15, intervalMs: 200 }),
    collect(ticker('ticks-idle:50051'), { count: 3, intervalMs: 1500 }),
  ]);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(2800);
  expect(plain.status.code).toBe(grpc.status.OK);
  expect(plain.ticks).toEqual([...Array(15).keys()]);
  // Messages every 200 ms keep a 1 s idle timeout from firing.
  expect(idleButBusy.status.code).toBe(grpc.status.OK);
  expect(idleButBusy.ticks.length).toBe(15);
  // 1.5 s of silence after the first message: ended in-band with DEADLINE_EXCEEDED trailers.
  expect(idleAndQuiet.ticks).toEqual([0]);
  expect(idleAndQuiet.status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  expect(idleAndQuiet.status.metadata.get('wren-proxy-error')).toEqual(['idle-timeout']);
});
