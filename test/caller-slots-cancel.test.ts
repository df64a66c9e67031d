import { connect as netConnect } from 'node:net';
import { connect as h2Connect } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy, meshService } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { rawHead, statusLine } from './helpers/raw-http.js';

/**
 * limits.maxStreamsPerCaller holds a slot per request a caller has open to the app. A request
 * that hangs at the app and is then given up by its client (the client's connection closes,
 * or its HTTP/2 stream is cancelled) must give its slot back: otherwise a caller whose calls
 * once hung is short of its limit for good, and at the limit refused for good.
 */
const pki = testPki();
const LIMIT = 2;
let app: FakeApp;
let server: Proxy;
let client: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: { maxStreamsPerCaller: LIMIT } } });
  client = await startProxy({
    pki,
    serviceAccount: 'client',
    services: [meshService('web', 80, [{ appPort: app.port, proxy: server }], { protocol: 'http1' })],
  });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

/** A request on a connection of its own; the status line, or '' if none within 3 s. */
function h1(path: string): Promise<string> {
  return rawHead(client.outboundPort, `GET ${path} HTTP/1.1\r\nHost: web\r\n\r\n`, 3000).then(statusLine);
}

/** Requests that hang at the app, each on its own connection, until the returned function closes them. */
async function hanging(n: number): Promise<() => void> {
  const sockets = Array.from({ length: n }, () => {
    const s = netConnect(client.outboundPort, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('connect', () => s.write('GET /hang HTTP/1.1\r\nHost: web\r\n\r\n'));
    return s;
  });
  await new Promise((r) => setTimeout(r, 300));
  return () => sockets.forEach((s) => s.destroy());
}

/** Until `f` is true, or `ms`: polls every 50 ms. */
async function eventually(f: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await f()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return f();
}

test('at the limit the caller is refused; once its hanging HTTP/1.1 requests are given up, it has its whole limit again', async () => {
  const release = await hanging(LIMIT);
  // Both slots held: the next request is refused at once (503 overflow), not queued.
  expect(await h1('/name')).toBe('HTTP/1.1 503 Service Unavailable');
  release();
  expect(await eventually(async () => (await h1('/name')) === 'HTTP/1.1 200 OK')).toBe(true);
  // All of it: LIMIT requests held at once again, then the next refused.
  const again = await hanging(LIMIT);
  expect(await h1('/name')).toBe('HTTP/1.1 503 Service Unavailable');
  again();
  expect(await eventually(async () => (await h1('/name')) === 'HTTP/1.1 200 OK')).toBe(true);
});

test('HTTP/2 streams cancelled while they hang give their slots back too', async () => {
  const session = h2Connect(`http://127.0.0.1:${client.outboundPort}`);
  try {
    const streams = Array.from({ length: LIMIT }, () => {
      const st = session.request({ ':path': '/hang', ':authority': 'web' });
      st.on('error', () => undefined);
      st.end();
      return st;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(await h1('/name')).toBe('HTTP/1.1 503 Service Unavailable');
    for (const st of streams) st.close(0x8); // CANCEL
    expect(await eventually(async () => (await h1('/name')) === 'HTTP/1.1 200 OK')).toBe(true);
    const held = await hanging(LIMIT);
    expect(await h1('/name')).toBe('HTTP/1.1 503 Service Unavailable');
    held();
  } finally {
    session.close();
  }
});
