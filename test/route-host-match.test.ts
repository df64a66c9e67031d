import { connect } from 'node:http2';
import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';
import { webRoutes } from './helpers/web-routes.js';

/**
 * An HTTPRoute header match on `Host` (adv10 F3). The listeners keep the Host field
 * (HTTP/1.1) or `:authority` (HTTP/2) as the request's authority, not among its headers, so
 * the matcher, which read the headers, never saw one and the rule took no request. Envoy
 * matches a `host` header matcher against `:authority`. A client sidecar with the routes, a
 * server sidecar in front of two echo backends (test/helpers/web-routes.ts).
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let a: EchoBackend, b: EchoBackend;

const { route: httpRoute, use: useRoutes } = webRoutes(() => client, () => server, () => ({
  web: { port: a.port }, a: { port: a.port }, b: { port: b.port },
}));

/** One HTTP/2 (h2c, prior knowledge) GET through the client sidecar with `:authority`; the backend that answered. */
function h2Backend(authority: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${client.outboundPort}`);
    session.on('error', reject);
    const req = session.request({ ':path': '/', ':authority': authority });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve((JSON.parse(Buffer.concat(chunks).toString()) as { backend: string }).backend);
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  [a, b] = await Promise.all([httpEchoBackend('a'), httpEchoBackend('b')]);
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [] });
  useRoutes(httpRoute('by-host', [
    { matches: [{ headers: [{ name: 'Host', value: 'web' }] }], backendRefs: [{ name: 'b', port: 80 }] },
    { backendRefs: [{ name: 'a', port: 80 }] },
  ]));
});

afterAll(async () => {
  await client.close();
  await server.close();
  await a.close();
  await b.close();
});

test('HTTP/1.1: a Host header match takes the request whose Host it names, and only that one', async () => {
  expect((await send(client.outboundPort, 'web', '/')).echoed?.backend).toBe('b');
  // Another spelling of the same Service's authority is another Host value: the catch-all rule.
  expect((await send(client.outboundPort, 'web:80', '/')).echoed?.backend).toBe('a');
});

test('HTTP/2: a Host header match reads :authority', async () => {
  expect(await h2Backend('web')).toBe('b');
  expect(await h2Backend('web:80')).toBe('a');
});
