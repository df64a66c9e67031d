import { createServer as createHttpServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { testPki } from './helpers/pki.js';
import { startPair } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Adversarial review (issue #12): a client pipelines tens of megabytes of requests and
 * never reads a response. The listener must stop reading the socket (one exchange at a
 * time, backpressure) instead of buffering every request or every response.
 */
const pki = testPki();
let app: Server, server: Proxy, client: Proxy, listening: { port: number; close(): Promise<void> };
beforeAll(async () => {
  app = createHttpServer((_req, res) => res.end('x'.repeat(4096)));
  listening = await listenOnLoopback(app);
  ({ server, client } = await startPair(pki, listening.port, { service: 'checkout' }));
});
afterAll(async () => {
  await Promise.all([client.close(), server.close()]);
  await listening.close();
});

test('held: 40 MB of pipelined GETs from a client that never reads do not grow the proxy beyond a bound', async () => {
  global.gc?.();
  const before = process.memoryUsage();
  const s = connect(client.outboundPort, '127.0.0.1');
  s.on('error', () => undefined);
  s.pause(); // never read a response
  const one = 'GET /p HTTP/1.1\r\nHost: checkout\r\nX-Pad: ' + 'p'.repeat(400) + '\r\n\r\n';
  const batch = one.repeat(2000); // ~0.9 MB
  let written = 0;
  const deadline = Date.now() + 8000;
  while (written < 40e6 && Date.now() < deadline) {
    if (!s.write(batch)) await new Promise((r) => setTimeout(r, 20));
    written += batch.length;
  }
  await new Promise((r) => setTimeout(r, 1500));
  const after = process.memoryUsage();
  const grew = (after.rss - before.rss) / 1e6;
  const buffered = s.writableLength / 1e6;
  console.log(`wrote ${(written / 1e6).toFixed(1)} MB, still queued in the client ${buffered.toFixed(1)} MB, rss +${grew.toFixed(1)} MB, arrayBuffers +${((after.arrayBuffers - before.arrayBuffers) / 1e6).toFixed(1)} MB`);
  // The proxy's share is what the client could push out of its own queue.
  const accepted = written / 1e6 - buffered;
  s.destroy();
  expect(accepted).toBeLessThan(16);
}, 30000);
