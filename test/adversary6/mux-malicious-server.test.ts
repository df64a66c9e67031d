import { request as httpRequest } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { startProxy, meshService } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FLAG_FIN, FrameType, frameHeader } from '../../proxy/mux/frame.js';
import { MUX_ALPN } from '../../proxy/mux/mux-session.js';
import { frameReader } from './raw-mux.js';

/**
 * A peer sidecar (valid certificate for the endpoint's identity) answering with frames no
 * honest peer sends: the caller survives, fails only that peer's requests, and recovers.
 */
const pki = testPki();
let evil: TlsServer, client: Proxy;
/** What the evil peer does after answering a request on a stream. */
let after: (s: TLSSocket, id: number) => void = () => undefined;

function answer(s: TLSSocket, id: number, fin: boolean): void {
  const body = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok', 'latin1');
  s.write(Buffer.concat([frameHeader(FrameType.Data, fin ? FLAG_FIN : 0, id, body.length), body]));
}

beforeAll(async () => {
  const m = pki.issue('default', 'web');
  evil = createTlsServer({ key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: [MUX_ALPN] }, (s) => {
    s.on('error', () => undefined);
    s.on(
      'data',
      frameReader(({ type, id, payload }) => {
        if (type === FrameType.Data && payload.toString('latin1').includes('\r\n\r\n')) {
          answer(s, id, false);
          after(s, id);
        }
      }),
    );
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
  const fakePeer = { inboundPort: (evil.address() as AddressInfo).port, tls: { spiffeId: m.spiffeId } } as unknown as Proxy;
  client = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { meshHttp1: 'mux' } }, services: [meshService('web', 80, [{ appPort: 1, proxy: fakePeer }])] });
});

afterAll(async () => {
  await client.close();
  await new Promise((r) => evil.close(r));
});

function get(): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: client.outboundPort, path: '/', headers: { host: 'web' } }, (r) => {
      let body = '';
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve(`${r.statusCode} ${body}`));
    });
    req.on('error', (e) => resolve(e.message));
    req.end();
  });
}

const pause = (ms: number): Promise<unknown> => new Promise((r) => setTimeout(r, ms));

test.each([
  ['bytes after the response on the idle stream', (s: TLSSocket, id: number) => setTimeout(() => s.write(Buffer.concat([frameHeader(FrameType.Data, 0, id, 5), Buffer.from('junk!')])), 50)],
  ['FIN, then DATA after FIN on the idle stream', (s: TLSSocket, id: number) => setTimeout(() => s.write(Buffer.concat([frameHeader(FrameType.Data, FLAG_FIN, id, 0), frameHeader(FrameType.Data, 0, id, 1), Buffer.from('x')])), 50)],
  ['a huge WINDOW on the stream and connection', (s: TLSSocket, id: number) => setTimeout(() => s.write(Buffer.concat([Buffer.from([0, 0, 0, 4, FrameType.Window, 0, 0, 0, 0, id, 255, 255, 255, 255]), Buffer.from([0, 0, 0, 4, FrameType.Window, 0, 0, 0, 0, 0, 255, 255, 255, 255])])), 50)],
  ['DATA on a stream id the caller never opened (even)', (s: TLSSocket) => setTimeout(() => s.write(Buffer.concat([frameHeader(FrameType.Data, 0, 2, 1), Buffer.from('x')])), 50)],
  ['an unknown frame type', (s: TLSSocket) => setTimeout(() => s.write(frameHeader(9 as FrameType, 0, 0, 0)), 50)],
])('%s: the caller survives and its next requests are answered', async (_name, act) => {
  after = act;
  expect(await get()).toBe('200 ok');
  await pause(200);
  after = () => undefined;
  expect(await get()).toBe('200 ok');
  expect(await get()).toBe('200 ok');
});
