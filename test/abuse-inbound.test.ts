import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, fakeH2cApp, type FakeApp } from './helpers/fake-app.js';
import type { Proxy } from '../proxy/proxy.js';
import { until } from './helpers/until.js';
import { metric } from './helpers/admin-metric.js';

/**
 * Issue 11 item 4: mTLS peers that open many streams of a large response, never read
 * them, and disconnect must not leave streams, buffers or sessions on the inbound.
 */
const pki = testPki();
let app: FakeApp, server: Proxy;

beforeAll(async () => {
  app = await fakeApp('web');
  server = await startProxy({ pki, serviceAccount: 'web' });
}, 20_000);

afterAll(async () => {
  await server.close();
  await app.close();
});

/** An mTLS HTTP/2 session to the inbound port, as a peer sidecar. */
function peer(serviceAccount = 'client', to: Proxy = server): Promise<{ session: ClientHttp2Session; socket: TLSSocket }> {
  const m = pki.issue('default', serviceAccount);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: to.inboundPort, ALPNProtocols: ['h2'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const session = h2connect(`https://127.0.0.1:${to.inboundPort}`, { createConnection: () => socket });
      session.on('error', () => undefined);
      resolve({ session, socket });
    });
  });
}

const inflight = (p: Proxy): Promise<number> => metric(p, /wren_active_streams\{direction="inbound"\} (\d+)/);
const limitCount = (p: Proxy, limit: string): Promise<number> => metric(p, new RegExp(`wren_limit_exceeded_total\\{direction="inbound",limit="${limit}"\\} (\\d+)`));

test('200 unread large responses, then the peer disconnects: the inbound lets go of every stream', async () => {
  for (let round = 0; round < 2; round++) {
    const { session, socket } = await peer();
    const heads: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const r = session.request({ ':path': '/big?bytes=1048576', 'wren-target-port': String(app.port), 'wren-orig-proto': 'HTTP/1.1' }, { endStream: true });
      r.on('error', () => undefined);
      heads.push(new Promise((res) => r.once('response', () => res())));
      // Never read: the response fills the stream's flow-control window and stays there.
    }
    await Promise.race([Promise.all(heads), new Promise((r) => setTimeout(r, 5000))]);
    expect(await inflight(server)).toBeGreaterThan(0);
    socket.destroy();
    // Every stream the peer held is gone soon after it left (not at the grace period's end).
    expect(await until(async () => (await inflight(server)) === 0, 5000)).toBe(true);
  }
}, 40_000);

/**
 * Issue 11 item 5: one caller holding many unread HTTP/2 streams to an app must not cost
 * other callers theirs (a cap per caller on requests open to the app).
 */
describe('one slow reader and an HTTP/2 app', () => {
  let h2app: FakeApp;
  beforeAll(async () => {
    h2app = await fakeH2cApp('h2web');
  });
  afterAll(async () => {
    await h2app.close();
  });

  test('another caller keeps being served while one caller holds 200 unread streams', async () => {
    const overflowBefore = await limitCount(server, 'max-streams-per-caller');
    const slow = await peer('slow-reader');
    const held: ClientHttp2Stream[] = [];
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) {
      const r = slow.session.request({ ':path': '/big?bytes=1048576', 'wren-target-port': String(h2app.port) }, { endStream: true });
      r.on('error', () => undefined);
      r.once('response', (h) => statuses.push(Number(h[':status'])));
      held.push(r);
    }
    await until(() => statuses.length === 200, 10_000);
    // The slow reader is held to its cap; the rest of its streams are refused as overflow.
    expect(statuses.filter((s) => s === 200).length).toBe(100);
    expect(statuses.filter((s) => s === 503).length).toBe(100);
    const other = await peer('other');
    for (let i = 0; i < 10; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const r = other.session.request({ ':path': '/name', 'wren-target-port': String(h2app.port) }, { endStream: true });
        r.on('error', reject);
        r.once('response', (h) => resolve(Number(h[':status'])));
        r.resume();
      });
      expect(status).toBe(200);
    }
    expect(await limitCount(server, 'max-streams-per-caller')).toBe(overflowBefore + 100);
    slow.socket.destroy();
    other.socket.destroy();
  }, 40_000);
});

