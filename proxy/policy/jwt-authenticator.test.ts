import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createHmac, randomUUID } from 'node:crypto';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { FakeClock } from '../../common/clock.js';
import { createLogger, silentLogger } from '../../common/logger.js';
import { parseJwtRule } from '../../contract/parse.js';
import { JwtAuthenticator, withoutParam, type AuthnResult } from './jwt-authenticator.js';
import { JwksRegistry, type JwksFetchOutcome } from './jwks-source.js';
import { uriShown } from '../../contract/jwks-uri-shown.js';

/**
 * Real keys and real tokens (jose), a fake clock for exp/nbf and the JWKS refresh
 * schedule, and a real HTTP server on port 0 for the JWKS URL.
 */
const ISS = 'https://id.example.com';
const NOW = Date.UTC(2026, 0, 1);
const sec = (ms: number) => Math.floor(ms / 1000);

interface Signer {
  readonly kid: string;
  readonly alg: string;
  readonly priv: CryptoKey;
  readonly pub: CryptoKey;
  readonly jwk: JWK;
}
async function signer(alg: 'RS256' | 'ES256' | 'EdDSA', kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, priv: privateKey, pub: publicKey, jwk: { ...(await exportJWK(publicKey)), kid, use: 'sig' } };
}
const jwks = (...s: Signer[]) => JSON.stringify({ keys: s.map((x) => x.jwk) });

function token(s: Signer, claims: Record<string, unknown> = {}, o: { iss?: string; aud?: string | string[]; exp?: number; nbf?: number; kid?: string } = {}): Promise<string> {
  const t = new SignJWT({ sub: 'alice', jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: s.alg, kid: o.kid ?? s.kid, typ: 'JWT' })
    .setIssuer(o.iss ?? ISS)
    .setAudience(o.aud ?? 'checkout')
    .setIssuedAt(sec(NOW))
    .setExpirationTime(o.exp ?? sec(NOW) + 3600);
  if (o.nbf !== undefined) t.setNotBefore(o.nbf);
  return t.sign(s.priv);
}

const b64url = (v: string | Buffer) => Buffer.from(v).toString('base64url');

let rsa: Signer, ec: Signer, ed: Signer, rotated: Signer;
let jwksServer: Server;
let jwksUrl = '';
let served = '';
let serverUp = true;
let serverHangs = false;
const hits = { count: 0 };

