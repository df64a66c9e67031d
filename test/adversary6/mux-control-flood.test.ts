import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FrameType } from '../../proxy/mux/frame.js';
import { MUX_ALPN_2 } from '../../proxy/mux/mux-session.js';
import { metric } from '../helpers/admin-metric.js';
import { RawMux } from './raw-mux.js';

/**
 * ADV6-7 (the control-frame side of ADV6-2). Frames the inbound session answers on its
 * own, outside any flow control: a RESET (Refused) and a connection WINDOW for every DATA
 * that opens a stream over limits.maxConcurrentStreams. A peer that sends such frames and
 * never reads has the sidecar queue 28 bytes (and two write requests) for every 11 it
 * sends (here 16.5 MB sent grew the sidecar's heap by ~400 MB), for as long as it likes: the session never stops reading its socket when its
 * own writes back up. nghttp2 bounds this queue and drops the session (CVE-2019-9512,
 * CVE-2019-9514, CVE-2019-9515: ping, reset and settings floods).
 */
const pki = testPki();
let server: Proxy;

beforeAll(async () => {
  server = await startProxy({ pki, serviceAccount: 'web', config: { limits: { maxConcurrentStreams: 1 } } });
});

afterAll(async () => {
  await server.close();
});

const FRAMES = 1_500_000;

test('a peer that never reads cannot make the sidecar queue replies without bound', async () => {
  const peer = await RawMux.open(pki, server.inboundPort);
  // Stream 1 takes the one slot (a head that never ends); every later id is refused.
  peer.data(1, 'GET / HTTP/1.1\r\n');
  peer.socket.pause();
  const closed = new Promise((r) => peer.socket.once('close', r));
  const heapBefore = process.memoryUsage().heapUsed;
  const batch = 10_000;
  for (let sent = 0; sent < FRAMES; sent += batch) {
    const b = Buffer.allocUnsafe(batch * 11);
    for (let i = 0; i < batch; i++) {
      // A DATA header (frame.ts) written in place: no garbage of the peer's in this heap.
      b.writeUInt32BE(1, i * 11);
      b[i * 11 + 4] = FrameType.Data;
      b[i * 11 + 5] = 0;
      b.writeUInt32BE(3 + 2 * (sent + i), i * 11 + 6);
      b[i * 11 + 10] = 120;
    }
    // Until the sidecar gives up on this connection, which the peer sees as its socket closing.
    if (!peer.socket.write(b)) await Promise.race([new Promise((r) => peer.socket.once('drain', r)), closed]);
    if (peer.closed) break;
  }
  // The server had time to read all it would.
  await new Promise((r) => setTimeout(r, 2000));
  // This process is the sidecar: what its heap holds now is the queue (the kernel's socket
  // buffers, which may take all 16.5 MB offered while the sidecar stops reading, are not
  // in it; the peer's own pending bytes are outside the heap too).
  const grownMB = Math.round((process.memoryUsage().heapUsed - heapBefore) / 2 ** 20);
  peer.close();
  // A bounded queue (nghttp2's is 10000 frames) stays far below 64 MB of heap.
  expect(grownMB).toBeLessThan(64);
}, 60_000);

test('a PING flood (wren-mux/2) from a peer that never reads is bounded the same way: the connection closed, counted', async () => {
  const peer = await RawMux.open(pki, server.inboundPort, 'mallory', MUX_ALPN_2);
  peer.socket.pause();
  const closed = new Promise((r) => peer.socket.once('close', r));
  const count = /wren_limit_exceeded_total\{direction="inbound",limit="mux-write-backlog"\} (\d+)/;
  const before = await metric(server, count);
  const batch = 10_000;
  for (let sent = 0; sent < FRAMES && !peer.closed; sent += batch) {
    // PING frames (stream 0, u32 payload) written in place, each answered with an ACK.
    const b = Buffer.alloc(batch * 14);
    for (let i = 0; i < batch; i++) {
      b.writeUInt32BE(4, i * 14);
      b[i * 14 + 4] = FrameType.Ping;
      b.writeUInt32BE(sent + i, i * 14 + 10);
    }
    if (!peer.socket.write(b)) await Promise.race([new Promise((r) => peer.socket.once('drain', r)), closed]);
  }
  await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
  expect(peer.closed).toBe(true);
  expect((await metric(server, count)) - before).toBe(1);
  peer.close();
}, 60_000);
