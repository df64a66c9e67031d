import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { settled } from './helpers/until.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Head-of-line blocking on the mesh multiplexer (protocol.meshHttp1 'mux', found by an
 * adversarial run, adv8): requests whose reader stopped (a client that never reads an
 * endless download; an app that never reads an upload) must hold only their own streams'
 * windows, never the whole mTLS connection to the peer. When the connection's window was
 * given back only as readers consumed, a few such streams held all of it, and a small
 * request from the same caller got no answer until the stalled ones timed out (5 min).
 * Now, as node:http2 does (RFC 9113 section 5.2), the connection's window comes back as
 * DATA arrives, and each stream's window bounds what it holds (proxy/mux/mux-stream.ts).
 *
 * Windows small enough that eight stalled streams hold four connection windows: each
 * stalled stream keeps at least half its window unread, so the old rule stopped the
 * connection after four of them.
 */
const pki = testPki();
const STALLED = 8;
const LIMITS = { http2InitialStreamWindowBytes: 128 * 1024, http2InitialConnectionWindowBytes: 256 * 1024 };
const CHUNK = Buffer.alloc(64 * 1024, 120);

let app: Server;
let appPort = 0;
/** Bytes of /big responses the app has written so far (they stop growing once every hop is full). */
let downloaded = 0;
let server: Proxy, client: Proxy;
const sockets: Socket[] = [];

beforeAll(async () => {
  app = createServer((req, res) => {
    if (req.url === '/big') {
      // An endless download: written as fast as the sidecars take it.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let gone = false;
      res.on('close', () => (gone = true));
      const pump = (): void => {
        while (!gone) {
          downloaded += CHUNK.length;
          if (!res.write(CHUNK)) return void res.once('drain', pump);
        }
      };
      return pump();
    }
    if (req.url === '/upload') return; // never read, never answered
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
});

beforeEach(async () => {
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: LIMITS } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    config: { protocol: { meshHttp1: 'mux' }, limits: LIMITS },
    services: [meshService('web', 80, [{ appPort, proxy: server }], { protocol: 'http1' })],
  });
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await client.close();
  await server.close();
});

afterAll(async () => {
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
});

/** GET /small through the pair; an Error if no answer comes in `ms` (a bound for a loaded machine, not a speed). */
function small(ms = 20_000): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/small', headers: { host: 'web' }, agent: false }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
    });
    req.setTimeout(ms, () => {
      req.destroy();
      resolve(new Error(`no answer in ${ms} ms`));
    });
    req.on('error', resolve);
    req.end();
  });
}

/** A raw client connection to the caller's outbound port (destroyed after the test). */
function rawClient(onConnect: (s: Socket) => void): Socket {
  const s = netConnect(client.outboundPort, '127.0.0.1', () => onConnect(s));
  s.on('error', () => undefined);
  sockets.push(s);
  return s;
}

test('clients that never read their downloads hold their own streams only: a small request from the same caller is answered', async () => {
  expect(await small()).toEqual({ status: 200, body: 'ok' });
  for (let i = 0; i < STALLED; i++) rawClient((s) => s.write('GET /big HTTP/1.1\r\nHost: web\r\n\r\n')).pause();
  // Every hop fills (the clients' sockets, the outbound's streams, the inbound's, the app's socket) and the app stops.
  const before = downloaded;
  expect(await settled(() => downloaded, 500, 60_000)).toBeDefined();
  expect(downloaded - before).toBeGreaterThan(STALLED * LIMITS.http2InitialStreamWindowBytes);
  expect(await small()).toEqual({ status: 200, body: 'ok' });
}, 120_000);

test('uploads an app never reads hold their own streams only: a small request from the same caller is answered', async () => {
  expect(await small()).toEqual({ status: 200, body: 'ok' });
  let uploaded = 0;
  for (let i = 0; i < STALLED; i++) {
    rawClient((s) => {
      s.write('POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 1000000000\r\n\r\n');
      const pump = (): void => {
        while (!s.destroyed) {
          uploaded += CHUNK.length;
          if (!s.write(CHUNK)) return void s.once('drain', pump);
        }
      };
      pump();
    });
  }
  expect(await settled(() => uploaded, 500, 60_000)).toBeDefined();
  expect(uploaded).toBeGreaterThan(STALLED * LIMITS.http2InitialStreamWindowBytes);
  expect(await small()).toEqual({ status: 200, body: 'ok' });
}, 120_000);
