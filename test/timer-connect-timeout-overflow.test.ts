import { createServer, request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { fakeApp, listenOnLoopback, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The duration-timer overflow (test/timer-grpc-timeout-overflow.test.ts,
 * timer-jwks-refresh-overflow.test.ts, proxy/mux/mux-long-timeouts.test.ts) in the connect
 * path: a TrafficPolicy `timeouts.connectMs: 720h` (the parser takes any duration) armed
 * Node's setTimeout directly where the peer session is opened (peer-pool.ts), and Node fires
 * a delay past 2^31-1 ms after 1 ms: every request to the service failed at once with
 * 504 connect-timeout. HTTP/2 between sidecars (meshHttp1 h2) takes that path for HTTP/1.1
 * requests too. The same where a request waits for a free connection of an HTTP/1.1 pool
 * (circuitBreaker.maxConnections reached), bounded by the connect timeout
 * (h1-pool-exchange.ts): it failed 1 ms later with 503 overflow instead of waiting.
 */
const pki = testPki();
let app: FakeApp;
let server: Proxy;
let client: Proxy;
let slow: { port: number; close(): Promise<void> };

beforeAll(async () => {
  app = await fakeApp('web');
  slow = await listenOnLoopback(createServer((_req, res) => setTimeout(() => res.end('slow'), 100)));
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki, serviceAccount: 'client',
    services: [
      meshService('web', 80, [{ appPort: app.port, proxy: server }], { policy: { timeouts: { connectMs: '720h' } } }),
      // Unmeshed (no sidecar): HTTP/1.1 from the client sidecar's own pool, one connection at most.
      meshService('slow', 80, [{ appPort: slow.port, proxy: null }], { policy: { timeouts: { connectMs: '720h' }, circuitBreaker: { maxConnections: 1 } } }),
    ],
    config: { protocol: { meshHttp1: 'h2' } },
  });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close()]);
  await Promise.all([app.close(), slow.close()]);
});

function get(host: string): Promise<{ status: number; error: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/name', headers: { host } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, error: String(res.headers['wren-proxy-error'] ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a service whose connect timeout is 720h (accepted by the parser) serves requests', async () => {
  expect(await get('web')).toEqual({ status: 200, error: '' });
});

test('a request waiting for the one connection circuitBreaker.maxConnections allows waits (connect timeout 720h)', async () => {
  expect(await Promise.all([get('slow'), get('slow')])).toEqual([{ status: 200, error: '' }, { status: 200, error: '' }]);
});
