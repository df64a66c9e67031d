import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { testPki } from './helpers/pki.js';
import { rawHead } from './helpers/raw-http.js';
import { startPair } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (absolute-form-rewritten).
 *
 * What a client does: sends an absolute-form request-target the URL parser cannot parse,
 * `GET http://web:abc/orders/7 HTTP/1.1` (a port that is not a number), or
 * `DELETE http://[web/orders/7 HTTP/1.1`.
 *
 * What happens: http/h1-server.ts absoluteForm() catches the URL error and returns
 * `{ authority: '', path: '/' }`: the request is routed by its Host header and forwarded
 * as `GET /` (or `DELETE /`): a different request from the one sent, with a 200 for it.
 *
 * What should happen: a malformed request-target is refused with 400 from the error table
 * (RFC 9112 section 3.2: a server responds 400 to an invalid request-target; BRIEF: "Bad
 * input gets a clear error and loses nothing"), never rewritten to another resource.
 */
const pki = testPki();
let server: Proxy, client: Proxy, close: () => Promise<void>;
const seen: string[] = [];

beforeAll(async () => {
  const l = await listenOnLoopback(createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    res.end('ok');
  }));
  close = l.close;
  ({ server, client } = await startPair(pki, l.port));
}, 20_000);

afterAll(async () => {
  await client.close();
  await server.close();
  await close();
});

const raw = (bytes: string): Promise<string> => rawHead(client.outboundPort, bytes);

test.each(['GET http://web:abc/orders/7', 'DELETE http://[web/orders/7'])('%s is refused with 400, not forwarded as a request for /', async (line) => {
  const before = seen.length;
  const out = await raw(`${line} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`);
  // Today: "HTTP/1.1 200 OK" and the app saw "GET /" (or "DELETE /").
  expect(seen.slice(before)).toEqual([]);
  expect(out).toMatch(/^HTTP\/1\.1 400 /);
});
