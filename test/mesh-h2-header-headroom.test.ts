import { connect as h2connect, createServer as createH2Server } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { listenOnLoopback } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.maxHeaderBytes between sidecars over HTTP/2 (protocol.meshHttp2 h2): a request head
 * at the limit as the client sidecar measures it (RFC 9113 section 6.5.2: name + value + 32
 * per field) is accepted there, then carries the fields the sidecar adds (x-request-id,
 * traceparent, x-forwarded-for, wren-target-port, wren-orig-proto, wren-peer) to the server
 * sidecar, whose mTLS HTTP/2 listener held it to the very same limit and answered 431
 * headers-too-large: the app never saw a request that was within the limit when it left, and
 * the effective limit was the setting minus the mesh's own fields. The mesh's HTTP/1.1
 * server leaves room for them (h1-server.ts MESH_HEAD_HEADROOM, 4f956a6), as the
 * multiplexer (meshHttp2 mux) therefore did: h2 now leaves the same.
 */
const pki = testPki();
/** An h2c app that takes any number of fields (node:http2's own default is 128) and answers 404. */
let app: { port: number; close(): Promise<void> };
let server: Proxy;
const clients: Proxy[] = [];
let wide: Proxy;
const wideClients: Proxy[] = [];

beforeAll(async () => {
  const h2 = createH2Server({ maxHeaderListPairs: 4096, maxHeaderSize: 1 << 20 } as Parameters<typeof createH2Server>[0]);
  h2.on('stream', (st) => st.respond({ ':status': 404 }, { endStream: true }));
  app = await listenOnLoopback(h2);
  server = await startProxy({ pki, serviceAccount: 'web' });
  // Room for many fields under the byte limit (each costs 32 bytes more than its text).
  wide = await startProxy({ pki, serviceAccount: 'wide', config: { limits: { maxHeaderBytes: 64 * 1024 } } });
  for (const meshHttp2 of ['h2', 'mux']) {
    clients.push(await startProxy({
      pki, serviceAccount: `client-${meshHttp2}`,
      services: [meshService('web', 80, [{ appPort: app.port, proxy: server }], { protocol: 'http2' })],
      config: { protocol: { meshHttp2 } },
    }));
    wideClients.push(await startProxy({
      pki, serviceAccount: `wide-client-${meshHttp2}`,
      services: [meshService('web', 80, [{ appPort: app.port, proxy: wide }], { protocol: 'http2' })],
      config: { protocol: { meshHttp2 }, limits: { maxHeaderBytes: 64 * 1024 } },
    }));
  }
});

afterAll(async () => {
  await Promise.all([...clients, ...wideClients, server, wide].map((p) => p.close()));
  await app.close();
});

/** A request whose header list is `size` bytes as RFC 9113 section 6.5.2 counts it: its status and proxy error. */
async function ask(p: Proxy, size: number, extra: Record<string, string> = {}): Promise<string> {
  const s = h2connect(`http://127.0.0.1:${p.outboundPort}`);
  s.on('error', () => undefined);
  // :method GET, :authority web, :scheme http, :path / and x-big: 205 bytes and the value.
  const value = 'a'.repeat(size - 205);
  try {
    return await new Promise<string>((resolve, reject) => {
      const st = s.request({ ':path': '/', ':authority': 'web', 'x-big': value, ...extra });
      let got = '';
      st.on('response', (h) => (got = `${h[':status']} ${h['wren-proxy-error'] ?? ''}`.trim()));
      st.resume();
      st.on('end', () => resolve(got));
      st.on('error', reject);
      st.end();
    });
  } finally {
    s.close();
  }
}

describe.each([['h2', 0], ['mux', 1]] as const)('protocol.meshHttp2 %s', (_name, i) => {
  test('a request head at limits.maxHeaderBytes (16384) reaches the app; one byte over gets 431 from the client sidecar', async () => {
    const c = clients[i];
    expect(await ask(c, 16_384)).toBe('404');
    expect(await ask(c, 16_385)).toBe('431 headers-too-large');
  });

  test("a request of 512 header fields (the HTTP/2 listeners' most, pseudo-headers included) reaches the app", async () => {
    const many = Object.fromEntries(Array.from({ length: 507 }, (_, k) => [`x-f${k}`, 'v']));
    expect(await ask(wideClients[i], 1000, many)).toBe('404');
  });
});
