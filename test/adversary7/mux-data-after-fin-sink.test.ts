import { testPki } from '../helpers/pki.js';
import type { FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FLAG_FIN, FrameType } from '../../proxy/mux/frame.js';
import { RawMux } from '../adversary6/raw-mux.js';
import { startWebSidecar, closeWebSidecar } from '../helpers/web-sidecar.js';

/**
 * ADV7-1. A peer ends its half of a virtual connection with the FIN in its request's DATA
 * frame, then sends a second request on the same stream. DATA after FIN is a stream error
 * (RFC 9113 section 5.1, "half-closed (remote)": STREAM_CLOSED). On the Readable's path it
 * was one (a push after EOF destroys the stream: RESET); on the sink path
 * (mux-stream.ts setSink, the HTTP/1.1 server's feed) the bytes went to the parser, and
 * the second request was served after the first, a request the peer had said it would
 * never send.
 */
const pki = testPki();
let app: FakeApp, server: Proxy;

beforeAll(async () => ({ app, server } = await startWebSidecar(pki)));
afterAll(() => closeWebSidecar({ app, server }));

test('a request sent after the stream FIN is never served: the stream is reset', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  const before = app.hits.count;
  const req = (path: string) => `GET ${path} HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  // One write: both frames reach the session in one read, the second while the first request is in flight.
  peer.socket.write(Buffer.concat([frame(1, req('/slow?ms=100'), FLAG_FIN), frame(1, req('/name'))]));
  expect(await peer.until(() => peer.frames.some((f) => f.type === FrameType.Reset && f.id === 1), 2000)).toBe(true);
  await new Promise((r) => setTimeout(r, 300));
  expect(peer.text(1)).not.toContain('200');
  expect(app.hits.count - before).toBeLessThanOrEqual(1);
  // The listener keeps serving this peer on a new stream.
  peer.data(3, req('/name'));
  expect(await peer.until(() => peer.text(3).includes('\r\n\r\nweb'), 2000)).toBe(true);
  peer.close();
});

function frame(id: number, text: string, flags = 0): Buffer {
  const body = Buffer.from(text, 'latin1');
  const h = Buffer.alloc(10);
  h.writeUInt32BE(body.length, 0);
  h[4] = FrameType.Data;
  h[5] = flags;
  h.writeUInt32BE(id, 6);
  return Buffer.concat([h, body]);
}

test('two requests and the FIN in one frame: both are answered, in order, then the stream ends', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  const req = (path: string) => `GET ${path} HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  peer.data(1, req('/slow?ms=50') + req('/name'), FLAG_FIN);
  expect(await peer.until(() => peer.frames.some((f) => f.type === FrameType.Data && f.id === 1 && (f.flags & FLAG_FIN) !== 0), 3000)).toBe(true);
  const t = peer.text(1);
  expect(t.match(/HTTP\/1\.1 200/g)?.length).toBe(2);
  expect(t.indexOf('slow web')).toBeLessThan(t.lastIndexOf('\r\n\r\nweb'));
  expect(peer.frames.some((f) => f.type === FrameType.Reset && f.id === 1)).toBe(false);
  peer.close();
});
