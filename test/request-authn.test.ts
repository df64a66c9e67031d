import { createServer, request as httpRequest, type Server } from 'node:http';
import { createHmac, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import * as grpc from '@grpc/grpc-js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { fakeGrpc, echoClient, type FakeGrpc } from './helpers/fake-grpc.js';
import type { Proxy } from '../proxy/proxy.js';
import { metric as adminMetric } from './helpers/admin-metric.js';

/**
 * End-user JWTs between real sidecars (issue #14.3): the server sidecar has a
 * RequestAuthentication whose keys it fetches from a real JWKS server on port 0, and
 * AuthorizationPolicies on the request principal and a claim; a client sidecar carries
 * the callers' requests over mTLS.
 */
const pki = testPki();
const ISS = 'https://id.example.com';
let app: FakeApp, backend: FakeGrpc, server: Proxy, client: Proxy, jwksServer: Server;
const serverLogs: string[] = [];
const jwksHits = { count: 0, up: true };
let served = '';

interface Signer { kid: string; alg: string; priv: CryptoKey; pub: CryptoKey; jwk: JWK }
async function signer(alg: 'RS256' | 'ES256' | 'EdDSA', kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, priv: privateKey, pub: publicKey, jwk: { ...(await exportJWK(publicKey)), kid } };
}
let rsa: Signer, ec: Signer, ed: Signer, unpublished: Signer;

const now = () => Math.floor(Date.now() / 1000);
const token = (s: Signer, claims: Record<string, unknown> = {}, o: { exp?: number; nbf?: number; aud?: string; iss?: string; kid?: string } = {}) => {
  const t = new SignJWT({ sub: 'alice', jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: s.alg, kid: o.kid ?? s.kid })
    .setIssuer(o.iss ?? ISS)
    .setAudience(o.aud ?? 'checkout')
    .setExpirationTime(o.exp ?? now() + 600);
  if (o.nbf !== undefined) t.setNotBefore(o.nbf);
  return t.sign(s.priv);
};

beforeAll(async () => {
  [rsa, ec, ed, unpublished] = await Promise.all([signer('RS256', 'rsa'), signer('ES256', 'ec'), signer('EdDSA', 'ed'), signer('RS256', 'not-published')]);
  served = JSON.stringify({ keys: [rsa.jwk, ec.jwk, ed.jwk] });
  jwksServer = createServer((_req, res) => {
    jwksHits.count++;
    if (!jwksHits.up) return void res.writeHead(503).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(served);
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  [app, backend] = await Promise.all([fakeApp('checkout'), fakeGrpc()]);
  const policy = {
    mtls: { mode: 'STRICT' },
    jwtRules: [{ issuer: ISS, audiences: ['checkout'], jwksUri, outputClaimToHeaders: [{ header: 'x-user-groups', claim: 'groups' }] }],
    authorizationPolicies: [
      {
        name: 'demo/checkout',
        action: 'ALLOW',
        rules: [
          { to: [{ operation: { paths: ['/name'] } }] },
          { from: [{ source: { requestPrincipals: [`${ISS}/*`] } }], to: [{ operation: { paths: ['/echo'] } }] },
          { to: [{ operation: { paths: ['/status/*'] } }], when: [{ key: 'request.auth.claims[groups]', values: ['admins'] }] },
          { from: [{ source: { requestPrincipals: [`${ISS}/alice`] } }], to: [{ operation: { ports: [String(backend.port)] } }] },
        ],
      },
    ],
  };
  // A short unknown-kid cooldown (default 30 s) so the refetch cases run in a second.
  const requestAuthn = { jwksMinRefetchIntervalMs: '500ms' };
  server = await startProxy({ pki, namespace: 'demo', serviceAccount: 'checkout', config: { policy, requestAuthn }, logs: serverLogs });
  client = await startProxy({ pki, namespace: 'demo', serviceAccount: 'web', services: [
    meshService('checkout', 80, [{ appPort: app.port, proxy: server }]),
    meshService('echo', 50051, [{ appPort: backend.port, proxy: server }], { protocol: 'grpc' }),
  ] });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close(), app.close(), backend.close()]);
  jwksServer.closeAllConnections();
  await new Promise<void>((r) => jwksServer.close(() => r()));
});

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: string }
function call(path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'checkout', ...headers } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const unauthorized = (reason: string) => ({
  status: 401,
  headers: expect.objectContaining({ 'wren-proxy-error': 'jwt-invalid', 'wren-jwt-reason': reason, 'www-authenticate': 'Bearer error="invalid_token"' }),
});
const metric = (re: RegExp): Promise<number> => adminMetric(server, re);

