import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (duration-timer-overflow (JWKS)).
 *
 * What an operator does: sets `requestAuthn.jwksRefreshMs: 720h` (the keys of this issuer
 * rotate monthly; the unknown-kid refetch covers a rotation in between). The parser
 * accepts any duration.
 *
 * What happens: JwksSource.schedule() arms Node's setTimeout with 2.59e9 ms, over 2^31-1,
 * which Node turns into 1 ms: after every successful load the next one starts a
 * millisecond later. Every sidecar of the workload then fetches the identity provider's
 * JWKS in a tight loop (130 a second each here), a self-inflicted flood on the
 * IdP.
 *
 * What should happen: one fetch at start, the next after the configured refresh (Envoy
 * remote_jwks cache_duration), or the value refused at parse with the field named.
 */
const pki = testPki();
let jwks: Server, app: FakeApp, server: Proxy, client: Proxy;
let hits = 0;

beforeAll(async () => {
  const { publicKey } = await generateKeyPair('RS256', { extractable: true });
  const body = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256' }] });
  jwks = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  app = await fakeApp('checkout');
  server = await startProxy({
    pki, serviceAccount: 'checkout',
    config: { policy: { jwtRules: [{ issuer: 'https://id.example.com', jwksUri }] }, requestAuthn: { jwksRefreshMs: '720h' } },
  });
  client = await startProxy({ pki, serviceAccount: 'web', services: [meshService('checkout', 80, [{ appPort: app.port, proxy: server }])] });
}, 20_000);

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
  jwks.closeAllConnections();
  await new Promise<void>((r) => jwks.close(() => r()));
});

test('jwksRefreshMs 720h: the JWKS is not refetched in a loop', async () => {
  // One request with a token of the issuer, so the source is loaded (it loads on first use).
  await new Promise<void>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/name', headers: { host: 'checkout', authorization: 'Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIn0.c2ln' } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end();
  });
  const before = hits;
  await new Promise((r) => setTimeout(r, 1000));
  // Today: about 130 fetches in that second on loopback.
  expect(hits - before).toBeLessThanOrEqual(1);
});
