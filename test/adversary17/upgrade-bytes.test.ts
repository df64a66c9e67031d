import { connect as netConnect } from 'node:net';
import { fakeApp, type FakeApp } from '../helpers/fake-app.js';
import { lineOf, obsPair, until, type ObsPair } from './obs-pair.js';

/**
 * An upgraded connection (WebSocket) carries bytes both ways. Its download was counted
 * (istio_response_bytes, the access log's bytes_sent) but its upload was not: the request
 * of an upgrade has no body, and what the client sent through the tunnel went uncounted,
 * so istio_request_bytes and bytes_received said 0 for any WebSocket. Envoy counts an
 * upgraded stream's bytes received from downstream in both (%BYTES_RECEIVED%, Istio's
 * request bytes meter).
 */
let web: FakeApp, pair: ObsPair;

beforeAll(async () => {
  web = await fakeApp('web');
  pair = await obsPair([{ name: 'web', port: 80, appPort: web.port }]);
});

afterAll(async () => {
  await pair.close();
  await web.close();
});

test('a WebSocket\'s upload is its request bytes (metrics and access log, both sidecars), as its download is its response bytes', async () => {
  const up = 'p'.repeat(700);
  const got = await new Promise<string>((resolve, reject) => {
    const s = netConnect({ port: pair.client.outboundPort, host: '127.0.0.1' });
    let b = '';
    let sent = false;
    s.on('connect', () => s.write('GET /ws HTTP/1.1\r\nhost: web.default.svc.cluster.local\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n'));
    s.on('data', (d) => {
      b += d;
      if (!sent && b.includes('\r\n\r\n')) {
        sent = true;
        s.write(up);
      }
      if (b.endsWith(up)) s.end();
    });
    s.on('close', () => resolve(b));
    s.on('error', reject);
  });
  expect(got.endsWith(up)).toBe(true);
  const ws = (x: { labels: Record<string, string> }) => x.labels.response_code === '101';
  for (const p of [pair.client, pair.server]) {
    expect((await until(p, 'istio_request_bytes_sum', (s) => s.some(ws))).filter(ws).map((x) => x.value)).toEqual([700]);
    expect((await until(p, 'istio_response_bytes_sum', (s) => s.some(ws))).filter(ws).map((x) => x.value)).toEqual([700]);
  }
  for (const lines of [pair.clientLines, pair.serverLines]) {
    expect(await lineOf(lines, (l) => l.path === '/ws')).toMatchObject({ response_code: 101, bytes_received: 700, bytes_sent: 700 });
  }
});
