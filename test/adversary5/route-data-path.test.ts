import type { Proxy } from '../../proxy/proxy.js';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from '../helpers/route-backends.js';
import { timedGet as timedGetOn } from '../helpers/timed-get.js';
import { webRoutes } from '../helpers/web-routes.js';

/**
 * HTTPRoute semantics on the data path (docs/traffic-management.md, In the proxy) against
 * the Gateway API v1.6.1 spec: a client sidecar with the routes, a server sidecar in front
 * of the backends, as test/gamma-routes.test.ts builds it. (ADV5-2, the backendRequest
 * timeout over the full response, lives in test/route-backend-request-timeout.test.ts.)
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let echo: EchoBackend;

const { route: httpRoute, use: useRoutes } = webRoutes(() => client, () => server, () => ({ web: { port: echo.port }, echo: { port: echo.port } }));
/** A GET through the client sidecar: status, the body received, whether the response completed, and how long it took. */
const timedGet = (path: string) => timedGetOn(client.outboundPort, path);

beforeAll(async () => {
  echo = await httpEchoBackend('echo');
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [] });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await echo.close();
});

/**
 * ADV5-8: RE2 syntax that the Gateway API's regex matches are written in (Envoy's safe_regex,
 * Istio, and docs/traffic-management.md "RE2 (the syntax the spec points at)") passes the
 * control plane's and the proxy's validation (`new RegExp` compiles it) but means something
 * else to V8 without the `u` flag: `[[:digit:]]` is a character class of `[:digt` followed by
 * `]`, `\Q..\E` are the letters Q and E, `\pL` is the letter p, `\z` is the letter z. The route
 * is Accepted and silently never matches what its author wrote: requests fall through to
 * another rule or get 404. What should happen: the RE2 meaning, or the route refused with
 * the field path (never a silent different meaning).
 */
test.each([
  ['POSIX class', '/items/[[:digit:]]+', '/items/42'],
  ['\\Q..\\E literal', '/v1/\\Qa.b\\E/.*', '/v1/a.b/x'],
  ['\\pL Unicode class', '/u/\\pL+', '/u/abc'],
  ['\\z end of text', '/x\\z', '/x'],
])('ADV5-8: an RE2 %s in a RegularExpression path means what RE2 says', async (_what, regex, path) => {
  // ADVERSARY: ADV5-8
  try {
    useRoutes(httpRoute('re2', [{ matches: [{ path: { type: 'RegularExpression', value: regex } }], backendRefs: [{ name: 'echo', port: 80 }] }]));
  } catch (e) {
    // Refused by the control plane's or the proxy's validation, naming the field: acceptable.
    expect(String(e)).toMatch(/path\.value/);
    return;
  }
  const r = await timedGet(path);
  // On main: 404 route-not-matched.
  expect([regex, path, r.status]).toEqual([regex, path, 200]);
});

/**
 * ADV5-11: the client sidecar matches routes on the path as sent, but the server sidecar
 * normalizes it (proxy/http/normalize-path.ts: dot segments removed, %-encoded unreserved
 * characters decoded, Istio's BASE) before the app sees it. So a request takes the route of
 * one path and the app serves another.
 *
 * What a user does: an HTTPRoute keeps `/admin` away from the general backend (here: a rule
 * that redirects `/admin` to a login page; equally a rule sending it to a hardened backend,
 * or to none: 404). What an attacker does: asks for `/./admin/users`, `/%61dmin/users` or
 * `/x/../admin/users`. What happens: no `/admin` rule matches the raw path, the catch-all
 * rule sends it to the general backend, and that backend's app receives `/admin/users`.
 * What should happen: one path for both decisions: Envoy (Istio's default pathNormalization
 * BASE: normalize_path before route matching) routes on the normalized path, so the request
 * takes the `/admin` rule (or is refused); docs/traffic-management.md's "Paths are compared as
 * sent" does not hold at the app. (The inbound authorization bypass of the same shape was
 * fixed by normalizing at the inbound; the outbound route decision was left on the raw path.)
 */
test.each(['/./admin/users', '/%61dmin/users', '/x/../admin/users', '/x/%2e%2e/admin/users', '/x\\..\\admin/users'])('ADV5-11: %s does not reach the catch-all backend as /admin/users', async (path) => {
  // ADVERSARY: ADV5-11
  useRoutes(httpRoute('admin', [
    { matches: [{ path: { type: 'PathPrefix', value: '/admin' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/login' }, statusCode: 302 } }] },
    { backendRefs: [{ name: 'echo', port: 80 }] },
  ]));
  // Control: the plain path takes the /admin rule.
  expect((await send(client.outboundPort, 'web', '/admin/users')).headers['location']).toBe('http://web/login');
  const r = await send(client.outboundPort, 'web', path);
  // On main: 200 from the catch-all backend, which received the path /admin/users.
  expect({ path, catchAllServed: r.echoed?.path ?? null }).toEqual({ path, catchAllServed: null });
});
