import { request as httpRequest } from 'node:http';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV6-1. An app behind the calling sidecar hangs up in the middle of a large response.
 * Its virtual connection is destroyed (RESET sent), but the peer keeps sending DATA for
 * that stream until the RESET reaches it: frames already in flight. The caller's session
 * treats DATA for a stream it no longer knows as a protocol error (mux-session.ts onData:
 * `this.o.client` -> malformed) and destroys the whole mTLS connection, so every other
 * request in flight to that peer fails. HTTP/2 says such frames are to be ignored
 * (RFC 9113 section 5.1, "closed": "frames ... received after sending RST_STREAM ...
 * MUST be ignored"; section 6.9: the flow-control window still counts them). Bodyless
 * requests on reused streams hide it (the pool sends them again on a new session); a
 * request with a body, or one whose response had begun, gets 502.
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy, streamer: Server;

beforeAll(async () => {
  app = await fakeApp('web');
  // A response that keeps coming, well under what the windows let through (16 KiB a
  // millisecond), so its DATA is always in flight, never held by flow control.
  streamer = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(16 * 1024, 97);
    const t = setInterval(() => res.write(chunk), 1);
    res.on('close', () => clearInterval(t));
    setTimeout(() => res.end(), 10_000).unref();
  });
  await new Promise<void>((r) => streamer.listen(0, '127.0.0.1', r));
  server = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { meshHttp1: 'mux' } } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: 'mux' } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }]), meshService('stream', 80, [{ appPort: (streamer.address() as AddressInfo).port, proxy: server }])],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
  streamer.closeAllConnections();
  await new Promise((r) => streamer.close(r));
});

/** A request; with a body (never replayed: a lost connection fails it) when `body` is given. */
function get(path: string, body?: string): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, method: body === undefined ? 'GET' : 'POST', headers: { host: 'web' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      r.on('error', resolve);
    });
    req.on('error', resolve);
    req.end(body);
  });
}

/** Reads `bytes` of a large download, then hangs up (an app whose user cancelled). */
function readSomeThenHangUp(bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'stream' } }, (r) => {
      let got = 0;
      r.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= bytes) {
          req.destroy();
          resolve(got);
        }
      });
    });
    req.on('error', () => undefined);
    req.setTimeout(10_000, () => reject(new Error('download stalled')));
    req.end();
  });
}

test('an app hanging up mid-download fails only its own request, not the others in flight to that peer', async () => {
  // Warm the session up, then start requests that are in flight while the download is cut.
  expect(await get('/name')).toEqual({ status: 200, body: 'web' });
  for (let round = 0; round < 3; round++) {
    const others = Array.from({ length: 4 }, () => get('/slow?ms=400', 'order=1'));
    await readSomeThenHangUp((1 + round) * 64 * 1024);
    const results = await Promise.all(others);
    expect(results.map((r) => (r instanceof Error ? r.message : `${r.status} ${r.body}`))).toEqual(Array(4).fill('200 slow web'));
  }
}, 60_000);
