import { createServer, request as httpRequest, type Server } from 'node:http';
import { generateKeyPair, SignJWT } from 'jose';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { proxyConfigCommand } from '../cli/proxy-config.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * A jwksUri may carry an API key in its query (`?api_key=...`): the proxy's logs and the
 * `source` label of wren_jwks_fetches_total show it without its query (jwks-source.ts
 * uriShown). The admin /config_dump, which `wren proxy-config --admin` prints, showed it
 * whole, in the local policy (bootstrap.policy) and in the policy in force (inboundPolicy).
 * The same for a kubelet probe's path: its credential query parameters are shown as the
 * access log shows them (REDACTED), as its header values are.
 * A real sidecar, its JWKS URL a local server that answers 500 (so the fetch is logged),
 * fetched for a token a calling sidecar forwards.
 */
const pki = testPki();
const SECRET = 'AKIA-SECRET-7f3e9';
const logs: string[] = [];
let proxy: Proxy, client: Proxy, app: FakeApp, jwks: Server, jwksUri: string, fetched: Promise<void>;

beforeAll(async () => {
  let seen: () => void = () => undefined;
  fetched = new Promise((r) => (seen = r));
  jwks = createServer((_req, res) => {
    res.writeHead(500).end();
    seen();
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  jwksUri = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json?api_key=${SECRET}`;
  // A static API key in an AuthorizationPolicy condition (AUDIT: it decides nothing here):
  // the admin port shows the condition, its key and how many values, not the values.
  const authorizationPolicies = [{ name: 'api-key', action: 'AUDIT', rules: [{ when: [{ key: 'request.headers[x-api-key]', values: [SECRET] }] }] }];
  const policy = { mtls: { mode: 'STRICT' }, jwtRules: [{ issuer: 'https://id.example.com', jwksUri }], authorizationPolicies };
  app = await fakeApp('checkout');
  // A kubelet probe whose path carries a token in its query (the access log's credential parameters).
  const appProbes = { '/app-health/checkout/readyz': { kind: 'http', port: 8080, path: `/healthz?access_token=${SECRET}&x=1`, httpHeaders: [{ name: 'Authorization', value: `Bearer ${SECRET}` }] } };
  proxy = await startProxy({ pki, serviceAccount: 'checkout', logs, config: { policy, appProbes, requestAuthn: { jwksRetryMs: '1h' } } });
  client = await startProxy({ pki, serviceAccount: 'web', services: [meshService('checkout', 80, [{ appPort: app.port, proxy }])] });
});

afterAll(async () => {
  await Promise.all([client.close(), proxy.close(), app.close()]);
  jwks.closeAllConnections();
  await new Promise<void>((r) => jwks.close(() => r()));
});

test('no admin response, CLI output or log line carries the query of a jwksUri; the URI is shown up to it', async () => {
  const { privateKey } = await generateKeyPair('RS256');
  const jwt = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).setIssuer('https://id.example.com').setExpirationTime('10m').sign(privateKey);
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'checkout', authorization: `Bearer ${jwt}` } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  await fetched;
  expect(status).toBe(401);
  const dump = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/config_dump`)).text();
  const shown = jwksUri.replace(/\?.*/, '?…');
  expect(JSON.parse(dump)).toMatchObject({ inboundPolicy: { jwtRules: [{ jwksUri: shown }] }, bootstrap: { policy: { jwtRules: [{ jwksUri: shown }] } } });
  expect(JSON.parse(dump)).toMatchObject({ inboundPolicy: { authorizationPolicies: [{ name: 'api-key', rules: [{ when: [{ key: 'request.headers[x-api-key]', values: ['<hidden>'] }] }] }] } });
  expect(JSON.parse(dump)).toMatchObject({ bootstrap: { appProbes: { '/app-health/checkout/readyz': { path: '/healthz?access_token=REDACTED&x=1', headers: [{ name: 'Authorization', value: '(redacted)' }] } } } });
  const out: string[] = [];
  expect(await proxyConfigCommand(['checkout', 'policy', '--admin', `127.0.0.1:${proxy.adminPort}`, '-o', 'json'], (s) => void out.push(s), (s) => void out.push(s))).toBe(0);
  expect(out.join('')).toContain(shown);
  for (const path of ['/config_dump', '/metrics', '/clusters', '/certs', '/debug/route?authority=checkout']) {
    const body = await (await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`)).text();
    expect([path, body.includes(SECRET)]).toEqual([path, false]);
  }
  expect(out.join('')).not.toContain(SECRET);
  expect(logs.some((l) => l.includes('jwks.json'))).toBe(true);
  expect(logs.filter((l) => l.includes(SECRET))).toEqual([]);
});
