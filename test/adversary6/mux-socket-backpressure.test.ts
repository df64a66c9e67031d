import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import type { Proxy } from '../../proxy/proxy.js';
import { FrameType } from '../../proxy/mux/frame.js';
import { connect as tlsConnect } from 'node:tls';
import { RawMux } from './raw-mux.js';

/**
 * ADV6-2. A peer with a valid mesh certificate makes the inbound sidecar buffer without
 * bound. The session writes frames to the TLS socket and never looks at write()'s
 * result (mux-session.ts write()); flow control is the only brake, and the peer is the
 * one who grants it: WINDOW is unchecked (no 2^31-1 cap, RFC 9113 section 6.9.1 says
 * FLOW_CONTROL_ERROR). So a peer grants 4 GiB, asks for a large response and never reads
 * its socket: the sidecar reads the app's response at full speed into the TLS socket's
 * write queue. On `h1` (and HTTP/2) the same peer is held by TCP: the socket's
 * backpressure stops the reads from the app.
 */
const pki = testPki();
const TOTAL = 256 * 1024 * 1024;
let server: Proxy, appServer: Server;
/** Bytes the app has handed to its socket (write() accepted or drained). */
let written = 0;

beforeAll(async () => {
  appServer = createServer((req, res) => {
    req.resume();
    written = 0;
    const chunk = Buffer.alloc(64 * 1024, 97);
    res.writeHead(200, { 'content-length': String(TOTAL) });
    const pump = (): void => {
      while (written < TOTAL) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((r) => appServer.listen(0, '127.0.0.1', r));
  server = await startProxy({ pki, serviceAccount: 'web' });
});

afterAll(async () => {
  await server.close();
  appServer.closeAllConnections();
  await new Promise((r) => appServer.close(r));
});

/** Until the app is held (no progress for 1 s) or has written everything. */
async function appHeld(): Promise<void> {
  const start = Date.now();
  let last: number;
  while (written < TOTAL && Date.now() - start < 20_000) {
    last = written;
    await new Promise((r) => setTimeout(r, 1000));
    if (written === last) break;
  }
}

test('control: the same peer on ALPN http/1.1 is held by TCP', async () => {
  const port = (appServer.address() as AddressInfo).port;
  const m = pki.issue('default', 'mallory');
  const socket = tlsConnect({ host: '127.0.0.1', port: server.inboundPort, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false, key: m.keyPem, cert: m.certChainPem, ca: m.trustBundlePem });
  let read = 0;
  let head = '';
  await new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      read += d.length;
      head += d.toString('latin1', 0, Math.min(d.length, 512));
      if (head.includes('\r\n\r\n')) {
        socket.pause();
        resolve();
      }
    });
    socket.once('secureConnect', () => socket.write(`GET /big HTTP/1.1\r\nhost: web\r\nwren-target-port: ${port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`));
  });
  await appHeld();
  socket.destroy();
  expect(Math.round((written - read) / 2 ** 20)).toBeLessThan(96);
}, 40_000);

test('a peer that grants itself window and stops reading holds the sidecar, as TCP holds it on h1', async () => {
  const port = (appServer.address() as AddressInfo).port;
  const peer = await RawMux.open(pki, server.inboundPort);
  peer.data(1, `GET /big HTTP/1.1\r\nhost: web\r\nwren-target-port: ${port}\r\nwren-orig-proto: HTTP/1.1\r\n\r\n`);
  peer.control(FrameType.Window, 1, 0xffffffff);
  peer.control(FrameType.Window, 0, 0xffffffff);
  // Read the response head only, then stop reading (the kernel's buffers fill, then the sidecar's).
  await peer.until(() => peer.text(1).includes('\r\n\r\n'), 5000);
  peer.socket.pause();
  await appHeld();
  const read = peer.bytesRead;
  peer.close();
  // Between the app and the peer, kernel buffers on loopback hold at most 2 x (4 MB send +
  // 32 MB receive: net.ipv4.tcp_wmem / tcp_rmem maxima here), the stream's Duplex 64 KiB:
  // 96 MB is above any honest bound.
  expect(Math.round((written - read) / 2 ** 20)).toBeLessThan(96);
}, 40_000);
