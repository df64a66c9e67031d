import { createServer as createHttpServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { startPairFor } from './helpers/pair-for-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Adversarial review of the HTTP/1.1 listener on the codec (issue #12, h1-listen), through
 * a real sidecar pair (HTTP/2 between them) to a node:http app.
 */
const pki = testPki();
let app: Server, client: Proxy, close: () => Promise<void>;
const bodies: string[] = [];

beforeAll(async () => {
  app = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      bodies.push(body);
      res.end(`got ${body}`);
    });
  });
  ({ client, close } = await startPairFor(pki, await listenOnLoopback(app), { service: 'checkout' }));
});
afterAll(() => close());

function raw(bytes: string, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(client.outboundPort, '127.0.0.1');
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
      if (/\r\n\r\n[\s\S]*got|\r\n\r\n[\s\S]*\n$/.test(out)) s.destroy();
    });
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), waitMs);
    s.on('close', () => { clearTimeout(t); resolve(out); });
    s.write(bytes);
  });
}

// The codec accepts `Content-Length: 2, 2` (a list of one repeated value, RFC 9110 section
// 8.6 allows it). Forwarded as received, HTTP/2 refused the value (nghttp2 PROTOCOL_ERROR)
// and the client got 502 upstream-reset for a valid request; fieldsToHeaders now passes on
// the one value.
test('Content-Length "2, 2" is forwarded as the one value it repeats (not 502 upstream-reset)', async () => {
  const out = await raw('POST /x HTTP/1.1\r\nHost: checkout\r\nContent-Length: 2, 2\r\n\r\nab');
  expect(out).not.toContain('upstream-reset');
  // Either answer is correct: the request with its 2-byte body, or a 400 for the list.
  expect(/^HTTP\/1\.1 (200[\s\S]*got ab|400)/.test(out)).toBe(true);
});

test('held: duplicate identical Content-Length fields are folded to one value before HTTP/2', async () => {
  const out = await raw('POST /x HTTP/1.1\r\nHost: checkout\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab');
  expect(out).toMatch(/^HTTP\/1\.1 200[\s\S]*got ab/);
});

test('held: a dozen Content-Length "2, 2" requests do not get the healthy peer ejected (the next request is served)', async () => {
  for (let i = 0; i < 12; i++) await raw('POST /x HTTP/1.1\r\nHost: checkout\r\nContent-Length: 2, 2\r\n\r\nab');
  const out = await raw('POST /x HTTP/1.1\r\nHost: checkout\r\nContent-Length: 2\r\n\r\nok');
  expect(out).toMatch(/^HTTP\/1\.1 200[\s\S]*got ok/);
});

test('held: Expect: 100-continue answered by the proxy with a final status: the body sent anyway is never parsed as a request', async () => {
  const paths: string[] = [];
  const onReq = (req: { url?: string }) => paths.push(req.url ?? '');
  app.on('request', onReq);
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: checkout\r\n\r\n';
  const out = await new Promise<string>((resolve) => {
    const s = connect(client.outboundPort, '127.0.0.1');
    let got = '';
    s.on('error', () => undefined);
    s.on('data', (d) => {
      got += d.toString('latin1');
      // The client gave up waiting for 100 (or saw the final status) and sends its body anyway.
      if (got.includes('\r\n\r\n') && !got.startsWith('HTTP/1.1 100')) s.write(smuggled);
    });
    s.write(`POST /x HTTP/1.1\r\nHost: no-such-service.invalid\r\nExpect: 100-continue\r\nContent-Length: ${smuggled.length}\r\n\r\n`);
    setTimeout(() => { s.destroy(); resolve(got); }, 1500);
  });
  app.off('request', onReq);
  expect(out).toMatch(/^HTTP\/1\.1 [45]\d\d/);
  expect(paths).not.toContain('/smuggled');
});
