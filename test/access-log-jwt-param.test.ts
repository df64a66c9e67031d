import { request as httpRequest } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { LogCapture } from './helpers/log-capture.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (access-log-jwt-param).
 *
 * What a user does: the `checkout` workload has a RequestAuthentication that reads the
 * end-user JWT from a query parameter of its own naming (Istio jwtRules `fromParams:
 * ["token"]`), and access logs are on. A client sends `GET /orders?token=<JWT>`.
 *
 * What happens: the access log redacts only a fixed list of parameter names
 * (access-log/redact-query.ts: access_token, id_token, ... ), not the locations the
 * workload's own jwtRules name. The inbound sidecar, which knows `token` carries a JWT (it
 * verifies it from there), writes the whole bearer token to its access log line whenever
 * it is not stripped first: a token refused as invalid (401; a valid token minted for
 * another audience is still usable there) or any token with forwardOriginalToken: true.
 *
 * What should happen: a credential never reaches a log line (issue #13: "never log header
 * values that are secrets"; docs/observability.md: credentials in the query string are
 * redacted; OpenTelemetry HTTP conventions, url.full: credentials in the query SHOULD be
 * redacted). Every location a jwtRule reads a token from is a credential location.
 */
const pki = testPki();
const ISS = 'https://id.example.com';
let app: FakeApp, server: Proxy, client: Proxy, priv: CryptoKey;
const serverLog = new LogCapture();

beforeAll(async () => {
  const kp = await generateKeyPair('RS256', { extractable: true });
  priv = kp.privateKey;
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'RS256' }] });
  app = await fakeApp('checkout');
  const policy = {
    jwtRules: [
      { issuer: ISS, audiences: ['checkout'], jwks, fromParams: ['token'] },
      { issuer: 'https://partner.example.com', audiences: ['checkout'], jwks, fromParams: ['auth'], forwardOriginalToken: true },
    ],
  };
  server = await startProxy({ pki, serviceAccount: 'checkout', config: { policy, telemetry: { accessLog: { enabled: true } } }, accessLog: serverLog });
  client = await startProxy({ pki, serviceAccount: 'web', services: [meshService('checkout', 80, [{ appPort: app.port, proxy: server }])] });
}, 20_000);

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

const jwt = (iss: string, aud: string) =>
  new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer(iss).setAudience(aud).setExpirationTime(Math.floor(Date.now() / 1000) + 600).sign(priv);

function get(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'checkout' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a token refused by the jwtRule that reads it from ?token= is not written to the inbound access log', async () => {
  // A genuine token of the same issuer, minted for another audience: 401 here, still good at `billing`.
  const token = await jwt(ISS, 'billing');
  expect(await get(`/orders?token=${token}`)).toBe(401);
  const line = await serverLog.find((e) => typeof e.path === 'string' && e.path.startsWith('/orders'));
  expect(JSON.stringify(line)).not.toContain(token.split('.')[2]);
});

test('a token forwarded to the app (forwardOriginalToken) from ?auth= is not written to the inbound access log', async () => {
  const token = await jwt('https://partner.example.com', 'checkout');
  expect(await get(`/name?invoice=7&auth=${token}`)).toBe(200);
  const line = await serverLog.find((e) => typeof e.path === 'string' && e.path.startsWith('/name?invoice'));
  expect(JSON.stringify(line)).not.toContain(token.split('.')[2]);
});

test('a request refused before the JWT is read (400 from path normalization) does not write its ?token= to the inbound access log either', async () => {
  const token = await jwt(ISS, 'checkout');
  expect(await get(`/refused?token=${token}#fragment`)).toBe(400);
  const line = await serverLog.find((e) => typeof e.path === 'string' && e.path.startsWith('/refused'));
  expect(JSON.stringify(line)).not.toContain(token.split('.')[2]);
});

test('held: ?access_token= (the default location) is redacted', async () => {
  const token = await jwt(ISS, 'billing');
  await get(`/default?access_token=${token}`);
  const line = await serverLog.find((e) => typeof e.path === 'string' && e.path.startsWith('/default'));
  expect(JSON.stringify(line)).not.toContain(token.split('.')[2]);
});
