import * as grpc from '@grpc/grpc-js';
import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { echoClient, fakeGrpc, type EchoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';
import { webRoutes } from './helpers/web-routes.js';

/**
 * What an HTTPRoute rule's `retry` retries besides its `codes` (HTTPRouteRetry, GEP-1731;
 * docs/traffic-management.md, Timeouts and retries): a try that reached the rule's
 * `timeouts.backendRequest` ("SHOULD be canceled ... and the Gateway SHOULD schedule the
 * next retry attempt"), and a request the backend "explicitly rejected ... before
 * processing it (e.g., HTTP/2 REFUSED_STREAM, gRPC UNAVAILABLE)". A client sidecar with the
 * routes, a server sidecar in front of the backends (test/helpers/web-routes.ts).
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let echo: EchoBackend;
let fake: FakeGrpc;
let rpc: EchoClient;

const { route: httpRoute, use: useRoutes } = webRoutes(() => client, () => server, () => ({
  web: { port: echo.port }, echo: { port: echo.port }, 'grpc-app': { port: fake.port, protocol: 'grpc' },
}));
/** How many requests for `path` the echo backend received. */
const tries = (path: string) => echo.seen.filter((e) => e.path === path).length;

beforeAll(async () => {
  echo = await httpEchoBackend('echo');
  fake = await fakeGrpc();
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [] });
  rpc = echoClient(client.outboundPort, 'web:80');
});

afterAll(async () => {
  rpc.close();
  await client.close();
  await server.close();
  await echo.close();
  await fake.close();
});

test('a try that reaches timeouts.backendRequest is retried by the rule retry, whatever its codes (GEP-1731)', async () => {
  // Before: the rule's retry compiled to `retryOn: [retriable-status-codes]` alone, which a
  // timed-out try (no response, no status) never matches, so the backend saw one try and
  // the caller a 504, even with codes [504].
  // Each try's 500 ms run from when it has its connection to the server sidecar (the mTLS
  // handshake, 100 to 400 ms of the first try on a loaded machine, is not counted since
  // adv62: test/per-try-connect-wait.test.ts), and cover its way on to the app: up to 130 ms
  // seen on a loaded machine, where 150 ms a try left too little (2 tries of 3 once).
  useRoutes(httpRoute('slow', [{ timeouts: { backendRequest: '500ms' }, retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'echo', port: 80 }] }]));
  const path = '/timed-out?delayMs=5000';
  const r = await send(client.outboundPort, 'web', path);
  expect({ status: r.status, error: r.headers['wren-proxy-error'], tries: tries(path) }).toEqual({ status: 504, error: 'request-timeout', tries: 3 });
});

test('the timeout retry keeps the idempotency rule: a POST that reached the backend is tried once', async () => {
  // 500 ms, as above: the try must reach the app before its time is up.
  useRoutes(httpRoute('slow', [{ timeouts: { backendRequest: '500ms' }, retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'echo', port: 80 }] }]));
  const path = '/timed-out-post?delayMs=5000';
  const r = await send(client.outboundPort, 'web', path, { method: 'POST' });
  expect({ status: r.status, tries: tries(path) }).toEqual({ status: 504, tries: 1 });
});

test('a gRPC call answered UNAVAILABLE is retried by an HTTPRoute rule retry (lead L1)', async () => {
  useRoutes(httpRoute('grpc', [{ retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'grpc-app', port: 80 }] }]));
  const before = fake.started.length;
  const err = await new Promise<grpc.ServiceError | null>((resolve) => rpc.Unary({ message: 'x', failCode: grpc.status.UNAVAILABLE }, (e: grpc.ServiceError | null) => resolve(e)));
  expect({ code: err?.code, calls: fake.started.length - before }).toEqual({ code: grpc.status.UNAVAILABLE, calls: 3 });
  // A status the rule does not name (INTERNAL, 500 mapped; codes [503]) is not retried.
  const before2 = fake.started.length;
  const err2 = await new Promise<grpc.ServiceError | null>((resolve) => rpc.Unary({ message: 'x', failCode: grpc.status.INTERNAL }, (e: grpc.ServiceError | null) => resolve(e)));
  expect({ code: err2?.code, calls: fake.started.length - before2 }).toEqual({ code: grpc.status.INTERNAL, calls: 1 });
});

test('a POST answered with a listed code is not retried, a GET is (docs/traffic-management.md: retryNonIdempotent, lead L2)', async () => {
  useRoutes(httpRoute('codes', [{ retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'echo', port: 80 }] }]));
  const post = '/busy-post?status=503';
  expect((await send(client.outboundPort, 'web', post, { method: 'POST' })).status).toBe(503);
  const get = '/busy-get?status=503';
  expect((await send(client.outboundPort, 'web', get)).status).toBe(503);
  expect({ post: tries(post), get: tries(get) }).toEqual({ post: 1, get: 3 });
});
