import { createServer, request as httpRequest, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Adversarial review of RequestAuthentication (issue #14.3) between two real sidecars:
 * a hostile client trying to get a token past `forwardOriginalToken: false`, or to make
 * the proxy verify one token while the app reads another.
 */
const pki = testPki();
const ISS = 'https://id.example.com';
let app: FakeApp, server: Proxy, client: Proxy, fwdServer: Proxy, jwksServer: Server;
let priv: CryptoKey, jwk: JWK;

const token = (sub: string) =>
  new SignJWT({ sub, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: 'ec' })
    .setIssuer(ISS)
    .setAudience('checkout')
    .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
    .sign(priv);

beforeAll(async () => {
  const kp = await generateKeyPair('ES256', { extractable: true });
  priv = kp.privateKey;
  jwk = { ...(await exportJWK(kp.publicKey)), kid: 'ec' };
  jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  app = await fakeApp('checkout');
  const policy = {
    mtls: { mode: 'STRICT' },
    // Default locations (Authorization: Bearer and ?access_token=), token not forwarded.
    jwtRules: [{ issuer: ISS, audiences: ['checkout'], jwksUri }],
  };
  server = await startProxy({ pki, namespace: 'demo', serviceAccount: 'checkout', config: { policy } });
  // The same rule with forwardOriginalToken: the app reads the token itself (often without verifying it again).
  const fwdPolicy = { ...policy, jwtRules: [{ ...policy.jwtRules[0], forwardOriginalToken: true }] };
  fwdServer = await startProxy({ pki, namespace: 'demo', serviceAccount: 'checkout', config: { policy: fwdPolicy } });
  client = await startProxy({ pki, namespace: 'demo', serviceAccount: 'web', services: [
    meshService('checkout', 80, [{ appPort: app.port, proxy: server }]),
    meshService('forwarding', 80, [{ appPort: app.port, proxy: fwdServer }]),
  ] });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close(), fwdServer.close(), app.close()]);
  jwksServer.closeAllConnections();
  await new Promise<void>((r) => jwksServer.close(() => r()));
});

interface Reply { status: number; body: string }
function call(path: string, headers: Record<string, string> = {}, host = 'checkout'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host, ...headers } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
const seen = (r: Reply) => JSON.parse(r.body) as { path: string; headers: Record<string, string> };

test('control: a token in the query alone is stripped from the path before the app', async () => {
  const t = await token('alice');
  const r = await call(`/echo?a=1&access_token=${t}`);
  expect(r.status).toBe(200);
  expect(seen(r).path).toBe('/echo?a=1');
});

// Found by review: with the same token in Authorization and in ?access_token=, only the
// header was removed, so `forwardOriginalToken: false` leaked the end-user token to the
// app through the URL (and its access logs). applyOk now strips every location.
test('the same token in the header and the query: forwardOriginalToken false strips both', async () => {
  const t = await token('alice');
  const r = await call(`/echo?access_token=${t}`, { authorization: `Bearer ${t}` });
  expect(r.status).toBe(200);
  expect(seen(r).headers.authorization).toBeUndefined();
  expect(seen(r).path).not.toContain(t);
});

// Found by review: a percent-encoded name (`access%5Ftoken`) was neither read nor dropped
// by the proxy, while every URL decoder in an app reads it as access_token. Names are now
// matched decoded: a second, differing token is refused (multiple-tokens), and a stripped
// request carries none.
test('a percent-encoded access%5Ftoken parameter is read as access_token: never reaches the app unverified', async () => {
  const good = await token('alice');
  const r = await call(`/echo?access_token=${good}&access%5Ftoken=unverified.by.proxy`);
  if (r.status === 200) expect(new URL(seen(r).path, 'http://x').searchParams.getAll('access_token')).toEqual([]);
  else expect(r.status).toBe(401);
  const same = await call(`/echo?a=1&access%5Ftoken=${good}`);
  expect(same.status).toBe(200);
  expect(new URL(seen(same).path, 'http://x').searchParams.getAll('access_token')).toEqual([]);
});

// Found by review: with forwardOriginalToken, `?access_token=A&access_token=B` verified only
// the first and forwarded both; frameworks that read the last value hand the app the
// unverified B. A repeated token parameter with differing values is now refused
// ('multiple-tokens'), as a repeated Authorization header already was.
test('a repeated access_token parameter never forwards an unverified second token', async () => {
  const good = await token('alice');
  const r = await call(`/echo?access_token=${good}&access_token=forged.unverified.token`, {}, 'forwarding');
  if (r.status === 200) expect(new URL(seen(r).path, 'http://x').searchParams.getAll('access_token')).toEqual([good]);
  else expect(r.status).toBe(401);
});
