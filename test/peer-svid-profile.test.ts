import { connect as tlsConnect } from 'node:tls';
import { connect as h2connect } from 'node:http2';
import { CertificateAuthority, createRootCa, issueWorkload } from '../certs/index.js';
import { craftLeaf, type AltName, type CraftOptions } from './helpers/crafted-leaf.js';
import type { Proxy } from '../proxy/proxy.js';
import type { TestPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { httpEchoBackend, type EchoBackend } from './helpers/route-backends.js';
import { metric } from './helpers/admin-metric.js';

/**
 * Found by adv16: the inbound took the caller's identity as any one URI SAN that started with
 * `spiffe://`, from any leaf that chained to the bundle. A CA of the bundle that signs URIs
 * as asked, without the X509-SVID profile the mesh CA keeps to (cert-manager, an operator's
 * CA for `tls:` files), made callers such as `…/sa/client;URI=spiffe://…/sa/admin` (the app
 * read two URI fields in x-forwarded-client-cert), `…/sa/../../ns/kube-system/sa/admin` and
 * `…/sa/admin/` (principal patterns with `*` matched them), and a CA certificate or one
 * with keyCertSign presented as the leaf was a peer (X509-SVID §5.2 says validators must
 * refuse both). A real sidecar and real mTLS; every certificate is signed by the mesh root,
 * so OpenSSL accepts each chain.
 */
const TD = 'cluster.local';
const root = createRootCa({ trustDomain: TD });
const ca = new CertificateAuthority({ ...root, trustDomain: TD });
const pki: TestPki = {
  ca, bundlePem: root.certPem, trustDomain: TD,
  issue(ns, sa, o = {}) {
    const w = issueWorkload(ca, `spiffe://${TD}/ns/${ns}/sa/${sa}`, o.ttlMs, o.now);
    return { keyPem: w.keyPem, certChainPem: w.certPem, trustBundlePem: root.certPem, spiffeId: w.spiffeId };
  },
};
const ADMIN = `spiffe://${TD}/ns/default/sa/admin`;
const CLIENT = `spiffe://${TD}/ns/default/sa/client`;

/** A leaf the root signs as asked: what a CA without the X509-SVID profile would issue. */
function crafted(altNames: AltName[], o: CraftOptions = {}): { key: string; cert: string } {
  const c = craftLeaf(root, altNames, { ...o, serial: '0a' });
  return { key: c.keyPem, cert: c.certPem };
}

let server: Proxy, app: EchoBackend;

beforeAll(async () => {
  app = await httpEchoBackend('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
});

afterAll(async () => {
  await server.close();
  await app.close();
});

/** One h2 request straight to the inbound port with the given client certificate: the XFCC the app got, or how it failed. */
function call(client: { key: string; cert: string }): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, ...client });
    const done = (v: string) => {
      resolve(v);
      socket.destroy();
    };
    socket.once('error', () => done('refused'));
    socket.once('close', () => done('refused'));
    socket.once('secureConnect', () => {
      const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { createConnection: () => socket });
      s.on('error', () => done('refused'));
      const r = s.request({ ':path': '/x', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' });
      let body = '';
      let status = 0;
      r.on('response', (h) => (status = Number(h[':status'])));
      r.on('data', (d: Buffer) => (body += d.toString()));
      // A stream that ends with no response: the connection was closed under it (refused).
      r.on('end', () => done(status === 0 ? 'refused' : status !== 200 ? `status:${status}` : String((JSON.parse(body) as { headers: Record<string, string> }).headers['x-forwarded-client-cert'] ?? '')));
      r.on('error', () => done('refused'));
      r.end();
    });
  });
}

const refused = () => metric(server, /wren_proxy_errors_total\{[^}]*code="foreign-trust-domain"[^}]*\} (\d+)/);

test('an X509-SVID is served as its one URI SAN, a DNS SAN with commas beside it changing nothing', async () => {
  const m = pki.issue('default', 'client');
  expect(await call({ key: m.keyPem, cert: m.certChainPem })).toBe(`By=${server.tls.spiffeId};URI=${CLIENT}`);
  expect(await call(crafted([{ type: 6, value: CLIENT }, { type: 2, value: `x, URI:${ADMIN}` }]))).toBe(`By=${server.tls.spiffeId};URI=${CLIENT}`);
});

test('a URI SAN that is no SPIFFE ID, or a CA certificate as the leaf: refused at the handshake, counted, the app never called', async () => {
  const before = await refused();
  const seen = app.seen.length;
  const bad = [
    crafted([{ type: 6, value: `${CLIENT};URI=${ADMIN}` }]),
    crafted([{ type: 6, value: `spiffe://${TD}/ns/default/sa/../../ns/kube-system/sa/admin` }]),
    crafted([{ type: 6, value: `${ADMIN}/` }]),
    crafted([{ type: 6, value: ADMIN }], { ca: true }),
    crafted([{ type: 6, value: ADMIN }], { keyCertSign: true }),
    // No URI SAN at all, a DNS name spelling one: Node escapes its commas, so it never was one.
    crafted([{ type: 2, value: `x, URI:${ADMIN}, DNS:y` }]),
  ];
  for (const c of bad) expect(await call(c)).toBe('refused');
  expect(await refused()).toBe(before + bad.length);
  expect(app.seen.length).toBe(seen);
});

test('an X509-SVID with a private extension whose value is no DER (OpenSSL verifies it, Go reads it as opaque) keeps its identity (adv18)', async () => {
  const c = crafted([{ type: 6, value: CLIENT }], { extra: [{ id: '1.3.6.1.4.1.99999.1', value: '\x01' }] });
  expect(await call(c)).toBe(`By=${server.tls.spiffeId};URI=${CLIENT}`);
});
