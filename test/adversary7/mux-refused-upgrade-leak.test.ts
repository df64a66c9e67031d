import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FLAG_FIN, FrameType } from '../../proxy/mux/frame.js';
import { RawMux } from '../adversary6/raw-mux.js';

/**
 * ADV7-3. An Upgrade that is not switched (the app is not there: 502), with tunnel bytes
 * held behind it. The connection answered and ended its half, but left the socket paused
 * with the held bytes in it, so the client's FIN was never read: the virtual connection
 * stayed open for good and took one of the session's stream slots (on TCP, the socket and
 * its connection stayed). A peer could fill its session's streams this way.
 */
const pki = testPki();
let server: Proxy;

beforeAll(async () => {
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: { maxConcurrentStreams: 2 } } });
});

afterAll(async () => {
  await server.close();
});

test('refused upgrades with held bytes do not keep their streams open', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  const head = `GET /ws HTTP/1.1\r\nhost: web\r\nupgrade: websocket\r\nconnection: upgrade\r\nwren-target-port: 1\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`;
  for (const id of [1, 3, 5]) {
    peer.data(id, `${head}<held>`);
    peer.data(id, '<more>');
    const fin = () => peer.frames.some((f) => f.type === FrameType.Data && f.id === id && (f.flags & FLAG_FIN) !== 0);
    expect(await peer.until(fin, 3000)).toBe(true);
    expect(peer.text(id)).toMatch(/^HTTP\/1\.1 50\d/);
    peer.data(id, '', FLAG_FIN);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Two streams at most: a fourth is served only if the three above were freed.
  peer.data(7, 'GET /nothing HTTP/1.1\r\nhost: web\r\nwren-target-port: 1\r\nwren-orig-proto: HTTP/1.1\r\n\r\n');
  expect(await peer.until(() => peer.text(7).startsWith('HTTP/1.1') || peer.frames.some((f) => f.type === FrameType.Reset && f.id === 7), 3000)).toBe(true);
  expect(peer.frames.filter((f) => f.type === FrameType.Reset).map((f) => f.id)).toEqual([]);
  peer.close();
});
