import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { testPki } from './helpers/pki.js';
import { startProxy } from './helpers/proxy.js';
import { fakeApp, type FakeApp } from './helpers/fake-app.js';
import { parseService } from '../contract/parse.js';

/**
 * The drain and the app's HTTP/2 cleartext connections to the outbound (docs/operations.md,
 * Shutdown), on both servers the outbound can use for them (protocol.outboundHttp2): the
 * session gets a GOAWAY when the drain starts, so the app opens its next streams on a new
 * connection, while the stream in flight finishes. Before the fix, sessions on node:http2
 * got none and were reset at the close.
 */
const pki = testPki();
let app: FakeApp;
beforeAll(async () => {
  app = await fakeApp('other');
});
afterAll(() => app.close());

function get(session: ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':path': path, ':authority': 'other' });
    s.on('response', (h) => {
      s.resume();
      s.on('end', () => resolve(Number(h[':status'])));
    });
    s.on('error', reject);
    s.end();
  });
}

test.each(['frames', 'node'] as const)('outboundHttp2 %s: GOAWAY at the start of the drain, the stream in flight completes', async (outboundHttp2) => {
  const services = [parseService({ name: 'other', namespace: 'default', ports: [{ port: 80, protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: app.port }] }] }, 'test')];
  const proxy = await startProxy({ pki, serviceAccount: 'client', config: { protocol: { outboundHttp2 }, shutdown: { gracePeriodMs: 5000 } }, services });
  const session = h2connect(`http://127.0.0.1:${proxy.outboundPort}`);
  try {
    expect(await get(session, '/name')).toBe(200);
    let goaway: number | undefined;
    session.on('goaway', (code: number) => (goaway = code));
    const inFlight = get(session, '/slow?ms=800');
    await new Promise((r) => setTimeout(r, 200));
    const drained = proxy.drain();
    await new Promise((r) => setTimeout(r, 200));
    // Told at the drain's start (NO_ERROR), not at the close.
    expect(goaway).toBe(0);
    expect(await inFlight).toBe(200);
    await drained;
  } finally {
    session.destroy();
    await proxy.close();
  }
});
