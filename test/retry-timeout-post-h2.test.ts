import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';
import { webRoutes } from './helpers/web-routes.js';

/**
 * A POST whose try timed out after it reached the app is not tried again (RFC 9110 section
 * 9.2.2; GEP-1731 keeps the idempotency rule), on every transport to the peer sidecar. On an
 * HTTP/2 session (protocol.meshHttp1 `h2`, and any HTTP/2 upstream) the try's timeout
 * (`timeouts.backendRequest`) settled the try above pick-endpoint before pick-endpoint had
 * recorded that the request went out: the retry layer read "not sent" and retried the POST
 * twice more (test/route-rule-retry.test.ts's POST case, run with WREN_TEST_MESH_HTTP1=h2:
 * 3 tries of 1).
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let echo: EchoBackend;
const { route: httpRoute, use: useRoutes } = webRoutes(() => client, () => server, () => ({ web: { port: echo.port }, echo: { port: echo.port } }));
const tries = (path: string) => echo.seen.filter((e) => e.path === path).length;

beforeAll(async () => {
  echo = await httpEchoBackend('echo');
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [], config: { protocol: { meshHttp1: 'h2' } } });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await echo.close();
});

test('a POST that reached the app and timed out is tried once on an HTTP/2 session to the peer; a GET three times (adv62)', async () => {
  useRoutes(httpRoute('slow', [{ timeouts: { backendRequest: '500ms' }, retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'echo', port: 80 }] }]));
  const post = '/timed-out-post-h2?delayMs=5000';
  expect((await send(client.outboundPort, 'web', post, { method: 'POST' })).status).toBe(504);
  const get = '/timed-out-get-h2?delayMs=5000';
  expect((await send(client.outboundPort, 'web', get)).status).toBe(504);
  expect({ post: tries(post), get: tries(get) }).toEqual({ post: 1, get: 3 });
});
