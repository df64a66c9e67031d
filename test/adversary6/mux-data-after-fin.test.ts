import { request as httpRequest } from 'node:http';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FLAG_FIN } from '../../proxy/mux/frame.js';
import { RawMux } from './raw-mux.js';

/** DATA after a stream's FIN, at a moment the inbound HTTP/1.1 server holds it idle or mid-head: the listener keeps serving. */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'mux' } }, services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

function get(path: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve(`${r.statusCode} ${body}`));
    });
    req.on('error', (e) => resolve(e.message));
    req.end();
  });
}

test('DATA after FIN on idle, mid-head and mid-request streams', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  peer.data(1, '', FLAG_FIN);
  peer.data(1, 'x');
  peer.data(3, 'GET / HT', FLAG_FIN);
  peer.data(3, 'TP/1.1\r\n\r\n');
  peer.data(5, `GET /slow?ms=300 HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\n\r\n`, FLAG_FIN);
  peer.data(5, 'GET / HTTP/1.1\r\n\r\n');
  await new Promise((r) => setTimeout(r, 600));
  peer.close();
  expect(await get('/name')).toBe('200 web');
});
