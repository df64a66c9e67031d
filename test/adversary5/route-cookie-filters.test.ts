import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../../proxy/proxy.js';
import { parseService } from '../../contract/parse.js';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { compileRouteManifests } from '../helpers/routes.js';

/**
 * ADV5-15: a header filter that adds a cookie corrupts the cookies of the exchange.
 *
 * proxy/routing/filters.ts modifyHeaders `add` appends to an existing value by joining with
 * "," (fine for list-syntax fields, RFC 9110 section 5.3). Set-Cookie is the exception RFC
 * 9110 section 5.3 names: it "does not use the list syntax" and must stay one field line per
 * cookie (RFC 6265 section 3: "Origin servers SHOULD NOT fold multiple Set-Cookie header fields
 * into a single header field"); the Cookie request field joins pairs with "; " (RFC 6265
 * section 5.4), never ",". Envoy adds such a value as a header entry of its own.
 *
 * What a user does: the common sticky-canary recipe, a ResponseHeaderModifier on the canary rule
 * that adds `Set-Cookie: canary=v2; Path=/` (and a RequestHeaderModifier adding `Cookie:
 * canary=v2`). What happens: the app's own cookies and the added one arrive at the client as
 * ONE Set-Cookie line "session=abc; Path=/; HttpOnly,theme=dark; Path=/,canary=v2; Path=/"
 * (a browser keeps one cookie, `session`, with a garbled attribute list: the app's session
 * and theme cookies and the canary cookie are lost), and the app receives
 * `Cookie: session=abc,canary=v2` (its session id now reads "abc,canary=v2"). What should
 * happen: one Set-Cookie line per cookie, and `Cookie: session=abc; canary=v2`.
 */
const pki = testPki();
let client: Proxy, server: Proxy;
let app: Server;
let seenCookie: unknown;
beforeAll(async () => {
  app = createServer((req, res) => { seenCookie = req.headers['cookie']; res.setHeader('set-cookie', ['session=abc; Path=/; HttpOnly', 'theme=dark; Path=/']); res.end('ok'); });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  server = await startProxy({ pki, serviceAccount: 'backend' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [] });
  const known: Record<string, number[]> = { web: [80] };
  const routes = compileRouteManifests([{ kind: 'HTTPRoute', metadata: { name: 'm' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [
    { filters: [
      { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'Set-Cookie', value: 'canary=v2; Path=/' }] } },
      { type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'Cookie', value: 'canary=v2' }] } },
    ], backendRefs: [{ name: 'web', port: 80 }] },
  ] } }], (ns, name) => (known[name] ? { ports: [{ name: '', port: 80 }] } : undefined));
  client.applySnapshot({ version: '1', source: 't', services: [parseService({ name: 'web', ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: (app.address() as AddressInfo).port, proxyPort: server.inboundPort, identity: server.tls.spiffeId }] }], routes: routes.get('web.default') }, 'web')] });
});
afterAll(async () => { await client.close(); await server.close(); app.closeAllConnections(); app.close(); });

async function get(): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const q = request({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'web', cookie: 'session=abc' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.headers['set-cookie']));
    });
    q.on('error', reject);
    q.end();
  });
}

test('ADV5-15: ResponseHeaderModifier add Set-Cookie keeps one field line per cookie', async () => {
  // ADVERSARY: ADV5-15
  // On main: ["session=abc; Path=/; HttpOnly,theme=dark; Path=/,canary=v2; Path=/"].
  expect(await get()).toEqual(['session=abc; Path=/; HttpOnly', 'theme=dark; Path=/', 'canary=v2; Path=/']);
});

test('ADV5-15: RequestHeaderModifier add Cookie joins cookie pairs with "; "', async () => {
  // ADVERSARY: ADV5-15
  await get();
  // On main: "session=abc,canary=v2".
  expect(seenCookie).toBe('session=abc; canary=v2');
});