test.each(['RS256', 'ES256', 'EdDSA'])('a %s token is accepted; the app sees the claim header and not the token', async (alg) => {
  const s = { RS256: rsa, ES256: ec, EdDSA: ed }[alg]!;
  const r = await call('/echo', { ...bearer(await token(s, { groups: ['buyers', 'beta'] })), 'x-user-groups': 'forged' });
  expect(r.status).toBe(200);
  const seen = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
  expect(seen['x-user-groups']).toBe('buyers,beta');
  expect(seen.authorization).toBeUndefined();
});

test('a claim header sent as a request trailer never reaches the app: the sidecar writes it, as a header only', async () => {
  // The trailer section comes after the body, past authentication: a caller's own copy of
  // a claim header there went on to the app, which may merge trailers into its view of the
  // request (as the mesh fields are dropped from trailers for: http/headers.ts dropMeshFields).
  const t = await token(rsa, { groups: ['buyers'] });
  const r = await new Promise<Reply>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/echo', method: 'POST', headers: { host: 'checkout', ...bearer(t), 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.write('payload');
    req.addTrailers({ 'x-user-groups': 'admins', 'x-kept': 'yes' });
    req.end();
  });
  expect(r.status).toBe(200);
  const seen = JSON.parse(r.body) as { headers: Record<string, string>; trailers: Record<string, string> };
  expect(seen.headers['x-user-groups']).toBe('buyers');
  expect(seen.trailers).toEqual({ 'x-kept': 'yes' });
});

test('expired, not yet valid, wrong audience, wrong issuer, alg none and HS256 confusion: 401, the app never sees them', async () => {
  const hits = app.hits.count;
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = { iss: ISS, sub: 'mallory', aud: 'checkout', exp: now() + 600 };
  const none = `${b64({ alg: 'none' })}.${b64(claims)}.`;
  const hsHead = `${b64({ alg: 'HS256', kid: 'rsa' })}.${b64(claims)}`;
  const confused = `${hsHead}.${createHmac('sha256', await exportSPKI(rsa.pub)).update(hsHead).digest('base64url')}`;
  expect(await call('/echo', bearer(await token(rsa, {}, { exp: now() - 300 })))).toMatchObject(unauthorized('expired'));
  expect(await call('/echo', bearer(await token(ec, {}, { nbf: now() + 300 })))).toMatchObject(unauthorized('not-yet-valid'));
  expect(await call('/echo', bearer(await token(ed, {}, { aud: 'billing' })))).toMatchObject(unauthorized('bad-audience'));
  expect(await call('/echo', bearer(await token(rsa, {}, { iss: 'https://evil.example.com' })))).toMatchObject(unauthorized('unknown-issuer'));
  expect(await call('/echo', bearer(none))).toMatchObject(unauthorized('alg-not-allowed'));
  expect(await call('/echo', bearer(confused))).toMatchObject(unauthorized('alg-not-allowed'));
  expect(app.hits.count).toBe(hits);
  for (const reason of ['expired', 'not-yet-valid', 'bad-audience', 'unknown-issuer'])
    expect(await metric(new RegExp(`wren_jwt_denied_total\\{reason="${reason}"\\} (\\d+)`))).toBe(1);
  expect(await metric(/wren_jwt_denied_total\{reason="alg-not-allowed"\} (\d+)/)).toBe(2);
  expect(await metric(/wren_proxy_errors_total\{[^}]*code="jwt-invalid"[^}]*\} (\d+)/)).toBeGreaterThanOrEqual(6);
  const denials = serverLogs.filter((l) => l.includes('JWT rejected')).map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(denials.map((d) => d.reason)).toEqual(expect.arrayContaining(['expired', 'not-yet-valid', 'bad-audience', 'unknown-issuer', 'alg-not-allowed']));
  expect(serverLogs.join('\n')).not.toContain(confused.split('.')[2]);
});

