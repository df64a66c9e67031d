import * as grpc from '@grpc/grpc-js';
import type { Proxy } from '../proxy/proxy.js';
import { heldRelay, type HeldRelay } from './helpers/held-relay.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { Ticker, type TickerClient } from './helpers/ticker-service.js';
import { webRoutes } from './helpers/web-routes.js';

/**
 * An HTTPRoute rule's `timeouts.backendRequest` in the `grpc-timeout` sent upstream: a
 * grpc-js client through a client sidecar (the route) and a server sidecar to a grpc-js
 * server that records the deadline it was given (grpc-js reads grpc-timeout into
 * getDeadline()). Each try is cut at backendRequest, so the upstream is told so, as it is
 * told a TrafficPolicy per-try timeout (retry.ts attemptHeaders) and as Envoy writes a
 * per-try timeout into grpc-timeout. And what the header says is the time the try has once
 * it is sent: a try that waited for its connection to the peer sidecar (held back by a
 * relay, as test/per-try-connect-wait.test.ts holds it) is told the deadline left after
 * the wait, not before it, on the HTTP/2 session to the peer (protocol.meshHttp2: h2; the
 * default mux transport writes the request head before the wait: docs/resilience.md).
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let app: grpc.Server;
let appPort = 0;
/** Each call's deadline as the app saw it, in ms from its arrival (Infinity: none). */
const left: number[] = [];
let ticker: TickerClient;
/** Its own client sidecar (gRPC on HTTP/2 sessions to peers), whose first connection to the server sidecar a relay holds back HOLD_MS. */
let heldClient: Proxy;
let heldTicker: TickerClient;
const HOLD_MS = 1000;
let relay: HeldRelay;
const viaRelay = (): Proxy => Object.create(server, { inboundPort: { value: relay.port } }) as Proxy;
const held = webRoutes(() => heldClient, viaRelay, () => ({
  web: { port: appPort, protocol: 'grpc' },
  // The connect timeout (default 1 s) well above the hold: the try waits it out.
  ticker: { port: appPort, protocol: 'grpc', policy: { timeouts: { connectMs: '10s' } } },
}));

const { route, use } = webRoutes(() => client, () => server, () => ({
  web: { port: appPort, protocol: 'grpc' },
  ticker: { port: appPort, protocol: 'grpc' },
}));

beforeAll(async () => {
  app = new grpc.Server();
  app.addService(Ticker.service, {
    Hang: (call: grpc.ServerUnaryCall<{ count: number }, { index: number }>, cb: grpc.sendUnaryData<{ index: number }>) => {
      const d = call.getDeadline();
      left.push(d instanceof Date ? d.getTime() - Date.now() : Number(d) - Date.now());
      cb(null, { index: call.request.count });
    },
    Ticks: () => undefined,
  });
  appPort = await new Promise<number>((resolve, reject) => app.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [] });
  ticker = new Ticker(`127.0.0.1:${client.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'web:80' }) as TickerClient;
  heldClient = await startProxy({ pki, serviceAccount: 'client', services: [], config: { protocol: { meshHttp2: 'h2' } } });
  heldTicker = new Ticker(`127.0.0.1:${heldClient.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'web:80' }) as TickerClient;
  relay = await heldRelay(() => server.inboundPort, HOLD_MS);
});

afterAll(async () => {
  ticker.close();
  heldTicker.close();
  await client.close();
  await heldClient.close();
  await relay.close();
  await server.close();
  await new Promise<void>((r) => app.tryShutdown(() => r()));
});

/** One call with a deadline `deadlineMs` away: the deadline the app saw, in ms. */
async function seenDeadline(deadlineMs: number, via = ticker): Promise<number> {
  left.length = 0;
  await new Promise<void>((resolve, reject) =>
    via.Hang({ count: 1 }, { deadline: new Date(Date.now() + deadlineMs) }, (e: grpc.ServiceError | null) => (e ? reject(e) : resolve())),
  );
  expect(left).toHaveLength(1);
  return left[0];
}

test('a backendRequest shorter than the caller deadline is the grpc-timeout the upstream gets', async () => {
  use(route('grpc', [{ timeouts: { request: '10s', backendRequest: '500ms' }, backendRefs: [{ name: 'ticker', port: 80 }] }]));
  const ms = await seenDeadline(5000);
  // Never more than the try has (rounded down on the way), and not far below it (the
  // time in the two sidecars and the server's own reading).
  expect({ atMostTry: ms <= 500, nearTry: ms > 250 }).toEqual({ atMostTry: true, nearTry: true });
});

test('a caller deadline sooner than backendRequest stays what the upstream gets', async () => {
  use(route('grpc', [{ timeouts: { request: '10s', backendRequest: '5s' }, backendRefs: [{ name: 'ticker', port: 80 }] }]));
  const ms = await seenDeadline(1500);
  expect({ atMostLeft: ms <= 1500, nearLeft: ms > 1000 }).toEqual({ atMostLeft: true, nearLeft: true });
});

test('a try that waited for its connection is told the deadline left once it is sent, not as the try started', async () => {
  held.use(held.route('grpc', [{ timeouts: { request: '10s' }, backendRefs: [{ name: 'ticker', port: 80 }] }]));
  const t0 = Date.now();
  const ms = await seenDeadline(3000, heldTicker);
  // The first try waited out the held connection (HOLD_MS and more: the TCP connect, the
  // mTLS handshake): the caller had at most 3000 - HOLD_MS left when the request went out.
  expect(Date.now() - t0).toBeGreaterThanOrEqual(HOLD_MS);
  expect({ atMostLeftOnceSent: ms <= 3000 - HOLD_MS, nearIt: ms > 1000 }).toEqual({ atMostLeftOnceSent: true, nearIt: true });
});
