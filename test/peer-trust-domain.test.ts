import type { Proxy } from '../proxy/proxy.js';
import { testPki, type TestPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { httpEchoBackend, send, type EchoBackend } from './helpers/route-backends.js';
import { metric } from './helpers/admin-metric.js';

/**
 * Found by review (adv9): the inbound admitted any client certificate that chained to its
 * trust bundle, whatever trust domain its SPIFFE ID named. Istio's sidecars validate the
 * peer's trust domain on every inbound mTLS connection. A bundle that holds another mesh's
 * root (shared across meshes, or an anchor kept for a migration) let that mesh's workloads
 * in as peers, and a policy principal `cluster.local/ns/X/sa/Y` (which Wren also reads as
 * the local trust domain's, docs/policy.md "Trust domains") named them too.
 *
 * Two roots, cluster.local and other.mesh; every sidecar trusts both (one shared bundle).
 */
const home = testPki('cluster.local');
const foreign = testPki('other.mesh');
const shared = (p: TestPki): TestPki => ({
  ...p,
  issue: (ns, sa, o) => ({ ...p.issue(ns, sa, o), trustBundlePem: home.bundlePem + foreign.bundlePem }),
});

let server: Proxy, local: Proxy, outsider: Proxy, app: EchoBackend;

beforeAll(async () => {
  app = await httpEchoBackend('web');
  server = await startProxy({ pki: shared(home), serviceAccount: 'web' });
  const services = [meshService('web', 80, [{ appPort: app.port, proxy: server }])];
  [local, outsider] = await Promise.all([
    startProxy({ pki: shared(home), serviceAccount: 'client', services }),
    startProxy({ pki: shared(foreign), serviceAccount: 'client', services }),
  ]);
});

afterAll(async () => {
  await Promise.all([local.close(), outsider.close(), server.close()]);
  await app.close();
});

const refused = (p: Proxy) => metric(p, /wren_proxy_errors_total\{[^}]*code="foreign-trust-domain"[^}]*\} (\d+)/);

test('a caller of the mesh trust domain is served', async () => {
  expect(outsider.tls.spiffeId).toBe('spiffe://other.mesh/ns/default/sa/client');
  const r = await send(local.outboundPort, 'web', '/x');
  expect(r.status).toBe(200);
  expect(await refused(server)).toBe(0);
});

test('a caller whose certificate chains to the bundle but names another trust domain is refused at the handshake, counted', async () => {
  const r = await send(outsider.outboundPort, 'web', '/x');
  expect(r.status).toBeGreaterThanOrEqual(502);
  expect(r.status).toBeLessThanOrEqual(503);
  expect(await refused(server)).toBeGreaterThanOrEqual(1);
  // The app never saw it: only the local caller's request arrived.
  expect(app.seen.map((q) => String(q.headers['x-forwarded-client-cert'] ?? ''))).toEqual([expect.stringContaining('spiffe://cluster.local/ns/default/sa/client')]);
});
