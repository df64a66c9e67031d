import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../../proxy/proxy.js';
import { parseService } from '../../contract/parse.js';
import type { Service } from '../../contract/model.js';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { compileRouteManifests, type RouteManifest } from '../helpers/routes.js';
import { httpEchoBackend, send, type EchoBackend } from '../helpers/route-backends.js';

/**
 * HTTPRoute semantics on the data path (docs/traffic-management.md, In the proxy) against
 * the Gateway API v1.6.1 spec: a client sidecar with the routes, a server sidecar in front
 * of the backends, as test/gamma-routes.test.ts builds it.
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let echo: EchoBackend;
let slow: Server;
let slowPort = 0;
let version = 0;

/** Answers headers at once, then the body's last byte after `?bodyMs=N` (a backend that starts a response and stalls). */
function slowBody(): Promise<Server> {
  const s = createServer((req, res) => {
    req.resume();
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('bodyMs') ?? 0);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('start;');
    const t = setTimeout(() => res.end('end'), ms);
    res.on('close', () => clearTimeout(t));
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

const parent = { group: '', kind: 'Service', name: 'web', port: 80 };
const httpRoute = (name: string, rules: Record<string, unknown>[]): RouteManifest => ({ kind: 'HTTPRoute', metadata: { name }, spec: { parentRefs: [parent], rules } });

function services(manifests: readonly RouteManifest[]): Service[] {
  const known: Record<string, number[]> = { web: [80], echo: [80], slow: [80] };
  const routes = compileRouteManifests(manifests, (ns, name) => (ns === 'default' && known[name] ? { ports: known[name].map((port) => ({ name: '', port })) } : undefined));
  const svc = (name: string, port: number) =>
    parseService({ name, ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port, proxyPort: server.inboundPort, identity: server.tls.spiffeId }] }], routes: routes.get(`${name}.default`) }, name);
  return [svc('web', echo.port), svc('echo', echo.port), svc('slow', slowPort)];
}

const useRoutes = (...m: RouteManifest[]): void => void client.applySnapshot({ version: String(++version), source: 'test', services: services(m) });

/** A GET through the client sidecar: status, the body received, whether the response completed, and how long it took. */
function timedGet(path: string): Promise<{ status: number; body: string; complete: boolean; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete, ms: Date.now() - t0 }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body, complete: false, ms: Date.now() - t0 }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, body, complete: false, ms: Date.now() - t0 }));
    });
    req.on('error', () => resolve({ status: 0, body: '', complete: false, ms: Date.now() - t0 }));
    req.end();
  });
}

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
