import type { Server } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { metric } from './helpers/admin-metric.js';
import { interimUpgradeServer, upgradeStatus } from './helpers/upgrade-probe.js';
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

const counter = (direction: string) => new RegExp(`wren_limit_exceeded_total\\{direction="${direction}",limit="interim-responses"\\} (\\d+)`);

beforeAll(async () => {
  app = interimUpgradeServer((head) => (head.startsWith('GET /flood ') ? 100 : 3));
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
