import { connect as h2connect, constants, createServer as createH2cServer } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import { startPairFor } from './helpers/pair-for-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Issue 11 item 1: a stream the app never processed (RST_STREAM REFUSED_STREAM; node:http2
 * reports streams above a GOAWAY's last stream id the same way) is sent to the app once
 * more by the inbound (RFC 9113 §8.7), instead of failing the caller with 502. This app
 * refuses the first stream of every connection, and every POST.
 */
const pki = testPki();
let client: Proxy, close: () => Promise<void>;
const HOST = 'web.default.svc.cluster.local';
const seen: string[] = [];

beforeAll(async () => {
  const h2 = createH2cServer();
  h2.on('session', (sess) => {
    let first = true;
    sess.on('stream', (st, h) => {
      st.on('error', () => undefined);
      const refuse = first || h[':method'] === 'POST';
      seen.push(`${String(h[':method'])} ${refuse ? 'refused' : 'served'}`);
      if (refuse) {
        first = false;
        st.close(constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      st.respond({ ':status': 200 });
      st.end('ok');
    });
  });
  ({ client, close } = await startPairFor(pki, await listenOnLoopback(h2)));
}, 20_000);

afterAll(() => close());

function send(method: string, body?: string): Promise<number> {
  const c = h2connect(`http://127.0.0.1:${client.outboundPort}`);
  return new Promise<number>((resolve, reject) => {
    const r = c.request({ ':method': method, ':path': '/', ':authority': HOST }, { endStream: body === undefined });
    let s = 0;
    r.on('response', (h) => (s = Number(h[':status'])));
    r.on('error', reject);
    r.resume();
    r.on('end', () => resolve(s));
    if (body !== undefined) r.end(body);
  }).finally(() => c.close());
}

test('a refused stream is retried once and the caller gets the response', async () => {
  seen.length = 0;
  expect(await send('GET')).toBe(200);
  expect(seen).toEqual(['GET refused', 'GET served']);
}, 20_000);

test('a refused request with a body is not retried (its body went to the refused stream)', async () => {
  seen.length = 0;
  expect(await send('POST', 'payload')).toBe(502);
  expect(seen).toEqual(['POST refused']);
}, 20_000);
