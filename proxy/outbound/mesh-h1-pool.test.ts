import { jest } from '@jest/globals';
import { Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { meshH1Pool } from './mesh-h1-pool.js';
import { TlsIdentity } from '../tls/tls-identity.js';
import type { ProxyRequest } from '../http/exchange.js';
import { testPki } from '../../test/helpers/pki.js';

const pki = testPki();

function request(): ProxyRequest {
  return {
    method: 'GET', scheme: 'http', authority: 'web', path: '/', headers: {}, body: null, trailers: () => undefined,
    origProto: 'HTTP/1.1', source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
  };
}

/**
 * `meshHttp1: h1` carries one exchange per TLS connection with no framing for a PING:
 * limits.peerKeepalive is TCP keepalive on its connections (its idle time the interval),
 * set once per connection, never per request.
 */
test('each connection to a peer gets TCP keepalive with the keepalive interval, once', async () => {
  const m = pki.issue('default', 'web');
  const conns: TLSSocket[] = [];
  const server = createTlsServer({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] }, (s) => {
    conns.push(s);
    s.on('error', () => undefined);
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      while (head.includes('\r\n\r\n')) {
        head = head.slice(head.indexOf('\r\n\r\n') + 4);
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const spy = jest.spyOn(Socket.prototype, 'setKeepAlive');
  const pool = meshH1Pool({ tls: new TlsIdentity(pki.issue('default', 'client')), maxConnectionsPerPeer: 4, connectTimeoutMs: 5000, maxHeaderBytes: 16384, idleTimeoutMs: 0, keepalive: { intervalMs: 7000, timeoutMs: 5000 } });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await pool.request('127.0.0.1', port, request(), {}, undefined, 0, m.spiffeId);
      for await (const _ of res.body ?? []) void _;
      expect(res.status).toBe(200);
    }
    expect(conns).toHaveLength(1);
    expect(spy.mock.calls).toEqual([[true, 7000]]);
  } finally {
    spy.mockRestore();
    pool.destroy();
    for (const s of conns) s.destroy();
    await new Promise((r) => server.close(r));
  }
});
