import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, SignJWT } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * requestAuthn.jwksFetchTimeoutMs between real sidecars: the server sidecar's JWKS URL
 * accepts the connection and never answers. The token is refused (401 jwks-unavailable),
 * the fetch is an `error` in wren_jwks_fetches_total, and the timeout is counted as itself,
 * wren_limit_exceeded_total{direction="inbound",limit="jwks-fetch-timeout"}.
 */
const pki = testPki();
const ISS = 'https://id.example.com';
let app: FakeApp, server: Proxy, client: Proxy, jwks: Server;

beforeAll(async () => {
  jwks = createServer(() => undefined); // never answers
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  app = await fakeApp('checkout');
  const policy = { mtls: { mode: 'STRICT' }, jwtRules: [{ issuer: ISS, jwksUri }] };
  server = await startProxy({ pki, serviceAccount: 'checkout', config: { policy, requestAuthn: { jwksFetchTimeoutMs: '300ms', jwksRetryMs: '1h' } } });
  client = await startProxy({ pki, serviceAccount: 'web', services: [meshService('checkout', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close(), app.close()]);
  jwks.closeAllConnections();
  await new Promise<void>((r) => jwks.close(() => r()));
});

function call(headers: Record<string, string>): Promise<{ status: number; reason: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/echo', headers: { host: 'checkout', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.headers['wren-jwt-reason'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a JWKS URL that never answers: the token is refused after the timeout, which is counted', async () => {
  const { privateKey } = await generateKeyPair('RS256');
  const jwt = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).setIssuer(ISS).setExpirationTime('10m').sign(privateKey);
  const t0 = Date.now();
  expect(await call({ authorization: `Bearer ${jwt}` })).toEqual({ status: 401, reason: 'jwks-unavailable' });
  expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  expect(await metric(server, /wren_limit_exceeded_total\{direction="inbound",limit="jwks-fetch-timeout"\} (\d+)/)).toBe(1);
  expect(await metric(server, /wren_jwks_fetches_total\{[^}]*outcome="error"[^}]*\} (\d+)/)).toBe(1);
});
