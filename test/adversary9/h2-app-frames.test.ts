import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { createServer, type Socket } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { listenOnLoopback } from '../helpers/fake-app.js';
import { startPairFor } from '../helpers/pair-for-app.js';
import { FLAG, FRAME, FrameReader, frame, headerBlock } from '../helpers/h2-frames.js';

/**
 * The inbound's frame-level HTTP/2 client (protocol.appHttp2 frames, the default) against
 * apps that misbehave, end to end through a real sidecar pair, each compared with what
 * node:http2 (appHttp2 node) gives the caller.
 */
const pki = testPki();
const HOST = 'web.default.svc.cluster.local';
const MODES = ['frames', 'node'] as const;

interface Answer {
  readonly status?: number;
  readonly headers?: IncomingHttpHeaders;
  readonly body: string;
  /** The caller's stream failed (reset) instead of ending. */
  readonly error?: string;
}

function get(c: ClientHttp2Session, path: string, signal?: AbortSignal): Promise<Answer> {
  return new Promise((resolve) => {
    const r = c.request({ ':method': 'GET', ':path': path, ':authority': HOST }, { signal });
    let headers: IncomingHttpHeaders | undefined;
    let body = '';
    r.on('response', (h) => (headers = h));
    r.setEncoding('latin1');
    r.on('data', (d: string) => (body += d));
    r.on('error', (e: Error) => resolve({ status: Number(headers?.[':status']), headers, body, error: e.message }));
    r.on('end', () => resolve({ status: Number(headers?.[':status']), headers, body }));
  });
}

/** A raw h2c app that answers every request with `answer(streamId)` (frames written by hand). */
function rawH2App(answer: (id: number) => Buffer): import('node:net').Server {
  return createServer((socket: Socket) => {
    socket.on('error', () => undefined);
    let preface = 24;
    socket.write(frame(FRAME.SETTINGS, 0, 0));
    const reader = new FrameReader((type, flags, id) => {
      if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      if (type === FRAME.HEADERS) socket.write(answer(id));
    });
    socket.on('data', (d: Buffer) => {
      const n = Math.min(preface, d.length);
      preface -= n;
      if (d.length > n) reader.push(d.subarray(n));
    });
  });
}

describe.each(MODES)('appHttp2 %s', (mode) => {
  test('a body shorter than its content-length never reaches the caller as a complete response', async () => {
    const app = await listenOnLoopback(rawH2App((id) => Buffer.concat([
      frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['content-length', '100']])),
      frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('body')),
    ])));
    const pair = await startPairFor(pki, app, { serverConfig: { protocol: { appHttp2: mode } } });
    const c = h2connect(`http://127.0.0.1:${pair.client.outboundPort}`);
    c.on('error', () => undefined);
    try {
      const a = await get(c, '/');
      // A 502, or a stream cut before its end: not a 200 that ends cleanly with 4 bytes.
      expect(a.error !== undefined || a.status === 502).toBe(true);
    } finally {
      c.close();
      await pair.close();
    }
  }, 20_000);

  test('an app that resets its stream right after the head (one write) fails the caller\'s response instead of leaving it hanging', async () => {
    const code = Buffer.alloc(4);
    code.writeUInt32BE(2); // INTERNAL_ERROR
    const app = await listenOnLoopback(rawH2App((id) => Buffer.concat([
      frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200']])),
      frame(FRAME.DATA, 0, id, Buffer.from('partial')),
      frame(FRAME.RST_STREAM, 0, id, code),
    ])));
    const pair = await startPairFor(pki, app, { serverConfig: { protocol: { appHttp2: mode } } });
    const c = h2connect(`http://127.0.0.1:${pair.client.outboundPort}`);
    c.on('error', () => undefined);
    try {
      const a = await Promise.race([get(c, '/'), new Promise<Answer>((r) => setTimeout(() => r({ body: 'no answer in 5 s' }), 5000))]);
      expect(a.body).not.toBe('no answer in 5 s');
      expect(a.error !== undefined || a.status === 502).toBe(true);
    } finally {
      c.close();
      await pair.close();
    }
  }, 20_000);

  test('a caller that gives up while its request waits for the app\'s only stream slot leaves the other caller\'s request alone', async () => {
    const h2 = createH2cServer({ settings: { maxConcurrentStreams: 1 } });
    const started: string[] = [];
    const goaways: number[] = [];
    h2.on('session', (s) => s.on('goaway', (code) => goaways.push(code)));
    h2.on('stream', (st: ServerHttp2Stream, h) => {
      st.on('error', () => undefined);
      started.push(String(h[':path']));
      setTimeout(() => {
        if (st.destroyed) return;
        st.respond({ ':status': 200 });
        st.end(`done ${String(h[':path'])}`);
      }, 400);
    });
    const pair = await startPairFor(pki, await listenOnLoopback(h2), { serverConfig: { protocol: { appHttp2: mode } } });
    const first = h2connect(`http://127.0.0.1:${pair.client.outboundPort}`);
    const second = h2connect(`http://127.0.0.1:${pair.client.outboundPort}`);
    first.on('error', () => undefined);
    second.on('error', () => undefined);
    try {
      const slow = get(first, '/slow');
      const end = Date.now() + 5000;
      while (!started.includes('/slow') && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      // The app's SETTINGS (one stream) are known by now; this one waits for the slot.
      await new Promise((r) => setTimeout(r, 50));
      const ac = new AbortController();
      const queued = get(second, '/queued', ac.signal);
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      await queued;
      const a = await slow;
      expect([a.status, a.body, a.error]).toEqual([200, 'done /slow', undefined]);
      expect(started).toEqual(['/slow']);
      expect(goaways).toEqual([]);
    } finally {
      first.close();
      second.close();
      await pair.close();
    }
  }, 20_000);
});
