import { connect as netConnect, createServer as createTcpServer, type Socket } from 'node:net';
import { connect as h2connect, createServer as createH2cServer } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { metric } from './helpers/admin-metric.js';
import { until } from './helpers/until.js';

/**
 * limits.peerKeepalive toward the app: an HTTP/2 app session that stops answering PINGs
 * is destroyed and counted as wren_limit_exceeded_total{direction="inbound",
 * limit="app-keepalive-timeout"}, with either client to the app (protocol.appHttp2:
 * `frames`, Wren's frame-level client, or `node`, node:http2). With `node` the session
 * was destroyed uncounted. A relay between the server sidecar and its app stops
 * forwarding on the connection open at the time (a blackholed app), so the PINGs go
 * unanswered; the next call takes a new session and succeeds.
 */
const pki = testPki();
const APP_COUNTER = /wren_limit_exceeded_total\{direction="inbound",limit="app-keepalive-timeout"\} (\d+)/;

/** A TCP relay to `target`; freeze() stops forwarding on the connections open now. */
async function relay(target: number) {
  const open = new Set<{ frozen: boolean; a: Socket; b: Socket }>();
  const s = createTcpServer((a) => {
    const b = netConnect(target, '127.0.0.1');
    const c = { frozen: false, a, b };
    open.add(c);
    a.on('data', (d) => void (c.frozen || b.write(d)));
    b.on('data', (d) => void (c.frozen || a.write(d)));
    const end = () => (open.delete(c), a.destroy(), b.destroy());
    for (const x of [a, b]) x.on('close', end).on('error', () => undefined);
  });
  const { port, close } = await listenOnLoopback(s);
  return {
    port,
    freeze: () => [...open].map((c) => (c.frozen = true)).length,
    close: async () => {
      for (const c of open) {
        c.a.destroy();
        c.b.destroy();
      }
      await close();
    },
  };
}

function call(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = h2connect(`http://127.0.0.1:${port}`);
    s.on('error', (e) => resolve(`session error ${e.message}`));
    const q = s.request({ ':path': '/', ':authority': 'web' });
    let body = '';
    q.on('response', (h) => (body += `${h[':status']} `));
    q.on('data', (d: Buffer) => (body += d.toString()));
    q.on('end', () => (s.close(), resolve(body)));
    q.on('error', (e) => (s.destroy(), resolve(`stream error ${e.message}`)));
    q.setTimeout(5000, () => (s.destroy(), resolve('timeout')));
    q.end();
  });
}

test.each(['frames', 'node'] as const)('protocol.appHttp2 %s: an app session that does not answer a keepalive PING is destroyed and counted', async (appHttp2) => {
  const app = createH2cServer((_req, res) => res.end('ok'));
  const appListen = await listenOnLoopback(app);
  const r = await relay(appListen.port);
  const server = await startProxy({ pki, serviceAccount: 'web', config: { protocol: { appHttp2 }, limits: { peerKeepalive: { intervalMs: 300, timeoutMs: 200 } } } });
  const client = await startProxy({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: r.port, proxy: server }], { protocol: 'http2' })] });
  try {
    expect(await call(client.outboundPort)).toBe('200 ok');
    expect(await metric(server, APP_COUNTER)).toBe(0);
    expect(r.freeze()).toBe(1);
    expect(await until(async () => (await metric(server, APP_COUNTER)) >= 1, 5000)).toBe(true);
    // The dead session is gone: the next call opens a new one.
    expect(await call(client.outboundPort)).toBe('200 ok');
  } finally {
    await client.close();
    await server.close();
    await r.close();
    await appListen.close();
  }
});
