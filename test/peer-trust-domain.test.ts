import { createServer as tlsServer, type Server as TlsServer } from 'node:tls';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../proxy/proxy.js';
import type { Service } from '../contract/model.js';
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

let server: Proxy, local: Proxy, outsider: Proxy, app: EchoBackend, impostor: TlsServer;
let impostorConnections = 0;

/** A service whose one endpoint is a sidecar at proxyPort that advertises no identity (a hand-written endpoint). */
const anonymous = (name: string, appPort: number, proxyPort: number): Service => {
  const s = meshService(name, 80, []);
  return { ...s, ports: [{ ...s.ports[0], endpoints: [{ address: '127.0.0.1', port: appPort, proxyPort, identity: '', weight: 1, zone: '', ready: true }] }] };
};

beforeAll(async () => {
  app = await httpEchoBackend('web');
  server = await startProxy({ pki: shared(home), serviceAccount: 'web' });
  // Answers any caller with a certificate of the foreign trust domain that chains to the shared bundle.
  const f = shared(foreign).issue('default', 'web');
  impostor = tlsServer({ key: f.keyPem, cert: f.certChainPem, ALPNProtocols: ['wren-mux/2', 'wren-mux/1', 'h2', 'http/1.1'] }, (s) => {
    s.on('error', () => {});
    s.resume();
  });
  impostor.on('connection', () => impostorConnections++);
  impostor.on('tlsClientError', () => {});
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
  const services = [
    meshService('web', 80, [{ appPort: app.port, proxy: server }]),
    anonymous('anon-home', app.port, server.inboundPort),
    anonymous('anon-foreign', app.port, (impostor.address() as AddressInfo).port),
  ];
  [local, outsider] = await Promise.all([
    startProxy({ pki: shared(home), serviceAccount: 'client', services }),
    startProxy({ pki: shared(foreign), serviceAccount: 'client', services }),
  ]);
});

afterAll(async () => {
  await Promise.all([local.close(), outsider.close(), server.close()]);
  await app.close();
  await new Promise((r) => impostor.close(r));
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

/** A request through `p`'s outbound: the status and the proxy-error header. */
function call(p: Proxy, host: string): Promise<{ status: number; error: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: p.outboundPort, path: '/x', headers: { host } }, (r) => {
      r.resume();
      resolve({ status: r.statusCode ?? 0, error: String(r.headers['wren-proxy-error'] ?? '') });
    });
    req.on('error', reject);
    req.end();
  });
}

test('an endpoint that advertises no identity is reached when its sidecar is a workload of the mesh trust domain', async () => {
  expect(await call(local, 'anon-home')).toEqual({ status: 200, error: '' });
});

test("an endpoint that advertises no identity is refused by the caller when its certificate names another trust domain (the outbound's half of the inbound's check)", async () => {
  const before = impostorConnections;
  expect(await call(local, 'anon-foreign')).toEqual({ status: 502, error: 'peer-identity' });
  // The impostor was reached and showed its certificate: the caller refused its identity.
  expect(impostorConnections).toBeGreaterThan(before);
});