beforeAll(async () => {
  [rsa, ec, ed, rotated] = await Promise.all([signer('RS256', 'rsa-1'), signer('ES256', 'ec-1'), signer('EdDSA', 'ed-1'), signer('RS256', 'rsa-2')]);
  jwksServer = createServer((req, res) => {
    hits.count++;
    if (serverHangs) return; // never answers
    if (!serverUp) return void res.writeHead(503).end('down');
    res.writeHead(200, { 'content-type': 'application/json' }).end(served);
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
});
afterAll(() => new Promise<void>((r) => {
  jwksServer.closeAllConnections();
  jwksServer.close(() => r());
}));

/** A fake clock whose wall time can be stepped apart from its monotonic time (a suspended VM, an NTP step). */
class SteppedClock extends FakeClock {
  wallOffsetMs = 0;
  override wallNow(): number {
    return super.wallNow() + this.wallOffsetMs;
  }
}

function setup(rule: Record<string, unknown>, o: { minRefetchIntervalMs?: number; cacheSize?: number } = {}) {
  const clock = new SteppedClock(NOW);
  const fetches: JwksFetchOutcome[] = [];
  const registry = new JwksRegistry({
    clock, logger: silentLogger,
    settings: { refreshMs: 300_000, retryMs: 10_000, fetchTimeoutMs: 2_000, minRefetchIntervalMs: o.minRefetchIntervalMs ?? 30_000 },
    onFetch: (_s, outcome) => fetches.push(outcome),
  });
  const authn = new JwtAuthenticator([parseJwtRule({ issuer: ISS, audiences: ['checkout'], ...rule }, 'rule')], registry, clock, 60, o.cacheSize ?? 100);
  const run = (tok: string, path = '/'): Promise<AuthnResult> => authn.authenticate({ authorization: `Bearer ${tok}` }, path);
  return { clock, registry, authn, run, fetches };
}
const reason = (r: AuthnResult) => (r.kind === 'denied' ? r.reason : r.kind);

test('a jwksUri is labelled and logged without its query (it may carry an API key), and errors quoting it likewise', async () => {
  expect(uriShown('https://idp.example.com/jwks.json?api_key=AKIA-SECRET')).toBe('https://idp.example.com/jwks.json?…');
  expect(uriShown('https://idp.example.com/jwks.json')).toBe('https://idp.example.com/jwks.json');
  const sources: string[] = [];
  const lines: string[] = [];
  const registry = new JwksRegistry({
    clock: new FakeClock(NOW), logger: createLogger({ level: 'debug', sink: (l) => void lines.push(l) }),
    settings: { refreshMs: 300_000, retryMs: 10_000, fetchTimeoutMs: 2_000, minRefetchIntervalMs: 30_000 },
    onFetch: (source) => sources.push(source),
  });
  // A port nothing listens on: the fetch fails.
  const uri = 'http://127.0.0.1:1/jwks.json?api_key=AKIA-SECRET';
  const src = registry.sourceFor(parseJwtRule({ issuer: ISS, jwksUri: uri }, 'rule'));
  await src.refresh();
  expect(sources).toEqual(['uri:http://127.0.0.1:1/jwks.json?…']);
  expect(lines.join('\n')).toContain('JWKS load failed');
  expect(lines.join('\n')).not.toContain('AKIA-SECRET');
  registry.close();
});

describe('verification', () => {
  test.each(['RS256', 'ES256', 'EdDSA'])('%s tokens are accepted, with the request principal <iss>/<sub>', async (alg) => {
    const s = { RS256: rsa, ES256: ec, EdDSA: ed }[alg]!;
    const { run, registry } = setup({ jwks: jwks(rsa, ec, ed) });
    const r = await run(await token(s, { groups: ['buyers'], azp: 'web-app' }));
    expect(r).toMatchObject({ kind: 'ok', auth: { principal: `${ISS}/alice`, audiences: ['checkout'], presenter: 'web-app', claims: { groups: ['buyers'] } } });
    registry.close();
  });

  test('expired, not yet valid, wrong audience, wrong issuer: refused with their reason', async () => {
    const { run } = setup({ jwks: jwks(rsa) });
    expect(reason(await run(await token(rsa, {}, { exp: sec(NOW) - 120 })))).toBe('expired');
    expect(reason(await run(await token(rsa, {}, { nbf: sec(NOW) + 120 })))).toBe('not-yet-valid');
    expect(reason(await run(await token(rsa, {}, { aud: 'billing' })))).toBe('bad-audience');
    expect(reason(await run(await token(rsa, {}, { iss: 'https://evil.example.com' })))).toBe('unknown-issuer');
  });

  test('the clock is the injected one, with 60 s of skew tolerated', async () => {
    const { run, clock } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa, {}, { exp: sec(NOW) + 10 });
    expect(reason(await run(tok))).toBe('ok');
    clock.advance(60_000); // 50 s past exp: within the skew
    expect(reason(await run(tok))).toBe('ok');
    clock.advance(20_000);
    expect(reason(await run(tok))).toBe('expired');
    expect(reason(await run(await token(rsa, {}, { nbf: sec(NOW) + 130 })))).toBe('ok'); // now is +80 s: nbf 50 s ahead, within the skew
    expect(reason(await run(await token(rsa, {}, { nbf: sec(NOW) + 150 })))).toBe('not-yet-valid');
  });

  test('audiences empty: the audience is not checked', async () => {
    const { run } = setup({ jwks: jwks(rsa), audiences: [] });
    expect(reason(await run(await token(rsa, {}, { aud: 'anything' })))).toBe('ok');
  });

  test('a token signed by another key with the same kid fails the signature', async () => {
    const other = await signer('RS256', 'rsa-1');
    const { run } = setup({ jwks: jwks(rsa) });
    expect(reason(await run(await token(other)))).toBe('bad-signature');
  });

  test('alg "none" is refused', async () => {
    const { run } = setup({ jwks: jwks(rsa) });
    const payload = { iss: ISS, sub: 'mallory', aud: 'checkout', exp: sec(NOW) + 3600 };
    const unsigned = `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}.`;
    expect(reason(await run(unsigned))).toBe('alg-not-allowed');
  });

  test('HS256 signed with the RSA public key as the HMAC secret (algorithm confusion) is refused', async () => {
    const { run } = setup({ jwks: jwks(rsa) });
    const pem = await exportSPKI(rsa.pub);
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'rsa-1' }));
    const body = b64url(JSON.stringify({ iss: ISS, sub: 'mallory', aud: 'checkout', exp: sec(NOW) + 3600 }));
    for (const secret of [pem, JSON.stringify(rsa.jwk), Buffer.from(rsa.jwk.n!, 'base64url')]) {
      const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
      expect(reason(await run(`${head}.${body}.${sig}`))).toBe('alg-not-allowed');
    }
  });

  test('a key of the wrong type for the algorithm is never used (ES256 header, only an RSA key with that kid)', async () => {
    const { run } = setup({ jwks: jwks(rsa) });
    expect(reason(await run(await token(ec, {}, { kid: 'rsa-1' })))).toBe('unknown-kid');
  });

  test('garbage and half tokens are malformed', async () => {
    const { run } = setup({ jwks: jwks(rsa) });
    for (const t of ['abc', 'a.b', 'a.b.c', '', `${b64url('{}')}.${b64url('[]')}.x`]) expect(reason(await run(t))).toBe('malformed');
  });
});

