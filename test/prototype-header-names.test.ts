import type { Proxy } from '../proxy/proxy.js';
import { parseInboundPolicy, parseService } from '../contract/parse.js';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';

/**
 * Found by review (adv9 D6): header maps are plain objects, and the lookups of a configured
 * header name read `headers[name]`: for `constructor` (a valid field name, accepted by the
 * CRDs and the parsers) that is Object.prototype's member on every request without such a
 * field. A `when` on `request.headers[constructor]` failed every request with 500
 * (`v.join is not a function`), even under an AUDIT-only policy; a RequestAuthentication
 * reading its token from a `constructor` header refused every request without a token
 * (401 multiple-tokens); an HTTPRoute header match on it failed every request to the
 * service. Each lookup now reads the request's own fields only (proxy/http/headers.ts
 * `field`), and writes `__proto__` as a field, never as the map's prototype.
 */
const pki = testPki();
let server: Proxy, client: Proxy, backend: EchoBackend;
let version = 0;

beforeAll(async () => {
  backend = await httpEchoBackend('echo');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({ pki, serviceAccount: 'client' });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close()]);
  await backend.close();
});

const endpoint = () => ({ address: '127.0.0.1', port: backend.port, proxyPort: server.inboundPort, identity: server.tls.spiffeId });

/** The client's view of service `web` (port 80), with these routes; the server's inbound policy. */
function apply(o: { routes?: unknown[]; policy?: Record<string, unknown> }): void {
  const web = parseService({ name: 'web', ports: [{ port: 80, protocol: 'http1', endpoints: [endpoint()] }], routes: o.routes ?? [] }, 'web');
  const echo = parseService({ name: 'echo', ports: [{ port: 80, protocol: 'http1', endpoints: [endpoint()] }] }, 'echo');
  client.applySnapshot({ version: String(++version), source: 'test', services: [web, echo] });
  server.applySnapshot({ version: String(version), source: 'test', services: [], inboundPolicy: parseInboundPolicy({ mtls: { mode: 'STRICT' }, ...(o.policy ?? {}) }, 'policy') });
}

const get = (headers: Record<string, string> = {}, path = '/x') => send(client.outboundPort, 'web', path, { headers });

test('an AUDIT-only policy on request.headers[constructor] or [__proto__] changes nothing; a DENY on them reads the field', async () => {
  for (const name of ['constructor', '__proto__']) {
    for (const cond of [{ values: ['x'] }, { notValues: ['x'] }]) {
      apply({ policy: { authorizationPolicies: [{ name: 'default/audit', action: 'AUDIT', rules: [{ when: [{ key: `request.headers[${name}]`, ...cond }] }] }] } });
      expect((await get()).status).toBe(200);
    }
  }
  apply({ policy: { authorizationPolicies: [{ name: 'default/deny', action: 'DENY', rules: [{ when: [{ key: 'request.headers[constructor]', values: ['x'] }] }] }] } });
  expect((await get()).status).toBe(200);
  expect((await get({ constructor: 'y' })).status).toBe(200);
  const denied = await get({ constructor: 'x' });
  expect(denied.status).toBe(403);
  expect(denied.headers['wren-authz-reason']).toBe('deny-policy default/deny');
});

test('a RequestAuthentication reading its token from a constructor header passes a request without one', async () => {
  for (const name of ['constructor', '__proto__']) {
    apply({ policy: { jwtRules: [{ issuer: 'https://id.example.com', jwks: '{"keys":[]}', fromHeaders: [{ name, prefix: '' }] }] } });
    const r = await get();
    expect(r.status).toBe(200);
    expect(r.headers['wren-jwt-reason']).toBeUndefined();
    // A token that is there is read (and refused: no JWT).
    const withToken = await get({ [name]: 'a.b.c' });
    expect([withToken.status, withToken.headers['wren-jwt-reason']]).toEqual([401, 'malformed']);
  }
});

test('an HTTPRoute header match and a RequestHeaderModifier on constructor: routed on the request\'s own field, and added as one', async () => {
  const backendRef = (name: string) => ({ name, namespace: 'default', port: 80 });
  apply({
    routes: [{
      kind: 'HTTPRoute', name: 'r', namespace: 'default', ports: [],
      rules: [
        { name: 'by-header', matches: [{ headers: [{ name: 'constructor', value: 'v2' }] }], backends: [backendRef('echo')], filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [], add: [{ name: 'x-rule', value: 'by-header' }], remove: [] } }] },
        { name: 'rest', matches: [{ path: { type: 'PathPrefix', value: '/' } }], backends: [backendRef('echo')], filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [], add: [{ name: 'constructor', value: 'added' }, { name: 'x-rule', value: 'rest' }], remove: [] } }] },
      ],
    }],
  });
  const plain = await get();
  expect(plain.status).toBe(200);
  expect(backend.seen.at(-1)?.headers).toMatchObject({ 'x-rule': 'rest', constructor: 'added' });
  const v2 = await get({ constructor: 'v2' });
  expect(v2.status).toBe(200);
  expect(backend.seen.at(-1)?.headers).toMatchObject({ 'x-rule': 'by-header', constructor: 'v2' });
});

test('admin /debug/route with a header named constructor', async () => {
  const res = await fetch(`http://127.0.0.1:${client.adminPort}/debug/route?authority=web&path=/x&header=constructor:v2&header=constructor:v3`);
  expect(res.status).toBe(200);
});
