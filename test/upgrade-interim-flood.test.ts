import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { metric } from './helpers/admin-metric.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * An upgrade request (a WebSocket) goes to its upstream on a connection of its own
 * (proxy/http/h1-upgrade.ts), not through the HTTP/1.1 pool, and skipped every interim
 * (1xx) response before the 101 without a bound until adv43: an app, or an unmeshed
 * endpoint, answering 1xx without end held the request and spent the sidecar's CPU on
 * heads it dropped. It now takes at most MAX_INTERIM_RESPONSES (16, proxy/h1/limits.ts),
 * as the pool and both HTTP/2 clients do (test/app-interim-flood.test.ts): past it a 502
 * upstream-protocol, counted in wren_limit_exceeded_total{limit="interim-responses"}.
 */
const pki = testPki();
let app: Server, appPort: number, server: Proxy, client: Proxy;

/** `/flood`: 100 interim responses before the 101; `/few`: 3. Each in a write of its own, as a streaming server sends them. */
function interimApp(): Server {
  return createNetServer((s: Socket) => {
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const n = buf.startsWith('GET /flood ') ? 100 : 3;
      buf = '';
      let i = 0;
      const next = (): void => {
        if (s.destroyed) return;
        if (i++ < n) return void s.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n', () => setImmediate(next));
        s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
      };
      next();
    });
  });
}

/** The status line the client gets for an upgrade of `path` (its first line), and the proxy error label if any. */
function upgradeStatus(port: number, host: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port });
    let got = '';
    const t = setTimeout(() => (s.destroy(), resolve(`no answer in 5 s: ${JSON.stringify(got.slice(0, 200))}`)), 5000);
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(t);
      s.destroy();
      const label = /\r\nwren-proxy-error: ([^\r]*)/i.exec(got.slice(0, end));
      resolve(`${got.slice(0, got.indexOf('\r\n'))}${label ? ` ${label[1]}` : ''}`);
    });
    s.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`);
  });
}

const counter = (direction: string) => new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="interim-responses"\\} (\\d+)`);

beforeAll(async () => {
  app = interimApp();
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  appPort = (app.address() as { port: number }).port;
  server = await startProxy({ pki, serviceAccount: 'web' });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [meshService('web', 80, [{ appPort, proxy: server }]), meshService('unmeshed', 80, [{ appPort, proxy: null }])],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await new Promise((r) => app.close(r));
});

test('to a meshed app: a few interim responses are skipped, more than 16 is a 502 upstream-protocol counted at the server sidecar', async () => {
  expect(await upgradeStatus(client.outboundPort, 'web', '/few')).toBe('HTTP/1.1 101 Switching Protocols');
  expect(await metric(server, counter('inbound'))).toBe(0);
  expect(await upgradeStatus(client.outboundPort, 'web', '/flood')).toBe('HTTP/1.1 502 Bad Gateway upstream-protocol');
  expect(await metric(server, counter('inbound'))).toBe(1);
});

test('to an unmeshed endpoint: the outbound applies the same bound, counted', async () => {
  expect(await upgradeStatus(client.outboundPort, 'unmeshed', '/few')).toBe('HTTP/1.1 101 Switching Protocols');
  expect(await upgradeStatus(client.outboundPort, 'unmeshed', '/flood')).toBe('HTTP/1.1 502 Bad Gateway upstream-protocol');
  expect(await metric(client, counter('outbound'))).toBe(1);
});
