import { createServer, type AddressInfo, type Socket } from 'node:net';
import { ProxyError } from '../errors/proxy-error.js';
import type { ProxyRequest } from './exchange.js';
import type { ClientHttp2Session } from 'node:http2';
import { upgradeH1 } from './h1-upgrade.js';
import { upgradeH2 } from './h2-upgrade.js';

function upgradeRequest(upgrade: string): ProxyRequest {
  return {
    method: 'GET', scheme: 'http', authority: 'web', path: '/', headers: {}, body: null, trailers: () => undefined,
    origProto: 'HTTP/1.1', source: { address: '', port: 0, identity: '' }, signal: new AbortController().signal, startedAt: 0, upgrade,
  };
}

test('an h2c upgrade never reaches the app, even as one of a list: BAD_REQUEST before any connection', async () => {
  const conns: Socket[] = [];
  // An app that would answer at once (so a regression fails fast instead of hanging).
  const srv = createServer((s) => {
    conns.push(s);
    s.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  try {
    for (const offer of ['h2c', 'h2c, websocket', 'websocket, H2C']) {
      await expect(upgradeH1('127.0.0.1', port, upgradeRequest(offer), {})).rejects.toMatchObject({ code: 'BAD_REQUEST' } satisfies Partial<ProxyError>);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(conns).toHaveLength(0);
  } finally {
    for (const c of conns) c.destroy();
    await new Promise((r) => srv.close(r));
  }
});

test('upgradeH2 never opens an extended CONNECT with :protocol h2c (BAD_REQUEST, no stream)', async () => {
  let opened = 0;
  const session = { request: () => (opened++, undefined) } as unknown as ClientHttp2Session;
  for (const offer of ['h2c', 'websocket,h2c']) {
    await expect(upgradeH2(session, upgradeRequest(offer), {})).rejects.toMatchObject({ code: 'BAD_REQUEST' } satisfies Partial<ProxyError>);
  }
  expect(opened).toBe(0);
});
