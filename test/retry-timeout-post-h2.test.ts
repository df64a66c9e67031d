import { connect as h2connect } from 'node:http2';
import type { Proxy } from '../proxy/proxy.js';
import { parseService } from '../contract/parse.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';
import { compileRouteManifests } from './helpers/routes.js';
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
let client: Proxy, server: Proxy, h2Client: Proxy;
let echo: EchoBackend;
const { route: httpRoute, use: useRoutes } = webRoutes(() => client, () => server, () => ({ web: { port: echo.port }, echo: { port: echo.port } }));
// The same routes for HTTP/2 callers, through a client sidecar with protocol.meshHttp2 `h2`.
const h2Routes = webRoutes(() => h2Client, () => server, () => ({ web: { port: echo.port, protocol: 'http2' }, echo: { port: echo.port, protocol: 'http2' } }));
const tries = (path: string) => echo.seen.filter((e) => e.path === path).length;

beforeAll(async () => {
  echo = await httpEchoBackend('echo');
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [], config: { protocol: { meshHttp1: 'h2' } } });
  h2Client = await startProxy({ pki, serviceAccount: 'client', services: [], config: { protocol: { meshHttp2: 'h2' } } });
});

afterAll(async () => {
  await h2Client.close();
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

/**
 * One bodyless HTTP/2 request (h2c, prior knowledge) through a sidecar's outbound port: the
 * response's status. Bodyless: a body the retry layer had started to read counts as sent
 * whatever the attempt said, so only a bodyless POST shows what the attempt says.
 */
async function sendH2(outboundPort: number, authority: string, path: string, method: string): Promise<number> {
  const session = h2connect(`http://127.0.0.1:${outboundPort}`);
  session.on('error', () => undefined);
  try {
    const req = session.request({ ':method': method, ':path': path, ':authority': authority }, { endStream: true });
    const status = await new Promise<number>((resolve, reject) => {
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
    });
    req.resume();
    await new Promise((r) => req.on('close', r));
    return status;
  } finally {
    session.close();
  }
}

const timedOutRule = { timeouts: { backendRequest: '500ms' }, retry: { attempts: 2, codes: [503] }, backendRefs: [{ name: 'echo', port: 80 }] };

test('the same on an HTTP/2 session to the peer for an HTTP/2 caller (protocol.meshHttp2 h2): the POST once, a GET three times (adv67)', async () => {
  h2Routes.use(h2Routes.route('slow', [timedOutRule]));
  const post = '/timed-out-post-mesh-h2?delayMs=5000';
  expect(await sendH2(h2Client.outboundPort, 'web', post, 'POST')).toBe(504);
  const get = '/timed-out-get-mesh-h2?delayMs=5000';
  expect(await sendH2(h2Client.outboundPort, 'web', get, 'GET')).toBe(504);
  expect({ post: tries(post), get: tries(get) }).toEqual({ post: 1, get: 3 });
});

test('the same to an unmeshed HTTP/2 endpoint (h2c, no sidecar in front): the POST once, a GET three times (adv67)', async () => {
  const manifests = [h2Routes.route('slow-unmeshed', [timedOutRule])];
  const names = new Set(['web', 'echo']);
  const routes = compileRouteManifests(manifests, (ns, name) => (ns === 'default' && names.has(name) ? { ports: [{ name: '', port: 80 }] } : undefined));
  const services = [...names].map((name) =>
    parseService({ name, ports: [{ port: 80, protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: echo.port }] }], routes: routes.get(`${name}.default`) }, name),
  );
  h2Client.applySnapshot({ version: 'unmeshed', source: 'test', services });
  const post = '/timed-out-post-unmeshed-h2?delayMs=5000';
  expect(await sendH2(h2Client.outboundPort, 'web', post, 'POST')).toBe(504);
  const get = '/timed-out-get-unmeshed-h2?delayMs=5000';
  expect(await sendH2(h2Client.outboundPort, 'web', get, 'GET')).toBe(504);
  expect({ post: tries(post), get: tries(get) }).toEqual({ post: 1, get: 3 });
});
