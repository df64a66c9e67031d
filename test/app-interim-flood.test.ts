import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect as h2connect, createServer as createH2cServer } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';

/**
 * An app that answers a request with interim (1xx) responses without end (here 100 of
 * them before its 200): the server sidecar takes at most MAX_INTERIM_RESPONSES (16,
 * proxy/h1/limits.ts) on HTTP/1.1 and on both HTTP/2 clients (appHttp2), then answers 502
 * upstream-protocol (flag UPE) and counts wren_limit_exceeded_total{direction="inbound",
 * limit="interim-responses"}. A few 1xx are skipped and the final response delivered.
 */
const pki = testPki();
const COUNTER = /wren_limit_exceeded_total\{direction="inbound",limit="interim-responses"\} (\d+)/;

function h1Get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const q = httpRequest({ host: '127.0.0.1', port, path, headers: { host: 'web' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${res.headers['wren-proxy-error'] ?? body}`));
    });
    q.on('error', reject);
    q.end();
  });
}

function h2Get(port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = h2connect(`http://127.0.0.1:${port}`);
    s.on('error', (e) => resolve(`session error ${e.message}`));
    const q = s.request({ ':path': path, ':authority': 'web' });
    let head = '';
    let body = '';
    q.on('response', (h) => (head = `${h[':status']} ${(h['wren-proxy-error'] as string | undefined) ?? ''}`));
    q.on('data', (d: Buffer) => (body += d.toString()));
    q.on('end', () => (s.close(), resolve(head.endsWith(' ') ? head + body : head)));
    q.on('error', (e) => (s.destroy(), resolve(`stream error ${e.message}`)));
    q.end();
  });
}

/** `/flood`: 100 interim responses before the 200; `/few`: 3. */
const count = (path: string): number => (path === '/flood' ? 100 : 3);

/**
 * A pair in front of `app`: `/few` is delivered, `/flood` is a 502 upstream-protocol, and
 * only the flood is counted at the server sidecar.
 */
async function expectFloodRefused(
  app: Parameters<typeof listenOnLoopback>[0],
  get: (port: number, path: string) => Promise<string>,
  serverConfig: Record<string, unknown>,
  svc: Parameters<typeof meshService>[3],
): Promise<void> {
  const appListen = await listenOnLoopback(app);
  const server = await startProxy({ pki, serviceAccount: 'web', config: serverConfig });
  const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: appListen.port, proxy: server }], svc)] });
  try {
    expect(await get(client.outboundPort, '/few')).toBe('200 ok');
    expect(await metric(server, COUNTER)).toBe(0);
    expect(await get(client.outboundPort, '/flood')).toBe('502 upstream-protocol');
    expect(await metric(server, COUNTER)).toBeGreaterThanOrEqual(1);
  } finally {
    await client.close();
    await server.close();
    await appListen.close();
  }
}

test('HTTP/1.1 app: more than 16 interim responses is a 502 upstream-protocol, counted; a few are skipped', async () => {
  const app = createHttpServer((req, res) => {
    for (let i = 0; i < count(req.url!); i++) res.writeProcessing();
    res.end('ok');
  });
  await expectFloodRefused(app, h1Get, {}, undefined);
});

// node:http2 to the app (appHttp2 node) skipped every 1xx without a bound until adv23.
test.each(['frames', 'node'])('HTTP/2 app (appHttp2 %s): more than 16 interim responses is a 502 upstream-protocol, counted; a few are skipped', async (appHttp2) => {
  const app = createH2cServer((req, res) => {
    for (let i = 0; i < count(req.url); i++) res.stream.additionalHeaders({ ':status': 103, link: '</a.css>; rel=preload' });
    res.end('ok');
  });
  await expectFloodRefused(app, h2Get, { protocol: { appHttp2 } }, { protocol: 'http2' });
});
