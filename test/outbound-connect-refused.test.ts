import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeH2cApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * A plain CONNECT from the app (forward-proxy use) is not carried by the mesh: 403
 * `connect-not-supported` from the one error table, answered before any endpoint is
 * picked (Envoy answers a CONNECT it has no CONNECT route for with 404/403). Before: an
 * HTTP/2 CONNECT got 502 `upstream-reset` and the failure was charged to the healthy
 * endpoint (outlier detection ejected it); an HTTP/1.1 CONNECT was closed with no answer.
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeH2cApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  const svc = meshService('web', 80, [{ appPort: app.port, proxy: server }], { policy: { outlierDetection: { enabled: true, consecutive5xx: 3, consecutiveGatewayFailure: 3, consecutiveLocalOriginFailure: 3 } } });
  client = await startProxy({ pki, serviceAccount: 'client', services: [svc] });
}, 20_000);

afterAll(async () => {
  await Promise.all([client.close(), server.close()]);
  await app.close();
});

function send(h: Record<string, string>): Promise<{ status: number; err: string | undefined }> {
  return new Promise((resolve) => {
    const s = h2connect(`http://127.0.0.1:${client.outboundPort}`);
    s.on('error', () => undefined);
    const st = s.request(h, { endStream: h[':method'] !== 'CONNECT' });
    let status = 0;
    let err: string | undefined;
    st.on('response', (r) => {
      status = Number(r[':status']);
      err = r['wren-proxy-error'] as string | undefined;
      // A refused CONNECT leaves nothing to send: end our half so the stream closes when the
      // answer has ended. The proxy answers with END_STREAM and no RST_STREAM(NO_ERROR) (RFC
      // 9113 §8.1 makes that a MAY), so a CONNECT left open waited out the 5 s below each
      // time, 25 s of the test's 30 s.
      if (status >= 200) st.end();
    });
    st.on('error', () => undefined);
    st.resume();
    const t = setTimeout(() => st.close(), 5000);
    st.on('close', () => {
      clearTimeout(t);
      s.close();
      resolve({ status, err });
    });
  });
}

test('an HTTP/2 CONNECT from the app is a 403 connect-not-supported and does not blame or eject the healthy endpoint', async () => {
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await send({ ':method': 'CONNECT', ':authority': 'web:80' }));
  const ok = await send({ ':method': 'GET', ':path': '/name', ':authority': 'web' });
  const clusters = await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).text();
  // The healthy endpoint was not blamed (no ejection, no recorded failure) ...
  expect(ok.status).toBe(200);

  expect(clusters).toMatch(/"failures": 0/);
  // ... and the caller was told it asked for something the proxy does not carry.
  for (const r of results) expect(r.status).toBeGreaterThanOrEqual(400);
  for (const r of results) expect(r.status).toBeLessThan(500);
  for (const r of results) expect(r).toEqual({ status: 403, err: 'connect-not-supported' });
}, 30_000);

test('an HTTP/1.1 CONNECT on the outbound port gets the same 403, then the connection is closed', async () => {
  const got = await new Promise<string>((resolve) => {
    let buf = '';
    const s = netConnect(client.outboundPort, '127.0.0.1', () => s.write('CONNECT web:80 HTTP/1.1\r\nHost: web:80\r\n\r\n'));
    s.on('data', (d: Buffer) => (buf += d.toString('latin1')));
    s.on('close', () => resolve(buf));
    s.on('error', () => resolve(buf));
    setTimeout(() => s.destroy(), 8000);
  });
  expect(got).toMatch(/^HTTP\/1\.1 403 /);
  expect(got.toLowerCase()).toContain('wren-proxy-error: connect-not-supported');
  const clusters = await (await fetch(`http://127.0.0.1:${client.adminPort}/clusters`)).text();
  expect(clusters).toMatch(/"failures": 0/);
});
