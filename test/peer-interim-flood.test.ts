import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as h2connect, createSecureServer as createH2SecureServer } from 'node:http2';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';
import { FLAG_FIN, FrameType, frameHeader } from '../proxy/mux/frame.js';
import { MUX_ALPN } from '../proxy/mux/mux-session.js';
import { frameReader } from './adversary6/raw-mux.js';

/**
 * The calling sidecar's pools to peer sidecars (meshHttp1 mux and h1, meshHttp2 h2) refused
 * a peer's response with more than MAX_INTERIM_RESPONSES (16) interim (1xx) responses, a 502
 * upstream-protocol, but counted it nowhere: only the app's, unmeshed endpoints' and (since
 * adv45) egress destinations' floods were in wren_limit_exceeded_total. An honest peer relays
 * none (its inbound skips its app's 1xx), so only a peer holding a mesh certificate sends
 * such a flood; it is now counted {direction="outbound",
 * limit="interim-responses"} on every mesh transport. The peers here are hand-written, with
 * the certificate of the endpoint's identity.
 */
const pki = testPki();
const COUNTER = /wren_limit_exceeded_total\{direction="outbound",limit="interim-responses"\} (\d+)/;
const FLOOD = 100;
const cert = pki.issue('default', 'web');
const tlsOpts = { key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem, requestCert: true, rejectUnauthorized: true };

/** A peer of the multiplexer: every request head is answered with FLOOD 103s, then a 200, in one DATA frame. */
function muxPeer(): TlsServer {
  return createTlsServer({ ...tlsOpts, ALPNProtocols: [MUX_ALPN] }, (s) => {
    s.on('error', () => undefined);
    s.on(
      'data',
      frameReader(({ type, id, payload }) => {
        if (type !== FrameType.Data || !payload.toString('latin1').includes('\r\n\r\n')) return;
        const body = Buffer.from(`${'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n'.repeat(FLOOD)}HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok`, 'latin1');
        s.write(Buffer.concat([frameHeader(FrameType.Data, FLAG_FIN, id, body.length), body]));
      }),
    );
  });
}

const peers: { close(cb: () => void): unknown }[] = [];

async function listen<S extends TlsServer>(s: S): Promise<Proxy> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  peers.push(s);
  return { inboundPort: (s.address() as AddressInfo).port, tls: { spiffeId: cert.spiffeId } } as unknown as Proxy;
}

const clients: Proxy[] = [];

async function clientFor(peer: Proxy, protocol: Record<string, string>, svcProtocol?: 'http2'): Promise<Proxy> {
  const c = await startProxy({ pki, serviceAccount: 'client', config: { protocol }, services: [meshService('web', 80, [{ appPort: 1, proxy: peer }], svcProtocol ? { protocol: svcProtocol } : undefined)] });
  clients.push(c);
  return c;
}

afterAll(async () => {
  for (const c of clients) await c.close();
  for (const p of peers) await new Promise<void>((r) => p.close(() => r()));
});

function h1Get(client: Proxy): Promise<string> {
  return new Promise((resolve, reject) => {
    const q = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'web' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`${res.statusCode} ${String(res.headers['wren-proxy-error'])}`));
    });
    q.on('error', reject);
    q.end();
  });
}

function h2Get(client: Proxy): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = h2connect(`http://127.0.0.1:${client.outboundPort}`);
    s.on('error', reject);
    const q = s.request({ ':path': '/', ':authority': 'web' });
    q.on('response', (h) => {
      q.resume();
      q.on('end', () => (s.close(), resolve(`${h[':status']} ${String(h['wren-proxy-error'])}`)));
    });
    q.on('error', reject);
    q.end();
  });
}

test.each([
  [
    'meshHttp1 mux',
    async () => clientFor(await listen(muxPeer()), { meshHttp1: 'mux' }),
    h1Get,
  ],
  [
    'meshHttp1 h1',
    async () => {
      const peer = createHttpsServer({ ...tlsOpts, ALPNProtocols: ['http/1.1'] }, (_req, res) => {
        for (let i = 0; i < FLOOD; i++) res.writeProcessing();
        res.end('ok');
      });
      return clientFor(await listen(peer as unknown as TlsServer), { meshHttp1: 'h1' });
    },
    h1Get,
  ],
  [
    'meshHttp2 h2',
    async () => {
      const peer = createH2SecureServer({ ...tlsOpts, ALPNProtocols: ['h2'] }, (_req, res) => {
        for (let i = 0; i < FLOOD; i++) res.stream.additionalHeaders({ ':status': 103, link: '</a.css>; rel=preload' });
        res.end('ok');
      });
      return clientFor(await listen(peer as unknown as TlsServer), { meshHttp2: 'h2' }, 'http2');
    },
    h2Get,
  ],
])('%s: a peer answering with more than 16 interim responses is a 502 upstream-protocol, counted outbound', async (_transport, start, get) => {
  const client = await start();
  const before = await metric(client, COUNTER);
  expect(await get(client)).toBe('502 upstream-protocol');
  expect(await metric(client, COUNTER)).toBe(before + 1);
});
