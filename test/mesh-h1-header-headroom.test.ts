import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { testPki } from './helpers/pki.js';
import { rawHead } from './helpers/raw-http.js';
import { startPair } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * Found by the adversary review (mesh-h1-header-headroom).
 *
 * What a user does: an app sends a request within the proxy's documented request limits
 * (100 header fields, DEFAULT_H1_LIMITS.maxHeaderCount: Envoy's max_headers_count): 96 fields.
 *
 * What happens: the client sidecar accepts it, adds its own fields (traceparent,
 * x-request-id, x-forwarded-for, wren-target-port, wren-orig-proto, wren-peer: six lines)
 * and sends it on the mesh HTTP/1.1 connection (protocol.meshHttp1 h1, the default), where the server
 * sidecar's codec applies the very same field limit to the grown head and answers 431
 * headers-too-large. The app never sees a request that was within the limits when it left
 * the client; the client is told its headers are too large, which they were not; and the
 * peer counts a client error against a sidecar.
 *
 * What should happen: a request the outbound accepts is not refused by the peer for what
 * the sidecars themselves added: the inbound's limits on the mesh connection leave room for
 * the mesh's own fields (or the outbound applies the limit to the head it will send).
 * BRIEF: "Bad input gets a clear error"; good input gets served.
 */
const pki = testPki();
let server: Proxy, client: Proxy, close: () => Promise<void>;
let served = 0;

beforeAll(async () => {
  const l = await listenOnLoopback(createServer({ maxHeaderSize: 64 * 1024 }, (req: IncomingMessage, res: ServerResponse) => {
    served++;
    req.resume();
    res.end('ok');
  }));
  close = l.close;
  ({ server, client } = await startPair(pki, l.port));
}, 20_000);

afterAll(async () => {
  await client.close();
  await server.close();
  await close();
});

const raw = (bytes: string): Promise<string> => rawHead(client.outboundPort, bytes);

const fields = (n: number) => Array.from({ length: n }, (_, i) => `x-f${i}: v\r\n`).join('');

test('96 header fields (under the 100-field limit) reach the app', async () => {
  const before = served;
  const out = await raw(`GET /x HTTP/1.1\r\nHost: web\r\n${fields(95)}\r\n`);
  // Today: "HTTP/1.1 431 ... wren-proxy-error: headers-too-large ... more than 100 fields", from the peer.
  expect(out).toMatch(/^HTTP\/1\.1 200 /);
  expect(served).toBe(before + 1);
});
