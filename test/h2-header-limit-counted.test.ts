import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { meshService, startProxy } from './helpers/proxy.js';
import { fakeH2cApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';

/**
 * limits.maxHeaderBytes on HTTP/2: a request head over it is answered 431
 * (headers-too-large) by the listener before any layer sees it. On HTTP/1.1 that answer is
 * counted in wren_proxy_errors_total{code="headers-too-large"} (the H1 server's
 * onClientError); on HTTP/2 it was counted nowhere, on any of the four HTTP/2 servers
 * (the outbound's frame-level and node:http2 ones, the plaintext inbound's, the mTLS
 * inbound's), so the limit firing could not be seen in the metrics.
 */
const pki = testPki();
let app: FakeApp;
const proxies: Proxy[] = [];

beforeAll(async () => {
  app = await fakeH2cApp();
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await app.close();
});

async function start(o: Parameters<typeof startProxy>[0]): Promise<Proxy> {
  const p = await startProxy(o);
  proxies.push(p);
  return p;
}

async function errors(p: Proxy, direction: 'inbound' | 'outbound'): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = new RegExp(`^wren_proxy_errors_total\\{direction="${direction}",code="headers-too-large"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** One request with a header of `bytes` on an h2c connection to `port`: its status. */
async function ask(port: number, bytes: number): Promise<number> {
  const session: ClientHttp2Session = h2connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  try {
    return await new Promise<number>((resolve, reject) => {
      const st = session.request({ ':path': '/', ':authority': 'web', 'x-big': 'a'.repeat(bytes) });
      let status = 0;
      st.on('response', (h) => (status = Number(h[':status'])));
      st.resume();
      st.on('end', () => resolve(status));
      st.on('error', reject);
      st.end();
    });
  } finally {
    session.close();
  }
}

describe.each(['frames', 'node'] as const)('outbound, protocol.outboundHttp2 %s', (server) => {
  test('a request head over limits.maxHeaderBytes gets 431, counted as headers-too-large', async () => {
    const p = await start({ pki, serviceAccount: `out-${server}`, config: { protocol: { outboundHttp2: server } } });
    const before = await errors(p, 'outbound');
    expect(await ask(p.outboundPort, 20_000)).toBe(431);
    expect(await errors(p, 'outbound')).toBe(before + 1);
  });
});

test('plaintext inbound (PERMISSIVE h2c): a request head over limits.maxHeaderBytes gets 431, counted', async () => {
  const p = await start({
    pki, serviceAccount: 'plain', inboundOriginalDst: () => ({ address: '127.0.0.1', port: app.port }),
    config: { policy: { mtls: { mode: 'PERMISSIVE' } } },
  });
  const before = await errors(p, 'inbound');
  expect(await ask(p.inboundPort, 20_000)).toBe(431);
  expect(await errors(p, 'inbound')).toBe(before + 1);
});

test("mTLS inbound (meshHttp2 h2): a request within the client sidecar's limit but over the server's gets 431, counted by the server", async () => {
  const server = await start({ pki, serviceAccount: 'web', config: { limits: { maxHeaderBytes: 1024 } } });
  const client = await start({ pki, serviceAccount: 'client', services: [meshService('web', 80, [{ appPort: app.port, proxy: server }], { protocol: 'http2' })], config: { protocol: { meshHttp2: 'h2' } } });
  const before = await errors(server, 'inbound');
  // Over the server's limit and the room it leaves for the client sidecar's own fields (12 KiB), under the client's 16 KiB.
  expect(await ask(client.outboundPort, 14_000)).toBe(431);
  expect(await errors(server, 'inbound')).toBe(before + 1);
});
