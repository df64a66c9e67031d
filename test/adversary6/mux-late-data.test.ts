import { request as httpRequest } from 'node:http';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';

/**
 * ADV6-1. An app behind the calling sidecar hangs up in the middle of a large response.
 * Its virtual connection is destroyed (RESET sent), but the peer keeps sending DATA for
 * that stream until the RESET reaches it: frames already in flight. The caller's session
 * treats DATA for a stream it no longer knows as a protocol error (mux-session.ts onData:
 * `this.o.client` -> malformed) and destroys the whole mTLS connection, so every other
 * request in flight to that peer fails. HTTP/2 says such frames are to be ignored
 * (RFC 9113 section 5.1, "closed": "frames ... received after sending RST_STREAM ...
 * MUST be ignored"; section 6.9: the flow-control window still counts them).
 */
const pki = testPki();
let app: FakeApp, server: Proxy, client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { meshHttp1: 'mux' } } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: 'mux' } },
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }])],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

function get(path: string): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path, headers: { host: 'web' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      r.on('error', resolve);
    });
    req.on('error', resolve);
    req.end();
  });
}

/** Reads `bytes` of a large download, then hangs up (an app whose user cancelled). */
function readSomeThenHangUp(bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/big?bytes=268435456', headers: { host: 'web' } }, (r) => {
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
    const others = Array.from({ length: 4 }, () => get('/slow?ms=400'));
    await readSomeThenHangUp(4 * 1024 * 1024);
    const results = await Promise.all(others);
    expect(results.map((r) => (r instanceof Error ? r.message : `${r.status} ${r.body}`))).toEqual(Array(4).fill('200 slow web'));
  }
}, 30_000);