describe('token locations', () => {
  test('default: Authorization Bearer and ?access_token=; no token = none', async () => {
    const { authn } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa);
    expect((await authn.authenticate({}, '/'))).toEqual({ kind: 'none' });
    expect(reason(await authn.authenticate({}, `/x?a=1&access_token=${tok}`))).toBe('ok');
  });

  test('a header value without the prefix holds no token and is skipped, as Envoy\'s extractor does: the prefix is case-sensitive', async () => {
    const { authn } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa);
    const none = { kind: 'none' };
    expect(await authn.authenticate({ authorization: 'Basic dXNlcjpwYXNz' }, '/')).toEqual(none);
    expect(await authn.authenticate({ authorization: `Basic ${tok}` }, '/')).toEqual(none);
    expect(await authn.authenticate({ authorization: `bearer ${tok}` }, '/')).toEqual(none); // Envoy: value_str.find("Bearer "), case-sensitive
    expect(await authn.authenticate({ authorization: `BEARER ${tok}` }, '/')).toEqual(none);
    expect(await authn.authenticate({ authorization: 'Bearer' }, '/')).toEqual(none); // no "Bearer " (the trailing space) in it
    // Skipped, so a token elsewhere is the request's token.
    expect(reason(await authn.authenticate({ authorization: 'Basic dXNlcjpwYXNz' }, `/?access_token=${tok}`))).toBe('ok');
  });

  test('the prefix anywhere in the value; the token from the first base64url character after it to the end of the value (Envoy extractJWT)', async () => {
    const { authn } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa);
    expect(reason(await authn.authenticate({ authorization: `Bearer ${tok}` }, '/'))).toBe('ok');
    expect(reason(await authn.authenticate({ authorization: `Bearer   ${tok}` }, '/'))).toBe('ok');
    expect(reason(await authn.authenticate({ authorization: `Token Bearer ${tok}` }, '/'))).toBe('ok');
    // Anything after the token is part of it, and so no JWS (envoyproxy/envoy#25239).
    expect(reason(await authn.authenticate({ authorization: `Bearer ${tok} .junk` }, '/'))).toBe('malformed');
    expect(reason(await authn.authenticate({ authorization: `Bearer ${tok}, Basic dXNlcjpwYXNz` }, '/'))).toBe('malformed');
    // Nothing token-like after the prefix: the whole value, no JWS either.
    expect(reason(await authn.authenticate({ authorization: 'Bearer !!' }, '/'))).toBe('malformed');
  });

  test('a repeated token header is refused when any of its values holds a token (the app might read another one), skipped when none does', async () => {
    const { authn } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa);
    expect(reason(await authn.authenticate({ authorization: [`Bearer ${tok}`, `bearer ${await token(rsa, { sub: 'mallory' })}`] }, '/'))).toBe('multiple-tokens');
    expect(reason(await authn.authenticate({ authorization: [`Bearer ${tok}`, `Bearer ${tok}`] }, '/'))).toBe('multiple-tokens');
    expect(await authn.authenticate({ authorization: ['Basic dXNlcjpwYXNz', 'Basic eDp5'] }, '/')).toEqual({ kind: 'none' });
  });

  test('fromHeaders and fromParams replace the defaults', async () => {
    const { authn } = setup({ jwks: jwks(rsa), fromHeaders: [{ name: 'X-Jwt', prefix: '' }], fromParams: ['t'] });
    const tok = await token(rsa);
    expect(reason(await authn.authenticate({ 'x-jwt': tok }, '/'))).toBe('ok');
    expect(reason(await authn.authenticate({ 'x-jwt': `Bearer ${tok}` }, '/'))).toBe('malformed'); // no prefix: the whole value is the token
    expect(reason(await authn.authenticate({}, `/p?t=${tok}`))).toBe('ok');
    expect(await authn.authenticate({ authorization: `Bearer ${tok}` }, `/p?access_token=${tok}`)).toEqual({ kind: 'none' });
  });

  // adv9 D6: headers[name] found Object.prototype's `constructor` on every request without
  // that field, and refused it (multiple-tokens): every token-less request got 401.
  test.each(['constructor', '__proto__'])('a fromHeaders location named %s reads the request\'s own field only', async (name) => {
    const { authn } = setup({ jwks: jwks(rsa), fromHeaders: [{ name, prefix: '' }] });
    expect(await authn.authenticate({ 'user-agent': 'x' }, '/')).toEqual({ kind: 'none' });
    const headers = Object.defineProperty({}, name, { value: await token(rsa), enumerable: true }) as Record<string, string>;
    expect(reason(await authn.authenticate(headers, '/'))).toBe('ok');
  });

  test('two different tokens in one request are refused', async () => {
    const { authn } = setup({ jwks: jwks(rsa) });
    const [a, b] = [await token(rsa), await token(rsa, { sub: 'bob' })];
    expect(reason(await authn.authenticate({ authorization: `Bearer ${a}` }, `/?access_token=${b}`))).toBe('multiple-tokens');
  });

  test('withoutParam drops only the named parameter', () => {
    expect(withoutParam('/a?x=1&access_token=t&y=2', 'access_token')).toBe('/a?x=1&y=2');
    expect(withoutParam('/a?access_token=t', 'access_token')).toBe('/a');
    expect(withoutParam('/a', 'access_token')).toBe('/a');
  });
});

