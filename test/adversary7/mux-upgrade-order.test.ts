import { testPki } from '../helpers/pki.js';
import type { FakeApp } from '../helpers/fake-app.js';
import type { Proxy } from '../../proxy/proxy.js';
import { RawMux } from '../adversary6/raw-mux.js';
import { startWebSidecar, closeWebSidecar } from '../helpers/web-sidecar.js';

/**
 * An Upgrade request on a virtual connection: the inbound's HTTP/1.1 connection takes the
 * head through its sink (mux-stream.ts setSink), then lets go of the stream (the sink
 * cleared, the stream paused) until the app answers 101. The bytes after the head in the
 * same DATA frame, in frames of the same read, and in frames sent while the upgrade is
 * pending must all reach the app once, in order, and come back from its echo.
 */
const pki = testPki();
let app: FakeApp, server: Proxy;

beforeAll(async () => ({ app, server } = await startWebSidecar(pki)));
afterAll(() => closeWebSidecar({ app, server }));

test('tunnel bytes sent with the upgrade head, right after it and while it waits reach the app in order', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  const head = `GET /ws HTTP/1.1\r\nhost: web\r\nupgrade: websocket\r\nconnection: upgrade\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  // Head and the first tunnel bytes in one frame, two frames more in the same write.
  peer.socket.write(Buffer.concat([frame(1, `${head}<1>`), frame(1, '<2>'), frame(1, '<3>')]));
  // While the upgrade waits for the app's 101: more frames, one at a time.
  for (let i = 4; i <= 6; i++) peer.data(1, `<${i}>`);
  expect(await peer.until(() => peer.text(1).includes('<9>'), 200).catch(() => false)).toBe(false);
  const text = () => peer.text(1);
  expect(await peer.until(() => text().includes('<6>'), 3000)).toBe(true);
  // After the 101: direct reads again (the tunnel's pipe), each byte once and in order.
  for (let i = 7; i <= 9; i++) peer.data(1, `<${i}>`);
  expect(await peer.until(() => text().includes('<9>'), 3000)).toBe(true);
  const t = text();
  expect(t.startsWith('HTTP/1.1 101')).toBe(true);
  expect(t.slice(t.indexOf('\r\n\r\n') + 4)).toBe('<1><2><3><4><5><6><7><8><9>');
  peer.close();
});

// ADV7-2 (test/adversary7/pipelined-upgrade-tcp.test.ts has it on TCP): the frames that waited were dropped.
test('an Upgrade pipelined behind a request: the frames that waited while the first was answered reach the tunnel', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  const first = `GET /slow?ms=200 HTTP/1.1\r\nhost: web\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  const head = `GET /ws HTTP/1.1\r\nhost: web\r\nupgrade: websocket\r\nconnection: upgrade\r\nwren-target-port: ${app.port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  peer.data(1, `${first}${head}<1>`);
  // While the first request is answered (the connection paused, the upgrade head held): more tunnel bytes.
  peer.data(1, '<2>');
  peer.data(1, '<3>');
  const text = () => peer.text(1);
  expect(await peer.until(() => text().includes('HTTP/1.1 101'), 3000)).toBe(true);
  peer.data(1, '<4>');
  expect(await peer.until(() => text().includes('<4>'), 3000)).toBe(true);
  const t = text();
  const tunnel = t.slice(t.indexOf('\r\n\r\n', t.indexOf('HTTP/1.1 101')) + 4);
  expect(tunnel).toBe('<1><2><3><4>');
  peer.close();
});

function frame(id: number, text: string, flags = 0): Buffer {
  const body = Buffer.from(text, 'latin1');
  const h = Buffer.alloc(10);
  h.writeUInt32BE(body.length, 0);
  h[4] = 0;
  h[5] = flags;
  h.writeUInt32BE(id, 6);
  return Buffer.concat([h, body]);
}
