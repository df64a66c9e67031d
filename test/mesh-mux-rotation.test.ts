import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, type FakeApp } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Certificate rotation on the mesh multiplexer (protocol.meshHttp1 and meshHttp2 mux, the
 * defaults): after the workload certificate rotates, the next HTTP/1.1 request and the next
 * HTTP/2 request each ride a new mTLS session (made with the new certificate), while a
 * request in flight on the old session completes there. test/identity-rotation.test.ts
 * checks the same on the HTTP/2 session with real Certify renewals.
 */
const pki = testPki();
let h1App: FakeApp, h2App: FakeApp, server: Proxy, client: Proxy;
const SESSIONS = /wren_peer_connections_total\{kind="mtls"\} (\d+)/;

beforeAll(async () => {
  h1App = await fakeApp('h1');
  h2App = await fakeH2cApp('h2');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'mux', meshHttp2: 'mux' } },
    services: [meshService('web', 80, [{ appPort: h1App.port, proxy: server }]), meshService('h2web', 81, [{ appPort: h2App.port, proxy: server }], { protocol: 'http2' })],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await h1App.close();
  await h2App.close();
});

function h1(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

function h2(path: string): Promise<{ status: number; body: string }> {
  const s = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  return new Promise((resolve, reject) => {
    const r = s.request({ ':path': path, ':authority': 'h2web:81' }, { endStream: true });
    let status = 0;
    let body = '';
    r.on('response', (h) => (status = Number(h[':status'])));
    r.on('data', (d: Buffer) => (body += d));
    r.on('error', reject);
    r.on('end', () => {
      s.close();
      resolve({ status, body });
    });
  });
}

test('after a rotation new requests open new multiplexed sessions; requests in flight on the old ones complete', async () => {
  expect((await h1('/name')).body).toBe('h1');
  expect((await h2('/name')).body).toBe('h2');
  const before = await metric(client, SESSIONS);
  // One session per pool, reused by the next requests.
  expect((await h1('/name')).status).toBe(200);
  expect((await h2('/name')).status).toBe(200);
  expect(await metric(client, SESSIONS)).toBe(before);
  // In flight on the old sessions while the certificate rotates.
  const heldH1 = h1('/slow?ms=400');
  const heldH2 = h2('/slow?ms=400');
  await new Promise((r) => setTimeout(r, 100));
  const oldSerial = client.tls.leaf().serialNumber;
  client.tls.rotate(pki.issue('default', 'client'));
  expect(client.tls.leaf().serialNumber).not.toBe(oldSerial);
  expect((await h1('/name')).body).toBe('h1');
  expect((await h2('/name')).body).toBe('h2');
  // Two new sessions, one per pool, made after the rotation (so with the new certificate).
  expect(await metric(client, SESSIONS)).toBe(before + 2);
  expect(await heldH1).toEqual({ status: 200, body: 'slow h1' });
  expect(await heldH2).toEqual({ status: 200, body: 'slow h2' });
});