describe('JWKS from a URL', () => {
  beforeEach(() => {
    hits.count = 0;
    serverUp = true;
  });

  test('fetched once, cached, refreshed on schedule', async () => {
    served = jwks(rsa);
    const { run, clock, fetches, registry } = setup({ jwksUri: jwksUrl });
    const tok = await token(rsa);
    expect(reason(await run(tok))).toBe('ok');
    expect(reason(await run(tok))).toBe('ok');
    expect(hits.count).toBe(1);
    clock.advance(300_000);
    await registry.sourceFor(parseJwtRule({ issuer: ISS, jwksUri: jwksUrl }, 'r')).refresh();
    expect(hits.count).toBe(2);
    expect(fetches).toEqual(['ok', 'ok']);
    registry.close();
  });

  test('unknown kid: the JWKS is refetched once (the rotated key is then accepted); a made-up kid is refused without hammering the issuer', async () => {
    served = jwks(rsa);
    const { run, clock, fetches, registry } = setup({ jwksUri: jwksUrl });
    expect(reason(await run(await token(rsa)))).toBe('ok');
    expect(hits.count).toBe(1);
    clock.advance(31_000);
    served = jwks(rsa, rotated);
    expect(reason(await run(await token(rotated)))).toBe('ok');
    expect(hits.count).toBe(2);
    // A kid nobody has: one refetch is allowed only after minRefetchIntervalMs, so...
    const bogus = await token(rsa, {}, { kid: 'nope' });
    expect(reason(await run(bogus))).toBe('unknown-kid');
    expect(reason(await run(bogus))).toBe('unknown-kid');
    expect(hits.count).toBe(2); // ...both were refused without a fetch,
    clock.advance(31_000);
    expect(reason(await run(bogus))).toBe('unknown-kid');
    expect(reason(await run(bogus))).toBe('unknown-kid');
    expect(hits.count).toBe(3); // ...then exactly one refetch, then refused again.
    expect(fetches).toEqual(['ok', 'ok', 'rate-limited', 'rate-limited', 'ok', 'rate-limited']);
    registry.close();
  });

  test('URL down: the last good keys are kept, and retried', async () => {
    served = jwks(rsa);
    const { run, clock, fetches, registry } = setup({ jwksUri: jwksUrl });
    const tok = await token(rsa);
    expect(reason(await run(tok))).toBe('ok');
    serverUp = false;
    clock.advance(300_000); // the scheduled refresh fails
    const src = registry.sourceFor(parseJwtRule({ issuer: ISS, jwksUri: jwksUrl }, 'r'));
    await src.refresh();
    expect(fetches).toEqual(['ok', 'error']);
    expect(reason(await run(tok))).toBe('ok');
    serverUp = true;
    clock.advance(10_000); // retryMs
    await src.refresh();
    expect(fetches).toEqual(['ok', 'error', 'ok']);
    registry.close();
  });

  test('a JWKS server that never answers is abandoned after fetchTimeoutMs (counted as an error)', async () => {
    serverHangs = true;
    const { run, clock, fetches, registry } = setup({ jwksUri: jwksUrl });
    const pending = run(await token(rsa));
    for (let i = 0; i < 100 && hits.count === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(hits.count).toBe(1);
    clock.advance(1_999);
    await new Promise((r) => setTimeout(r, 50));
    expect(fetches).toEqual([]);
    clock.advance(1);
    expect(reason(await pending)).toBe('jwks-unavailable');
    expect(fetches).toEqual(['error']);
    serverHangs = false;
    jwksServer.closeAllConnections();
    registry.close();
  });

  test('jwksFile: read from disk, re-read on refresh (rotation by replacing the file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wren-jwks-'));
    const file = join(dir, 'jwks.json');
    writeFileSync(file, jwks(rsa));
    const { run, clock, registry, fetches } = setup({ jwksFile: file });
    expect(reason(await run(await token(rsa)))).toBe('ok');
    expect(reason(await run(await token(rotated)))).toBe('unknown-kid');
    writeFileSync(file, jwks(rsa, rotated));
    clock.advance(300_000);
    await registry.sourceFor(parseJwtRule({ issuer: ISS, jwksFile: file }, 'r')).refresh();
    expect(reason(await run(await token(rotated)))).toBe('ok');
    expect(fetches.filter((f) => f === 'ok').length).toBeGreaterThanOrEqual(2);
    registry.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('never loaded and the URL down: refused as jwks-unavailable', async () => {
    serverUp = false;
    const { run, registry } = setup({ jwksUri: jwksUrl });
    expect(reason(await run(await token(rsa)))).toBe('jwks-unavailable');
    registry.close();
  });

  test('a JWKS that holds an HMAC key is rejected as a whole; the last good keys stay', async () => {
    served = jwks(rsa);
    const { run, clock, fetches, registry } = setup({ jwksUri: jwksUrl });
    expect(reason(await run(await token(rsa)))).toBe('ok');
    served = JSON.stringify({ keys: [{ kty: 'oct', k: b64url('secret'), kid: 'h' }] });
    clock.advance(300_000);
    await registry.sourceFor(parseJwtRule({ issuer: ISS, jwksUri: jwksUrl }, 'r')).refresh();
    expect(fetches).toEqual(['ok', 'error']);
    expect(reason(await run(await token(rsa)))).toBe('ok');
    registry.close();
  });
});

