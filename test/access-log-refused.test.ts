import { connect as netConnect } from 'node:net';
import { LogCapture } from './helpers/log-capture.js';
import { startProxy } from './helpers/proxy.js';
import { testPki } from './helpers/pki.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * A request the HTTP/1.1 codec refuses (a malformed head, an invalid request-target) is
 * answered 400 by the sidecar without reaching any layer. Envoy logs such a request (its
 * status, flag DPE); Wren wrote no line for it, so a client sending broken requests was
 * invisible in the access log while every other error response had its line.
 */
const pki = testPki();
let proxy: Proxy;
const log = new LogCapture();

beforeAll(async () => {
  proxy = await startProxy({ pki, serviceAccount: 'client', accessLog: log, config: { telemetry: { accessLog: { enabled: true } } } });
});

afterAll(async () => {
  await proxy.close();
});

/** Writes `head` to the outbound port; resolves with the client's port and what came back once the proxy closes (or after 2 s). */
function send(head: string): Promise<{ port: number; reply: string }> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: proxy.outboundPort });
    let port = 0;
    let reply = '';
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    s.once('connect', () => {
      port = s.localPort ?? 0;
      s.write(head);
    });
    const t = setTimeout(() => s.destroy(), 2000);
    s.on('close', () => {
      clearTimeout(t);
      resolve({ port, reply });
    });
  });
}

test('a malformed header: the 400 has its line, flag DPE, with the client\'s address', async () => {
  const { port, reply } = await send('GET /x HTTP/1.1\r\nhost: web\r\nbad header\r\n\r\n');
  expect(reply).toMatch(/^HTTP\/1\.1 400 /);
  expect(await log.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`)).toMatchObject({
    response_code: 400, response_flags: 'DPE', response_code_details: 'bad-request', protocol: 'HTTP/1.1', method: null, path: null,
  });
});

test('an invalid request-target: the 400 has its line, and nothing of the target (a userinfo credential here) is in it', async () => {
  const { port, reply } = await send('GET http://alice:s3cret@web:abc/x HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n');
  expect(reply).toMatch(/^HTTP\/1\.1 400 /);
  const line = await log.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`);
  expect(line).toMatchObject({ response_code: 400, response_flags: 'DPE', response_code_details: 'bad-request' });
  expect(JSON.stringify(line)).not.toContain('s3cret');
});

test('a head too large: 431 with its line', async () => {
  const { port, reply } = await send(`GET /x HTTP/1.1\r\nhost: web\r\nx-big: ${'a'.repeat(200_000)}\r\n\r\n`);
  expect(reply).toMatch(/^HTTP\/1\.1 431 /);
  expect(await log.find((e) => e['downstream_remote_address'] === `127.0.0.1:${port}`)).toMatchObject({ response_code: 431, response_flags: 'DPE' });
});
