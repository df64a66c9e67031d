import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { request as httpRequest } from 'node:http';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/** What crosses between sidecars is mutual TLS, and the inbound port accepts nothing else (STRICT). */
const pki = testPki();
const foreign = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('web', 80, [{ appPort: app.port, proxy: server }]),
      // Advertises an identity the peer does not have: the client must refuse the session.
      { ...meshService('impostor', 80, [{ appPort: app.port, proxy: server }]), ports: [{ ...meshService('impostor', 80, [{ appPort: app.port, proxy: server }]).ports[0], endpoints: [{ address: '127.0.0.1', port: app.port, proxyPort: server.inboundPort, identity: 'spiffe://cluster.local/ns/default/sa/someone-else', weight: 1, zone: '', ready: true }] }] },
    ],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

/** Attempts an h2 request on the inbound port with the given client TLS material; resolves the outcome. */
function tryInbound(opts: { key?: string; cert?: string; ca?: string }): Promise<string> {
  return new Promise((resolve) => {
    // With TLS 1.3 the server judges the client certificate after the client's handshake
    // completed, so a refusal may show up as an alert (error) or as the connection closing.
    const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, ...opts });
    socket.once('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    socket.once('close', () => resolve('closed'));
    socket.once('secureConnect', () => {
      const s = h2connect(`https://127.0.0.1:${server.inboundPort}`, { createConnection: () => socket });
      s.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
      s.on('close', () => resolve('closed'));
      const req = s.request({ ':path': '/name', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' });
      req.on('response', (h) => {
        resolve(`status:${h[':status']}`);
        s.close();
      });
      req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
      req.end();
    });
  });
}

test('the inbound port serves a peer with a certificate from the mesh CA', async () => {
  const m = pki.issue('default', 'client');
  expect(await tryInbound({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem })).toBe('status:200');
});

test('plaintext to the inbound port is refused', async () => {
  const reply = await new Promise<string>((resolve) => {
    const s = netConnect(server.inboundPort, '127.0.0.1', () => s.write('GET /name HTTP/1.1\r\nhost: web\r\n\r\n'));
    let b = '';
    s.on('data', (d) => (b += d.toString('latin1')));
    s.on('close', () => resolve(b));
    s.on('error', () => resolve(b));
  });
  expect(reply).not.toContain('HTTP/1.1 200');
  expect(reply).not.toContain('web');
});

test('no client certificate, a foreign CA, or an expired certificate: refused', async () => {
  const refusedBefore = await refusals();
  expect(await tryInbound({})).toMatch(/^(error:|closed)/);
  const f = foreign.issue('default', 'client');
  expect(await tryInbound({ key: f.keyPem, cert: f.certChainPem })).toMatch(/^(error:|closed)/);
  const expired = pki.issue('default', 'client', { ttlMs: 60_000, now: new Date(Date.now() - 3_600_000) });
  expect(await tryInbound({ key: expired.keyPem, cert: expired.certChainPem })).toMatch(/^(error:|closed)/);
  // Each of the three was refused by the server's handshake, not merely by the client.
  expect((await refusals()) - refusedBefore).toBe(3);
  // And a good peer is still served afterwards.
  const m = pki.issue('default', 'client');
  expect(await tryInbound({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem })).toBe('status:200');
});

test('a peer presenting another identity than the endpoint advertises is refused by the caller', async () => {
  const res = await new Promise<{ status: number; error: string }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/name', headers: { host: 'impostor' } }, (r) => {
      r.resume();
      resolve({ status: r.statusCode ?? 0, error: String(r.headers['wren-proxy-error']) });
    });
    req.on('error', reject);
    req.end();
  });
  expect(res).toEqual({ status: 502, error: 'peer-identity' });
});

async function refusals(): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  const m = /wren_proxy_errors_total\{direction="inbound",code="tls-handshake"\} (\d+)/.exec(metrics);
  return m ? Number(m[1]) : 0;
}
