import { request as httpRequest } from 'node:http';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV6-6. A peer sidecar refuses streams over its limits.maxConcurrentStreams (RESET
 * code Refused, mux-session.ts onData). A refused stream was never processed: HTTP/2 lets
 * the client retry it whatever its method (RFC 9113 section 8.7, REFUSED_STREAM), and on
 * `h1` the same request would have waited for a connection (meshHttp1MaxConnectionsPerPeer
 * is the caller's only bound). The caller's pool neither learns the peer's limit nor
 * retries: the requests over it fail with 502 (the session is fine).
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: { maxConcurrentStreams: 2 } } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: 'mux', meshHttp1MaxConnectionsPerPeer: 8 } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

function get(path: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve(`${r.statusCode} ${body.trim()}`));
    });
    req.on('error', (e) => resolve(e.message));
    req.end();
  });
}

test('requests over the peer\'s stream limit are not failed by its refusal', async () => {
  const all = await Promise.all(Array.from({ length: 8 }, () => get('/slow?ms=200')));
  expect(all).toEqual(Array(8).fill('200 slow web'));
}, 20_000);
