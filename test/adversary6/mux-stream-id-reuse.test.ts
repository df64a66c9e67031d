import { testPki } from '../helpers/pki.js';
import type { FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FLAG_FIN, FrameType } from '../../proxy/mux/frame.js';
import { RawMux } from './raw-mux.js';
import { startWebSidecar, closeWebSidecar } from '../helpers/web-sidecar.js';

/**
 * ADV6-3. The inbound session opens a new stream for the first DATA of any odd id it does
 * not currently hold (mux-session.ts onData), including ids it has already served and
 * closed. So DATA that arrives for a stream after it ended (its RESET crossing the
 * caller's bytes in flight, or a peer reusing ids) is parsed from its first byte as a
 * fresh HTTP/1.1 connection: the tail of a request body becomes a request of its own
 * (the smuggling the one-exchange-per-connection design is meant to rule out). HTTP/2
 * forbids it: ids only grow, and a frame on a closed stream is ignored or a connection
 * error (RFC 9113 section 5.1.1: "The identifier of a newly established stream MUST be
 * numerically greater than all streams that the initiating endpoint has opened").
 */
const pki = testPki();
let app: FakeApp, server: Proxy;

beforeAll(async () => ({ app, server } = await startWebSidecar(pki)));
afterAll(() => closeWebSidecar({ app, server }));

const head = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n${extra}\r\n`;

test('DATA on a stream id that was already served and reset does not start a new request', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  peer.data(1, head('/name'));
  expect(await peer.until(() => /\r\n\r\nweb$/.test(peer.text(1)), 5000)).toBe(true);
  peer.control(FrameType.Reset, 1, 0);
  const hits = app.hits.count;
  // The same id again, after its RESET: what an honest caller's late body bytes look like.
  const before = peer.frames.length;
  peer.data(1, head('/echo'));
  peer.data(3, head('/name'));
  // Stream 3 (a new, higher id) is served: once it is, anything for id 1 would have been too.
  await peer.until(() => /\r\n\r\nweb$/.test(peer.text(3)), 5000);
  const after = peer.frames.slice(before).filter((f) => f.id === 1 && f.type === FrameType.Data).map((f) => f.payload.toString('latin1')).join('');
  peer.close();
  expect(app.hits.count - hits).toBe(1);
  expect(after).not.toMatch(/^HTTP\/1\.1 200/);
});

test('DATA on a stream id closed gracefully (FIN both ways) does not start a new request either', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  // Request 1 with `connection: close`: answered, then the server's FIN; the peer's FIN closes the stream.
  peer.data(1, head('/name', 'connection: close\r\n'));
  expect(await peer.until(() => /\r\n\r\nweb$/.test(peer.text(1)) && peer.frames.some((f) => f.id === 1 && (f.flags & FLAG_FIN) !== 0), 5000)).toBe(true);
  peer.data(1, '', FLAG_FIN);
  await new Promise((r) => setTimeout(r, 100));
  const hits = app.hits.count;
  const before = peer.frames.length;
  peer.data(1, head('/echo'));
  peer.data(3, head('/name'));
  await peer.until(() => /\r\n\r\nweb$/.test(peer.text(3)), 5000);
  const after = peer.frames.slice(before).filter((f) => f.id === 1 && f.type === FrameType.Data).map((f) => f.payload.toString('latin1')).join('');
  peer.close();
  expect(app.hits.count - hits).toBe(1);
  expect(after).not.toMatch(/^HTTP\/1\.1 200/);
});
