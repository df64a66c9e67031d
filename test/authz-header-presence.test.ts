import type { Proxy } from '../proxy/proxy.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';

/**
 * Found by review (adv9 D2): on `request.headers[NAME]`, Istio turns the value `*` into
 * Envoy's `present_match` (pilot/pkg/security/authz/model/matcher/header.go): a header
 * that is there matches, an empty value included. Wren read an absent header as '' and `*`
 * as "any non-empty value", so a DENY on `x-debug: ["*"]` let `x-debug:` (empty) through to
 * the app, and an ALLOW on `notValues: ["*"]` (no `x-impersonate` allowed) admitted
 * `x-impersonate:` (empty). Between real sidecars.
 */
const pki = testPki();
let server: Proxy, client: Proxy, app: EchoBackend;

beforeAll(async () => {
  app = await httpEchoBackend('web');
  const policy = {
    authorizationPolicies: [
      { name: 'default/deny-debug', action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }] },
      { name: 'default/allow-no-impersonate', action: 'ALLOW', rules: [{ when: [{ key: 'request.headers[x-impersonate]', notValues: ['*'] }] }] },
    ],
  };
  server = await startProxy({ pki, serviceAccount: 'web', config: { policy } });
  client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close()]);
  await app.close();
});

const get = (headers: Record<string, string>) => send(client.outboundPort, 'web', '/x', { headers });

test('a DENY on a header with values ["*"] denies the header sent with an empty value', async () => {
  const before = app.seen.length;
  for (const value of ['1', '']) {
    const r = await get({ 'x-debug': value });
    expect([r.status, r.headers['wren-authz-reason']]).toEqual([403, 'deny-policy default/deny-debug']);
  }
  expect(app.seen.length).toBe(before);
  expect((await get({})).status).toBe(200);
});

test('an ALLOW on a header with notValues ["*"] admits only requests without the header, an empty one included', async () => {
  const before = app.seen.length;
  for (const value of ['bob', '']) {
    const r = await get({ 'x-impersonate': value });
    expect([r.status, r.headers['wren-authz-reason']]).toEqual([403, 'no-allow-policy-matched']);
  }
  expect(app.seen.length).toBe(before);
  expect((await get({ 'x-other': '' })).status).toBe(200);
});
