import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * The proxy config's `requestAuthn` settings reach the JWT verification of a running
 * sidecar (proxy.ts builds the JwksRegistry and the JwtAuthenticator from them): until
 * now only the parser's tests named clockSkewMs and jwksMaxBytes, so a sidecar that
 * dropped them for the defaults (60 s, 1 MiB) passed every test. A plaintext PERMISSIVE
 * inbound is enough: RequestAuthentication applies to every request to the app.
 */
const pki = testPki();
const ISS = 'https://id.example.com';
let app: FakeApp;
let jwksServer: Server;
let jwksUri = '';
const proxies: Proxy[] = [];
let priv: CryptoKey;
let jwk: JWK;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  priv = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1' };
  // A valid JWKS of about 2 KiB: the key and unknown members, which RFC 7517 section 4 says to ignore.
  const padded = JSON.stringify({ keys: [{ ...jwk, x_pad: 'p'.repeat(2000) }] });
  jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(padded));
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  app = await fakeApp('checkout');
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await app.close();
  await new Promise((r) => jwksServer.close(r));
});

async function sidecar(rule: Record<string, unknown>, requestAuthn: Record<string, unknown>): Promise<Proxy> {
  const p = await startProxy({
    pki, serviceAccount: `checkout-${proxies.length}`, inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' }, jwtRules: [{ issuer: ISS, ...rule }] }, requestAuthn },
  });
  proxies.push(p);
  return p;
}

const nowSec = () => Math.floor(Date.now() / 1000);
const token = (exp: number) => new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISS).setExpirationTime(exp).sign(priv);

function get(p: Proxy, jwt: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: p.inboundPort, path: '/name', headers: { host: 'checkout', authorization: `Bearer ${jwt}`, connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

test('requestAuthn.clockSkewMs: 0 refuses a token expired 10 s ago, which the default 60 s of skew accepts', async () => {
  const jwks = JSON.stringify({ keys: [jwk] });
  const strict = await sidecar({ jwks }, { clockSkewMs: 0 });
  const lenient = await sidecar({ jwks }, {});
  const expired = await token(nowSec() - 10);
  expect(await get(lenient, expired)).toBe(200);
  expect(await get(strict, expired)).toBe(401);
  expect(await get(strict, await token(nowSec() + 600))).toBe(200);
});

test('requestAuthn.jwksMaxBytes: a fetched JWKS larger than it is refused (no keys: 401), which the default 1 MiB takes', async () => {
  const small = await sidecar({ jwksUri }, { jwksMaxBytes: 1024 });
  const large = await sidecar({ jwksUri }, {});
  const valid = await token(nowSec() + 600);
  expect(await get(large, valid)).toBe(200);
  expect(await get(small, valid)).toBe(401);
  const text = await (await fetch(`http://127.0.0.1:${small.adminPort}/metrics`)).text();
  expect(text).toMatch(/^wren_jwks_fetches_total\{[^}]*outcome="too-large"[^}]*\} [1-9]/m);
});

test('requestAuthn.jwtCacheSize: a full cache drops the least recently used token, counted as limit="jwt-cache-size"; the default 100 drops none of three, 0 caches nothing', async () => {
  const jwks = JSON.stringify({ keys: [jwk] });
  const one = await sidecar({ jwks }, { jwtCacheSize: 1 });
  const def = await sidecar({ jwks }, {});
  const off = await sidecar({ jwks }, { jwtCacheSize: 0 });
  // Three distinct tokens (three expiry times), each sent twice: a hit changes nothing.
  const tokens = await Promise.all([600, 601, 602].map((s) => token(nowSec() + s)));
  for (const p of [one, def, off]) for (const t of [...tokens, ...tokens]) expect(await get(p, t)).toBe(200);
  const evicted = async (p: Proxy): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
    const m = /^wren_limit_exceeded_total\{[^}]*limit="jwt-cache-size"[^}]*\} (\d+)/m.exec(text);
    if (m) expect(m[0]).toContain('direction="inbound"');
    return m ? Number(m[1]) : 0;
  };
  // Size 1: every new token evicts the one before; the second round misses again (the cache holds the last only).
  expect(await evicted(one)).toBe(5);
  expect(await evicted(def)).toBe(0);
  expect(await evicted(off)).toBe(0);
});
