import { connect as h2connect } from 'node:http2';
import { createServer as createNetServer } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { FLAG, FRAME, frame, word } from '../helpers/h2-frames.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import { meshService, startProxy } from '../helpers/proxy.js';
import { until } from '../helpers/until.js';

const pki = testPki();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * An upload that goes on after a complete response and ends
 * properly must reach the app with END_STREAM. On the node:http2 relays it did not: the
 * caller's stream closing (its request ended, its response had) destroyed the upstream
 * stream the response came from (h2-relay.ts, destroySrc) while that stream's END_STREAM
 * was still queued, and node:http2 resets a client stream destroyed before its end went
 * out with RST_STREAM NO_ERROR in its place. An app that reads NO_ERROR as a reset (RFC
 * 9113 section 8.1 gives it no other meaning from a client; Envoy, Go) saw a whole upload
 * cut. A raw app here: node:http2's own server takes RST_STREAM NO_ERROR for an end.
 */
async function rawApp(): Promise<{ port: number; ends: Map<number, { endStream: boolean; reset?: number; bytes: number }>; close(): Promise<void> }> {
  const ends = new Map<number, { endStream: boolean; reset?: number; bytes: number }>();
  const server = createNetServer((s) => {
    s.on('error', () => undefined);
    let preface = false;
    let buf = Buffer.alloc(0);
    s.write(frame(FRAME.SETTINGS, 0, 0));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const type = buf[3];
        const flags = buf[4];
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        const p = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) s.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        else if (type === FRAME.PING && (flags & FLAG.ACK) === 0) s.write(frame(FRAME.PING, FLAG.ACK, 0, p));
        else if (type === FRAME.HEADERS) {
          ends.set(id, { endStream: false, bytes: 0 });
          // :status 200 (static table index 8) and a body: the whole response at once.
          s.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, Buffer.from([0x88])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('early'))]));
        } else if (type === FRAME.DATA) {
          const e = ends.get(id);
          if (e) {
            e.bytes += len;
            if ((flags & FLAG.END_STREAM) !== 0) e.endStream = true;
            // The window back, so the upload never waits on it.
            if (len > 0) s.write(Buffer.concat([frame(FRAME.WINDOW_UPDATE, 0, 0, word(len)), frame(FRAME.WINDOW_UPDATE, 0, id, word(len))]));
          }
        } else if (type === FRAME.RST_STREAM) {
          const e = ends.get(id);
          if (e) e.reset = p.readUInt32BE(0);
        }
      }
    });
  });
  const l = await listenOnLoopback(server);
  return { port: l.port, ends, close: () => l.close() };
}

describe.each([
  ['node', 'node'],
  ['node', 'frames'],
  ['frames', 'node'],
])('meshHttp2 h2, outboundHttp2 %s, appHttp2 %s', (outboundHttp2, appHttp2) => {
  test('an upload that ends after its complete response reaches the app with END_STREAM, not a reset', async () => {
    const app = await rawApp();
    const protocol = { meshHttp2: 'h2', outboundHttp2, appHttp2 };
    const server = await startProxy({ pki, serviceAccount: 'app', config: { protocol } });
    const client = await startProxy({ pki, serviceAccount: 'client', config: { protocol }, services: [meshService('app', 80, [{ appPort: app.port, proxy: server }], { protocol: 'http2' })] });
    const session = h2connect(`http://127.0.0.1:${client.outboundPort}`).on('error', () => undefined);
    try {
      const req = session.request({ ':method': 'POST', ':authority': 'app', ':path': '/' });
      req.on('error', () => undefined);
      req.write('first,');
      await new Promise<void>((r) => req.on('response', () => r()).resume().on('end', () => r()));
      await sleep(30);
      req.end('last');
      await new Promise((r) => req.on('close', r));
      expect(await until(() => [...app.ends.values()].some((e) => e.endStream || e.reset !== undefined), 5000)).toBe(true);
      const [seen] = [...app.ends.values()];
      expect(seen).toEqual({ endStream: true, bytes: 'first,last'.length });
    } finally {
      session.close();
      await client.close();
      await server.close();
      await app.close();
    }
  });
});
