import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { connect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { startPairFor } from './helpers/pair-for-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Adversarial review (issue #12): a client that leaves in the middle of its request body.
 * The client sidecar answers it 499 and resets the HTTP/2 stream to the server sidecar
 * (CANCEL); node's http2 server then ENDS the server stream's readable side normally
 * (lib/internal/http2/core.js onStreamClose pushes null), so the server sidecar finishes
 * the request to the app as if the body were complete: the chunked terminator is written
 * and, for a Content-Length body, the exchange is marked sent and its connection reused.
 */
const pki = testPki();
let app: Server, client: Proxy, close: () => Promise<void>;
const received: { path: string; body: string; complete: boolean }[] = [];

beforeAll(async () => {
  app = createHttpServer((req, res) => {
    const rec = { path: req.url ?? '', body: '', complete: false };
    received.push(rec);
    if (req.url === '/late-no-read') {
      // Answers later without reading the body (as many apps do for an early 4xx).
      setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('late'), 1200);
      return;
    }
    req.on('data', (d: Buffer) => (rec.body += d.toString()));
    req.on('end', () => {
      rec.complete = true;
      res.end(`got ${rec.body.length}`);
    });
    req.on('error', () => undefined);
  });
  app.keepAliveTimeout = 30_000;
  ({ client, close } = await startPairFor(pki, await listenOnLoopback(app), { service: 'checkout' }));
});
afterAll(() => close());

/** Sends `head + partial`, waits, then closes its end (FIN) and waits for the socket to close. */
function leaveMidBody(bytes: string, afterMs = 600): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(client.outboundPort, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(out));
    s.write(bytes);
    setTimeout(() => s.end(), afterMs);
  });
}

function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'checkout' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a chunked upload cut off by the client never reaches the app as a complete request (the server sidecar cancels on the stream\'s abort)', async () => {
  received.length = 0;
  const reply = await leaveMidBody('POST /upload HTTP/1.1\r\nHost: checkout\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  expect(reply).toContain('client-cancelled');
  await settle(300);
  expect(received.map((r) => r.path)).toEqual(['/upload']);
  // The app must see an aborted request, never a finished 5-byte upload.
  expect(received[0]!.complete).toBe(false);
});

test('held: a Content-Length upload cut off by the client does not leave a reused app connection mid-body (the next caller gets its own answer)', async () => {
  received.length = 0;
  // 3 of 20 body bytes, then the client leaves; the app answers 1.2 s later without reading.
  const reply = await leaveMidBody('POST /late-no-read HTTP/1.1\r\nHost: checkout\r\nContent-Length: 20\r\n\r\nabc', 300);
  expect(reply).toContain('client-cancelled');
  await settle(1500);
  // Another caller, later, on the same sidecars: it must get its own answer from the app.
  const victim = await get('/victim');
  expect(victim).toEqual({ status: 200, body: 'got 0' });
  expect(received.map((r) => r.path)).toEqual(['/late-no-read', '/victim']);
});
