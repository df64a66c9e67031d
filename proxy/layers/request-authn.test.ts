import { Readable } from 'node:stream';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { parseInboundPolicy } from '../../contract/parse.js';
import type { ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { Registry } from '../metrics/prom.js';
import { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import { JwksRegistry } from '../policy/jwks-source.js';
import { PolicyTelemetry } from '../policy/policy-telemetry.js';
import { requestAuthn } from './request-authn.js';

/** The layer with a fake clock and inline keys: what reaches the app, what a refused caller sees, what is counted and logged. */
const ISS = 'https://id.example.com';
const NOW = Date.UTC(2026, 0, 1);
let priv: CryptoKey;
let jwks = '';

beforeAll(async () => {
  const kp = await generateKeyPair('ES256', { extractable: true });
  priv = kp.privateKey;
  jwks = JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'k1' }] });
});

const sign = (claims: Record<string, unknown>, exp = NOW / 1000 + 600) =>
  new SignJWT({ sub: 'alice', ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISS).setAudience('checkout').setExpirationTime(exp).sign(priv);

function setup(rule: Record<string, unknown> = {}, opts: { noRules?: boolean } = {}) {
  const clock = new FakeClock(NOW);
  const registry = new Registry();
  const logs: string[] = [];
  const telemetry = new PolicyTelemetry(registry, createLogger({ level: 'debug', sink: (l) => logs.push(l) }));
  const jwksRegistry = new JwksRegistry({ clock, logger: createLogger({ sink: () => undefined }), settings: { refreshMs: 1e6, retryMs: 1e4, fetchTimeoutMs: 1e3, minRefetchIntervalMs: 3e4 }, onFetch: () => undefined });
  const policy = new CompiledInboundPolicy(
    parseInboundPolicy({ jwtRules: opts.noRules ? [] : [{ issuer: ISS, audiences: ['checkout'], jwks, ...rule }] }, 'policy'),
    { registry: jwksRegistry, clock, clockSkewSec: 60, cacheSize: 100 },
  );
  const seen: ProxyRequest[] = [];
  const svc = requestAuthn(() => policy, telemetry)((req) => {
    seen.push(req);
    return Promise.resolve({ status: 200, headers: {}, body: null, trailers: () => undefined });
  });
  const send = (headers: Record<string, string>, path = '/api/x') =>
    svc({ method: 'GET', path, headers: { ...headers }, body: null, source: { address: '10.0.0.1', port: 1, identity: 'spiffe://cluster.local/ns/demo/sa/web' }, targetPort: 8080 } as unknown as ProxyRequest);
  const metric = async (reason: string) => ((await registry.getSingleMetric('wren_jwt_denied_total')!.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0);
  return { send, seen, logs, metric, registry };
}

const text = async (res: ProxyResponse) => {
  let s = '';
  for await (const c of res.body as Readable) s += String(c);
  return s;
};

test('a valid token: the app gets the request principal, claim headers and no token', async () => {
  const { send, seen } = setup({ outputClaimToHeaders: [{ header: 'x-groups', claim: 'groups' }, { header: 'x-tenant', claim: 'org.tenant' }, { header: 'x-evil', claim: 'evil' }] });
  const tok = await sign({ groups: ['a', 'b'], org: { tenant: 'acme' }, evil: 'x\r\ninjected: 1' });
  const res = await send({ authorization: `Bearer ${tok}`, 'x-groups': 'forged', 'x-evil': 'forged' });
  expect(res.status).toBe(200);
  expect(seen[0].requestAuth).toMatchObject({ principal: `${ISS}/alice`, audiences: ['checkout'] });
  expect(seen[0].headers).toEqual({ 'x-groups': 'a,b', 'x-tenant': 'acme' });
});

// adv9 D6: header maps and claims are plain objects: the names `__proto__` and `constructor`
// are a header and a claim like any other, never Object.prototype's.
test('output headers named __proto__ or constructor are set as fields; a claim named constructor is only the token\'s own', async () => {
  const { send, seen } = setup({ outputClaimToHeaders: [{ header: '__proto__', claim: 'sub' }, { header: 'constructor', claim: 'tenant' }, { header: 'x-ctor', claim: 'constructor' }, { header: 'x-nested', claim: 'org.constructor' }] });
  const res = await send({ authorization: `Bearer ${await sign({ tenant: 'acme', org: {} })}` });
  expect(res.status).toBe(200);
  const h = seen[0].headers;
  expect(Object.getPrototypeOf(h)).toBe(Object.prototype);
  expect(Object.hasOwn(h, '__proto__') && h['__proto__']).toBe('alice');
  expect(Object.hasOwn(h, 'constructor') && h['constructor']).toBe('acme');
  expect(Object.hasOwn(h, 'x-ctor') || Object.hasOwn(h, 'x-nested')).toBe(false);
});

test('forwardOriginalToken keeps it; outputPayloadToHeader carries the payload; a query token is removed from the path', async () => {
  const keep = setup({ forwardOriginalToken: true, outputPayloadToHeader: 'x-jwt-payload' });
  const tok = await sign({});
  await keep.send({ authorization: `Bearer ${tok}` });
  expect(keep.seen[0].headers.authorization).toBe(`Bearer ${tok}`);
  expect(JSON.parse(Buffer.from(keep.seen[0].headers['x-jwt-payload'] as string, 'base64url').toString())).toMatchObject({ iss: ISS, sub: 'alice' });
  const drop = setup();
  await drop.send({}, `/api/x?a=1&access_token=${tok}`);
  expect(drop.seen[0].path).toBe('/api/x?a=1');
  expect(drop.seen[0].requestAuth?.principal).toBe(`${ISS}/alice`);
});

test('no token: passed on with no principal, but forged claim headers are still dropped', async () => {
  const { send, seen } = setup({ outputClaimToHeaders: [{ header: 'x-groups', claim: 'groups' }] });
  await send({ 'x-groups': 'admins' });
  expect(seen[0].requestAuth).toBeUndefined();
  expect(seen[0].headers).toEqual({});
});

test('an invalid token: 401 from the error table with www-authenticate, the reason counted and logged, never the token', async () => {
  const { send, seen, logs, metric } = setup();
  const tok = await sign({}, NOW / 1000 - 3600);
  const res = await send({ authorization: `Bearer ${tok}` }, `/api/x?secret=${tok}`);
  expect(res.status).toBe(401);
  expect(res.headers).toMatchObject({ 'wren-proxy-error': 'jwt-invalid', 'www-authenticate': 'Bearer error="invalid_token"', 'wren-jwt-reason': 'expired' });
  expect(await text(res)).toBe('JWT verification failed: expired\n');
  expect(seen).toHaveLength(0);
  expect(await metric('expired')).toBe(1);
  expect(logs.join('\n')).toContain('"reason":"expired"');
  expect(logs.join('\n')).not.toContain(tok.split('.')[2]);
  expect(logs.join('\n')).not.toContain(tok.split('.')[1]);
});

test('gRPC callers get UNAUTHENTICATED (16) in a trailers-only response', async () => {
  const { send } = setup();
  const res = await send({ authorization: 'Bearer not-a-jwt', 'content-type': 'application/grpc' });
  expect(res.status).toBe(200);
  expect(res.headers).toMatchObject({ 'grpc-status': '16', 'wren-proxy-error': 'jwt-invalid', 'wren-jwt-reason': 'malformed' });
});

test('no jwtRules: the layer does nothing at all (the same request object, untouched headers)', async () => {
  const { send, seen } = setup({}, { noRules: true });
  await send({ authorization: 'Bearer garbage', 'x-groups': 'kept' });
  expect(seen[0].headers).toEqual({ authorization: 'Bearer garbage', 'x-groups': 'kept' });
  expect(seen[0].requestAuth).toBeUndefined();
});
