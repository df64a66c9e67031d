import { connect } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV7-2 on a TCP connection from an app (the outbound listener's HTTP/1.1 server): an
 * Upgrade request pipelined behind a plain request. The connection held it (and what
 * followed) while the first was answered, parsed it from that rest, and then resumed the
 * socket with no 'data' listener: the bytes that had waited behind it were dropped.
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])] });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

test('an app pipelines a request and an Upgrade: the bytes sent while the first was answered reach the tunnel', async () => {
  const s = connect(client.outboundPort, '127.0.0.1');
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await new Promise((r) => s.once('connect', r));
  s.write('GET /slow?ms=200 HTTP/1.1\r\nhost: web\r\n\r\nGET /ws HTTP/1.1\r\nhost: web\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n<1>');
  await new Promise((r) => setTimeout(r, 50));
  s.write('<2>');
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    return cond();
  };
  expect(await until(() => got.includes('HTTP/1.1 101'))).toBe(true);
  s.write('<3>');
  expect(await until(() => got.includes('<3>'))).toBe(true);
  const tunnel = got.slice(got.indexOf('\r\n\r\n', got.indexOf('HTTP/1.1 101')) + 4);
  expect(tunnel).toBe('<1><2><3>');
  s.destroy();
});
