import { connect, type ClientHttp2Session } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * An HTTP/2 client (the app's h2c on the outbound listener) calling a service port declared
 * `http1`: the app behind it speaks HTTP/1.1 only, so the request reaches it as HTTP/1.1,
 * meshed (through the peer sidecar) or not, and the answer comes back to the client as an
 * HTTP/2 response. A port left to detection keeps the client's protocol.
 */
const pki = testPki();
let app: FakeApp;
let server: Proxy;
let client: Proxy;
let session: ClientHttp2Session;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [
      meshService('web', 80, [{ appPort: app.port, proxy: server }], { protocol: 'http1' }),
      meshService('plain', 80, [{ appPort: app.port, proxy: null }], { protocol: 'http1' }),
    ],
  });
  session = connect(`http://127.0.0.1:${client.outboundPort}`);
});

afterAll(async () => {
  session.close();
  await client.close();
  await server.close();
  await app.close();
});

function call(authority: string, method: string, body?: string): Promise<{ status: number; echo: { method: string; httpVersion: string; bodyBytes: number; headers: Record<string, string> } }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': '/echo', ':authority': authority, ...(body === undefined ? {} : { 'content-length': String(body.length) }) });
    let status = 0;
    let got = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (got += d.toString()));
    req.on('end', () => {
      try {
        resolve({ status, echo: JSON.parse(got) });
      } catch {
        reject(new Error(`status ${status}, body ${got}`));
      }
    });
    req.on('error', reject);
    req.end(body);
  });
}

test.each([
  ['through the peer sidecar', 'web'],
  ['to an unmeshed endpoint', 'plain'],
])('an HTTP/2 request to a port declared http1 reaches the app as HTTP/1.1 (%s), bodies and all', async (_name, service) => {
  const get = await call(`${service}:80`, 'GET');
  expect(get.status).toBe(200);
  expect(get.echo.httpVersion).toBe('1.1');
  const post = await call(`${service}:80`, 'POST', 'x'.repeat(1000));
  expect(post.status).toBe(200);
  expect(post.echo.method).toBe('POST');
  expect(post.echo.httpVersion).toBe('1.1');
  expect(post.echo.bodyBytes).toBe(1000);
  expect(Object.keys(post.echo.headers).filter((k) => k.startsWith('wren-'))).toEqual([]);
});
