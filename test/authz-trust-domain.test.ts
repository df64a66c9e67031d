import type { Proxy } from '../proxy/proxy.js';
import { parseInboundPolicy } from '../contract/parse.js';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';

/**
 * Found by review (adv9 D1): Istio reads a policy principal of trust domain `cluster.local`
 * as the mesh's own trust domain (pilot/pkg/security/trustdomain/bundle.go,
 * ReplaceTrustDomainAliases), for `principals`, `notPrincipals` and `source.principal`.
 * Wren compared literally, so in a mesh of trust domain example.org a DENY on
 * `cluster.local/ns/default/sa/client` never matched. Real sidecars whose
 * identity.trustDomain and certificates are example.org.
 */
const pki = testPki('example.org');
let server: Proxy, client: Proxy, other: Proxy, app: EchoBackend;
let version = 0;

beforeAll(async () => {
  app = await httpEchoBackend('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  const services = [meshService('web', 80, [{ appPort: app.port, proxy: server }])];
  [client, other] = await Promise.all([startProxy({ pki, serviceAccount: 'client', services }), startProxy({ pki, serviceAccount: 'other', services })]);
});

afterAll(async () => {
  await Promise.all([client.close(), other.close(), server.close()]);
  await app.close();
});

const policy = (authorizationPolicies: unknown[]) =>
  server.applySnapshot({ version: String(++version), source: 'test', services: [], inboundPolicy: parseInboundPolicy({ mtls: { mode: 'STRICT' }, authorizationPolicies }, 'policy') });
const status = async (via: Proxy) => {
  const r = await send(via.outboundPort, 'web', '/x');
  return [r.status, r.headers['wren-authz-reason'] ?? ''];
};

test('the callers are in trust domain example.org', () => {
  expect(client.tls.spiffeId).toBe('spiffe://example.org/ns/default/sa/client');
});

test('DENY principals [cluster.local/ns/default/sa/client] denies spiffe://example.org/ns/default/sa/client', async () => {
  policy([{ name: 'default/deny-client', action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/client'] } }] }] }]);
  expect(await status(client)).toEqual([403, 'deny-policy default/deny-client']);
  expect(await status(other)).toEqual([200, '']);
});

test('ALLOW notPrincipals and the source.principal condition read cluster.local the same way', async () => {
  policy([{ name: 'default/all-but-client', action: 'ALLOW', rules: [{ from: [{ source: { notPrincipals: ['spiffe://cluster.local/ns/default/sa/client'] } }] }] }]);
  expect(await status(client)).toEqual([403, 'no-allow-policy-matched']);
  expect(await status(other)).toEqual([200, '']);
  policy([{ name: 'default/only-other', action: 'ALLOW', rules: [{ when: [{ key: 'source.principal', values: ['cluster.local/ns/default/sa/other'] }] }] }]);
  expect(await status(client)).toEqual([403, 'no-allow-policy-matched']);
  expect(await status(other)).toEqual([200, '']);
});