describe('verified-token cache', () => {
  beforeEach(() => {
    hits.count = 0;
    serverUp = true;
  });

  test('a repeated token is not verified again (its key gone from the JWKS does not matter); cacheSize 0 verifies every time', async () => {
    for (const [cacheSize, second] of [[100, 'ok'], [0, 'unknown-kid']] as const) {
      served = jwks(rsa);
      const { run, clock, registry } = setup({ jwksUri: jwksUrl }, { cacheSize, minRefetchIntervalMs: 0 });
      const tok = await token(rsa);
      expect(reason(await run(tok))).toBe('ok');
      served = jwks(ec);
      clock.advance(300_000);
      await registry.sourceFor(parseJwtRule({ issuer: ISS, jwksUri: jwksUrl }, 'r')).refresh();
      expect(reason(await run(tok))).toBe(second);
      registry.close();
    }
  });

  test('a hit still honours exp and nbf (with the skew)', async () => {
    const { run, clock } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa, {}, { exp: sec(NOW) + 10, nbf: sec(NOW) - 10 });
    expect(reason(await run(tok))).toBe('ok');
    clock.advance(69_000);
    expect(reason(await run(tok))).toBe('ok');
    clock.advance(2_000);
    expect(reason(await run(tok))).toBe('expired');
  });

  test('a hit checks exp and nbf against the wall clock, as a fresh verification does, not the monotonic one', async () => {
    const { run, clock } = setup({ jwks: jwks(rsa) });
    const tok = await token(rsa, {}, { exp: sec(NOW) + 300 });
    expect(reason(await run(tok))).toBe('ok');
    // The wall clock steps an hour ahead; the monotonic clock does not move (a VM resumed).
    clock.wallOffsetMs = 3_600_000;
    expect(reason(await run(await token(rsa, {}, { exp: sec(NOW) + 300 })))).toBe('expired'); // a token not in the cache
    expect(reason(await run(tok))).toBe('expired'); // the cached one: expired 55 minutes ago too
    // And the other way: a token not yet valid by the wall clock is not valid from the cache either.
    clock.wallOffsetMs = 0;
    const early = await token(rsa, {}, { nbf: sec(NOW) + 30 });
    expect(reason(await run(early))).toBe('ok'); // within the skew
    clock.wallOffsetMs = -3_600_000;
    expect(reason(await run(early))).toBe('not-yet-valid');
  });

  test('the cache is bounded: the least recently used token is evicted first', async () => {
    served = jwks(rsa);
    const { run, clock, registry } = setup({ jwksUri: jwksUrl }, { cacheSize: 2 });
    const [a, b, c] = [await token(rsa), await token(rsa), await token(rsa)];
    for (const t of [a, b, a, c]) expect(reason(await run(t))).toBe('ok'); // c evicts b (a was used after b)
    served = jwks(ec); // the key is gone: only cached tokens still pass
    clock.advance(300_000);
    await registry.sourceFor(parseJwtRule({ issuer: ISS, jwksUri: jwksUrl }, 'r')).refresh();
    expect([reason(await run(a)), reason(await run(c)), reason(await run(b))]).toEqual(['ok', 'ok', 'unknown-kid']);
    registry.close();
  });
});