test('no token: allowed where no policy needs a request principal, 403 where one does', async () => {
  expect(await call('/name')).toMatchObject({ status: 200, body: 'checkout' });
  expect(await call('/echo')).toMatchObject({ status: 403, headers: expect.objectContaining({ 'wren-authz-reason': 'no-allow-policy-matched' }) });
});

// Found by review (adv9 D7): `Authorization: Basic ...` and a lower-case `bearer` scheme got
// 401 malformed once a RequestAuthentication applied. Envoy's jwt_authn extractor skips a
// value that does not contain the prefix (case-sensitively): the request goes on without a
// request principal, so only a policy that needs one refuses it (403).
test('a header without the "Bearer " prefix is no token: passed on without a principal, 403 only where a policy needs one', async () => {
  const basic = { authorization: 'Basic dXNlcjpwYXNz' };
  expect(await call('/name', basic)).toMatchObject({ status: 200, body: 'checkout' });
  expect(await call('/echo', basic)).toMatchObject({ status: 403, headers: expect.objectContaining({ 'wren-authz-reason': 'no-allow-policy-matched' }) });
  const lower = { authorization: `bearer ${await token(rsa)}` };
  expect(await call('/echo', lower)).toMatchObject({ status: 403, headers: expect.objectContaining({ 'wren-authz-reason': 'no-allow-policy-matched' }) });
  expect(await call('/name', lower)).toMatchObject({ status: 200, body: 'checkout' });
  expect(await call('/name', { authorization: 'Bearer' })).toMatchObject({ status: 200, body: 'checkout' });
});

test('when request.auth.claims[groups]: admins pass, others are refused', async () => {
  expect(await call('/status/204', bearer(await token(rsa, { groups: ['users', 'admins'] })))).toMatchObject({ status: 204 });
  expect(await call('/status/204', bearer(await token(rsa, { groups: ['users'] })))).toMatchObject({ status: 403 });
  expect(await call('/status/204')).toMatchObject({ status: 403 });
});

test('unknown kid: the JWKS is refetched once, then the token is refused', async () => {
  await new Promise((r) => setTimeout(r, 600)); // past jwksMinRefetchIntervalMs since the last fetch
  const before = jwksHits.count;
  const tok = await token(unpublished);
  expect(await call('/echo', bearer(tok))).toMatchObject(unauthorized('unknown-kid'));
  expect(await call('/echo', bearer(tok))).toMatchObject(unauthorized('unknown-kid'));
  expect(jwksHits.count).toBe(before + 1);
  expect(await metric(/wren_jwks_fetches_total\{[^}]*outcome="rate-limited"[^}]*\} (\d+)/)).toBe(1);
  expect(await metric(/wren_jwt_denied_total\{reason="unknown-kid"\} (\d+)/)).toBe(2);
});

test('JWKS URL down: the last good keys are kept', async () => {
  await new Promise((r) => setTimeout(r, 600));
  jwksHits.up = false;
  const before = jwksHits.count;
  // An unknown kid makes the proxy refetch, and the refetch fails...
  expect(await call('/echo', bearer(await token(unpublished)))).toMatchObject(unauthorized('unknown-kid'));
  expect(jwksHits.count).toBe(before + 1);
  expect(await metric(/wren_jwks_fetches_total\{[^}]*outcome="error"[^}]*\} (\d+)/)).toBe(1);
  expect(serverLogs.some((l) => l.includes('JWKS load failed; keeping the last good keys'))).toBe(true);
  // ...and the keys it had still verify tokens.
  for (const s of [rsa, ec, ed]) expect(await call('/echo', bearer(await token(s)))).toMatchObject({ status: 200 });
  jwksHits.up = true;
});

test('gRPC: a valid token passes, an invalid one is UNAUTHENTICATED, none is PERMISSION_DENIED', async () => {
  const c = echoClient(client.outboundPort, 'echo:50051');
  const unary = (auth?: string) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const md = new grpc.Metadata();
      if (auth) md.set('authorization', `Bearer ${auth}`);
      c.Unary({ message: 'hi' }, md, (err: grpc.ServiceError | null) => resolve(err));
    });
  try {
    expect(await unary(await token(ec))).toBeNull();
    expect(await unary(await token(ec, {}, { exp: now() - 300 }))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: 'JWT verification failed: expired' });
    expect(await unary()).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  } finally {
    c.close();
  }
});
