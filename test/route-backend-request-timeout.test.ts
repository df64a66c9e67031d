import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { httpEchoBackend, type EchoBackend } from './helpers/route-backends.js';
import { timedGet as timedGetOn } from './helpers/timed-get.js';
import { webRoutes } from './helpers/web-routes.js';

/**
 * ADV5-2 (found by adversary5). HTTPRoute semantics on the data path (docs/traffic-management.md, In the proxy) against
 * the Gateway API v1.6.1 spec: a client sidecar with the routes, a server sidecar in front
 * of the backends, as test/gamma-routes.test.ts builds it.
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let echo: EchoBackend;
let slow: Server;
let slowPort = 0;

/** Answers headers after `?headMs=N`, then the body's last byte after `?bodyMs=N` (a backend that starts a response and stalls). */
function slowBody(): Promise<Server> {
  const s = createServer((req, res) => {
    req.resume();
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    const ms = Number(q.get('bodyMs') ?? 0);
    const headMs = Number(q.get('headMs') ?? 0);
    if (headMs > 0) {
      const h = setTimeout(() => res.writeHead(200).end('late'), headMs);
      res.on('close', () => clearTimeout(h));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('start;');
    const t = setTimeout(() => res.end('end'), ms);
    res.on('close', () => clearTimeout(t));
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

// slow's own TrafficPolicy: a 300 ms per-try timeout (Envoy's per_try_timeout: up to the response headers).
const { route: httpRoute, use: useRoutes } = webRoutes(() => client, () => server, () => ({
  web: { port: echo.port }, echo: { port: echo.port }, slow: { port: slowPort, policy: { retry: { perTryTimeoutMs: 300 } } },
}));
/** A GET through the client sidecar: status, the body received, whether the response completed, and how long it took. */
const timedGet = (path: string) => timedGetOn(client.outboundPort, path);

beforeAll(async () => {
  echo = await httpEchoBackend('echo');
  slow = await slowBody();
  slowPort = (slow.address() as AddressInfo).port;
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [] });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await echo.close();
  slow.closeAllConnections();
  await new Promise((r) => slow.close(r));
});

test('ADV5-2: timeouts.backendRequest bounds one try up to the FULL response, as the spec says', async () => {
  // ADVERSARY: ADV5-2
  // A user sets `timeouts: { request: 10s, backendRequest: 500ms }` so that one slow try of a
  // backend cannot hold a caller for long. The backend answers its headers at once and then
  // stalls for 3 s before the end of its body. The Gateway API (HTTPRouteTimeouts.backendRequest,
  // v1.6.1 CRD): "This covers the time from when the request first starts being sent from the
  // gateway to when the full response has been received from the backend." Expected: the try is
  // cut at about 500 ms (the response is reset: headers were already sent). On main the per-try
  // timer stops at the response headers (proxy/layers/retry.ts: "the per-try timeout covers one
  // attempt up to its response headers"), so the caller waits the full 3 s and gets a complete body.
  useRoutes(httpRoute('slow', [{ timeouts: { request: '10s', backendRequest: '500ms' }, backendRefs: [{ name: 'slow', port: 80 }] }]));
  const r = await timedGet('/?bodyMs=3000');
  expect({ fullBodyDelivered: r.complete && r.body === 'start;end', endedWithin2s: r.ms < 2000 }).toEqual({ fullBodyDelivered: false, endedWithin2s: true });
});

test('backendRequest: a response that completes within it is delivered whole (the timer ends with the body)', async () => {
  useRoutes(httpRoute('slow', [{ timeouts: { request: '10s', backendRequest: '800ms' }, backendRefs: [{ name: 'slow', port: 80 }] }]));
  const r = await timedGet('/?bodyMs=200');
  expect({ status: r.status, body: r.body, complete: r.complete }).toEqual({ status: 200, body: 'start;end', complete: true });
  // And it did not fire later on the idle connection either: a second request works the same.
  await new Promise((res) => setTimeout(res, 800));
  expect((await timedGet('/?bodyMs=0')).body).toBe('start;end');
});

test('backendRequest before the response headers: the try fails with 504 request-timeout', async () => {
  useRoutes(httpRoute('slow', [{ timeouts: { request: '10s', backendRequest: '300ms' }, backendRefs: [{ name: 'slow', port: 80 }] }]));
  const r = await timedGet('/?headMs=3000');
  expect({ status: r.status, within: r.ms < 2000 }).toEqual({ status: 504, within: true });
});

test('the TrafficPolicy per-try timeout keeps Envoy semantics (headers only): without backendRequest a body stalled past it still arrives', async () => {
  useRoutes(httpRoute('slow', [{ timeouts: { request: '10s' }, backendRefs: [{ name: 'slow', port: 80 }] }]));
  const r = await timedGet('/?bodyMs=700');
  expect({ body: r.body, complete: r.complete }).toEqual({ body: 'start;end', complete: true });
});
