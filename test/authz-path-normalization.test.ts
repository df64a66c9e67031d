import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (authz-encoded-dot-segments).
 *
 * What an attacker does: a mesh client that a DENY AuthorizationPolicy keeps off
 * `/admin` asks for `/public/%2e%2e/admin` (or `.%2E`, `/public\..\admin`, `/%61dmin`, or
 * the request-target `*` + `/../admin`, which is none of RFC 9112 section 3.2's four forms).
 *
 * What happens: the authorizer matches paths after normalizePath (policy/match.ts), which
 * resolves literal `.`/`..` segments only. A percent-encoded dot segment, a backslash
 * separator or a percent-encoded unreserved letter is left as is, so the DENY on `/admin`
 * does not match and the request is delivered with its raw path. The app resolves the
 * path the usual way: the WHATWG URL parser (`new URL(req.url, base).pathname`), which
 * treats `%2e`/`%2E` as a dot in a dot segment and `\` as `/` for http(s) (URL Standard,
 * "path state": single-dot / double-dot URL path segment), then percent-decodes it as Go's
 * net/http and WSGI do (`/%61dmin` is /admin; RFC 3986 section 6.2.2.2 decodes unreserved
 * %XX, including %2E, before section 5.2.4 removes dot segments), and serves /admin.
 *
 * A target that is not origin-form (`*` + `/../admin`) is accepted too: normalizePath keeps
 * its `*` segment, WHATWG URL resolves it against the base to `/admin`.
 *
 * What should happen: the path the policy judges is the path the app will act on. Istio's
 * default pathNormalization BASE (Envoy normalize_path, Chromium's URL canonicalizer)
 * resolves `%2e` dot segments and backslashes before RBAC and forwards the normalized
 * path; either normalize like that (and forward what was judged) or refuse the request.
 * Istio security best practices, "Authorization policies and path normalization".
 */
const pki = testPki();
let server: Proxy, client: Proxy;
let close: () => Promise<void>;

beforeAll(async () => {
  const l = await listenOnLoopback(createServer((req: IncomingMessage, res: ServerResponse) => {
    // How apps route: the WHATWG URL parser's pathname, percent-decoded (Go's net/http
    // routes on the decoded URL.Path, Python's WSGI PATH_INFO is decoded too).
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://app.local').pathname);
    req.resume();
    res.setHeader('x-raw-url', req.url ?? '');
    res.end(path === '/admin' ? 'ADMIN PANEL' : `page ${path}`);
  }));
  close = l.close;
  const policy = { authorizationPolicies: [{ name: 'default/no-admin', action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }] }] };
  server = await startProxy({ pki, serviceAccount: 'web', config: { policy } });
  client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: l.port, proxy: server }])] });
}, 20_000);

afterAll(async () => {
  await client.close();
  await server.close();
  await close();
});

function get(path: string): Promise<{ status: number; body: string; rawUrl?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ...(res.headers['x-raw-url'] !== undefined ? { rawUrl: String(res.headers['x-raw-url']) } : {}) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('sanity: /admin and /public/../admin are denied, /public is served', async () => {
  expect((await get('/admin')).status).toBe(403);
  expect((await get('/public/../admin')).status).toBe(403);
  expect(await get('/public')).toMatchObject({ status: 200, body: 'page /public' });
});

test.each(['/public/%2e%2e/admin', '/public/.%2E/admin', '/public/%2E./admin', '/public\\..\\admin', '/%61dmin', '*/../admin'])('DENY /admin is not bypassed by %s', async (path) => {
  const r = await get(path);
  expect(r.body).not.toBe('ADMIN PANEL');
  // Denied (normalized as Istio does) or refused as malformed: either way not served.
  expect([400, 403]).toContain(r.status);
});

test('the app receives the path that was judged, the query untouched (Istio forwards the normalized path)', async () => {
  expect(await get('/public/%2e/./x/%7e/../y?q=/../%2e')).toMatchObject({ status: 200, rawUrl: '/public/x/y?q=/../%2e' });
  expect(await get('/public/%2Fencoded-slash')).toMatchObject({ status: 200, rawUrl: '/public/%2Fencoded-slash' });
});
