import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { H2ClientSession, wasRefusedByApp, type H2ClientSessionOptions } from './h2-client-session.js';
import { AppH2Client } from './app-h2-client.js';
import { ProxyError } from '../errors/proxy-error.js';
import { systemClock } from '../../common/clock.js';
import { silentLogger } from '../../common/logger.js';
import type { BodyStream, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import type { Headers } from '../http/headers.js';
import { jest } from '@jest/globals';
import { IdTable } from '../../common/id-table.js';
import { FLAG, FRAME, FrameReader, frame, headerBlock, settings, word } from '../../test/helpers/h2-frames.js';

/**
 * The frame-level HTTP/2 client against an app that breaks the rules: a raw TCP server
 * that writes HTTP/2 frames by hand (RFC 9113) and records what the client sends. The app
 * is untrusted: whatever it sends, the sidecar must not crash, hold unbounded memory,
 * hang other callers' requests, or deliver a response to the wrong caller.
 */
interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly id: number;
  readonly payload: Buffer;
}

interface RawConn {
  readonly socket: Socket;
  /** What the client sent; DATA frames without their payload (counted in dataBytes). */
  readonly frames: Frame[];
  readonly dataBytes: number;
  /** Calls `fn` with each frame from now on. */
  onFrame(fn: (f: Frame) => void): void;
  /** Resolves with the first frame (recorded or future) that matches. */
  next(pred: (f: Frame) => boolean, ms?: number): Promise<Frame>;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
const sessions: H2ClientSession[] = [];

afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

const SETTING_MAX_CONCURRENT_STREAMS = 0x3;
const SETTING_INITIAL_WINDOW_SIZE = 0x4;
const RST_CODE = { PROTOCOL_ERROR: 1, FLOW_CONTROL_ERROR: 3, STREAM_CLOSED: 5, CANCEL: 8, ENHANCE_YOUR_CALM: 0xb } as const;

/** A raw app that opens each connection with an empty SETTINGS frame, then hands it to `onConn`. */
const settingsApp = (onConn: (c: RawConn) => void): Promise<number> =>
  rawApp((c) => {
    onConn(c);
    c.socket.write(settings());
  });

/** A raw HTTP/2 "app": `onConn` gets each connection once the client's preface is read. */
async function rawApp(onConn: (c: RawConn) => void, allowHalfOpen = false): Promise<number> {
  const server = createServer({ allowHalfOpen }, (socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    const frames: Frame[] = [];
    const waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
    const listeners: ((f: Frame) => void)[] = [];
    const reader = new FrameReader((type, flags, id, payload) => {
      if (type === FRAME.DATA) conn.dataBytes += payload.length;
      const f = { type, flags, id, payload: type === FRAME.DATA ? Buffer.alloc(0) : Buffer.from(payload) };
      frames.push(f);
      for (const fn of listeners) fn(f);
      for (const w of [...waiters]) {
        if (!w.pred(f)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(f);
      }
    });
    let preface = 24;
    let started = false;
    const conn: RawConn & { dataBytes: number } = {
      socket,
      frames,
      dataBytes: 0,
      onFrame: (fn) => void listeners.push(fn),
      next: (pred, ms = 3000) =>
        new Promise<Frame>((resolve, reject) => {
          const seen = frames.find(pred);
          if (seen !== undefined) return resolve(seen);
          const t = setTimeout(() => reject(new Error('frame not seen in time')), ms);
          waiters.push({ pred, resolve: (f) => (clearTimeout(t), resolve(f)) });
        }),
    };
    socket.on('data', (d: Buffer) => {
      if (preface > 0) {
        const n = Math.min(preface, d.length);
        preface -= n;
        d = d.subarray(n);
      }
      if (preface === 0 && !started) {
        started = true;
        onConn(conn);
      }
      if (d.length > 0) reader.push(d);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

function session(port: number, over: Partial<H2ClientSessionOptions> = {}): H2ClientSession {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  const s = new H2ClientSession(socket, {
    streamWindowBytes: 64 * 1024, connectionWindowBytes: 1 << 20, maxHeaderListBytes: 16 * 1024, resetBudget: 0,
    onRetired: () => undefined, ...over,
  });
  sessions.push(s);
  return s;
}

function request(o: { method?: string; body?: Readable | null; signal?: AbortSignal; trailers?: Headers } = {}): ProxyRequest {
  return {
    method: o.method ?? 'GET', scheme: 'http', authority: 'app', path: '/', headers: {},
    body: o.body ?? null, trailers: () => o.trailers, origProto: 'HTTP/2', source: { address: '', port: 0, identity: '' },
    signal: o.signal ?? new AbortController().signal, startedAt: 0,
  };
}

async function readAll(res: ProxyResponse): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of res.body!) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const isHeaders = (id: number) => (f: Frame) => f.type === FRAME.HEADERS && f.id === id;

/** A literal field without indexing, new name (RFC 7541 section 6.2.2), of any length (section 5.1 integers; headerBlock's take up to 126 octets). */
function hpackLiteral(name: string, value: string): Buffer {
  const int = (n: number): number[] => {
    if (n < 127) return [n];
    const out = [127];
    for (n -= 127; n >= 128; n >>>= 7) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  return Buffer.concat([Buffer.from([0, ...int(name.length)]), Buffer.from(name, 'latin1'), Buffer.from(int(value.length)), Buffer.from(value, 'latin1')]);
}
const isSettingsAck = (f: Frame): boolean => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0;
const status200 = headerBlock([[':status', '200']]);

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A promise the test may leave pending when it fails early: its rejection at teardown is not the test's subject. */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a caller that gives up while its request waits for a stream slot does not reset stream 0 (killing everyone) nor stay queued', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.write(settings([SETTING_MAX_CONCURRENT_STREAMS, 1]));
  });
  const s = session(port);
  const first = quiet(s.request(request(), {}));
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  await conn.next(isSettingsAck);
  // The app allows one stream: these wait for its slot; their callers go away.
  const acs = Array.from({ length: 50 }, () => new AbortController());
  const queued = acs.map((ac) => s.request(request({ signal: ac.signal }), {}).catch((e: unknown) => e));
  for (const ac of acs) ac.abort();
  for (const e of await Promise.all(queued)) expect(String(e)).toMatch(/cancelled/);
  await tick(50);
  // RST_STREAM on stream 0 is a connection error for the app (RFC 9113 section 6.4): it would
  // have ended the first caller's stream too. A stream never opened needs no reset at all.
  expect(conn.frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => f.id)).toEqual([]);
  expect(s.active).toBe(1);
  conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('first'))]));
  expect((await readAll(await first)).toString()).toBe('first');
  expect(s.active).toBe(0);
  expect(s.destroyed).toBe(false);
});

test('SETTINGS raising SETTINGS_MAX_CONCURRENT_STREAMS starts the requests waiting for a slot', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.write(settings([SETTING_MAX_CONCURRENT_STREAMS, 1]));
  });
  const s = session(port);
  const first = quiet(s.request(request(), {}));
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  const second = quiet(s.request(request(), {}));
  await tick(20);
  expect(conn.frames.some(isHeaders(3))).toBe(false);
  // An app that starts with a low limit and raises it (RFC 9113 section 6.5.2): the waiting
  // request may go now, while the first is still open.
  conn.socket.write(settings([SETTING_MAX_CONCURRENT_STREAMS, 10]));
  await conn.next(isHeaders(3), 2000);
  conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200)]));
  expect((await second).status).toBe(200);
  expect((await first).status).toBe(200);
});

test('an upload to an app that opens huge windows and stops reading its socket holds bounded memory, then completes', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.write(Buffer.concat([settings([SETTING_INITIAL_WINDOW_SIZE, 0x7fffffff]), frame(FRAME.WINDOW_UPDATE, 0, 0, word(0x7fffffff - 65_535))]));
  });
  const total = 96 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 7);
  let pulled = 0;
  const body = new Readable({
    read() {
      if (pulled >= total) return void this.push(null);
      pulled += chunk.length;
      this.push(chunk);
    },
  });
  const s = session(port);
  const p = quiet(s.request(request({ method: 'POST', body }), {}));
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  conn.socket.pause();
  // Wait until the upload stalls (nothing more taken from the body for a while).
  let last = -1;
  while (pulled !== last) {
    last = pulled;
    await tick(300);
  }
  // Only what the kernel's socket buffers hold plus a bounded amount in user space.
  expect(s.socket.writableLength).toBeLessThan(1024 * 1024);
  expect(pulled).toBeLessThan(32 * 1024 * 1024);
  conn.socket.resume();
  await conn.next((f) => f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0, 20_000);
  expect(conn.dataBytes).toBe(total);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200));
  expect((await p).status).toBe(200);
});

test('a PING flood from an app that does not read our ACKs ends the session (ENHANCE_YOUR_CALM) instead of buffering every ACK', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  conn.socket.pause();
  const ping = frame(FRAME.PING, 0, 0, Buffer.alloc(8));
  const batch = Buffer.concat(Array.from({ length: 10_000 }, () => ping));
  // 1 000 000 PINGs (17 MB): each wants a 17-byte ACK the app never reads.
  for (let i = 0; i < 100 && !conn.socket.destroyed; i++) {
    if (!conn.socket.write(batch)) await Promise.race([new Promise((r) => conn.socket.once('drain', r)), new Promise((r) => conn.socket.once('close', r))]);
  }
  await until(() => s.destroyed || s.socket.writableLength > 4 * 1024 * 1024, 10_000);
  expect(s.socket.writableLength).toBeLessThan(4 * 1024 * 1024);
  expect(s.destroyed).toBe(true);
  expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/ACKs unread/) });
});

test('an app that PINGs a lot but reads our ACKs keeps its session (the bound counts unread ACKs, not all of them)', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = quiet(s.request(request(), {}));
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  const batch = Buffer.concat(Array.from({ length: 500 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8))));
  const acks = (): number => conn.frames.filter((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0).length;
  for (let i = 1; i <= 10; i++) {
    conn.socket.write(batch);
    await until(() => acks() === 500 * i);
  }
  expect(s.destroyed).toBe(false);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200));
  expect((await p).status).toBe(200);
});

test('a SETTINGS flood from an app that does not read our ACKs ends the session too', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
  });
  const s = session(port);
  const p = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  conn.socket.pause();
  const batch = Buffer.concat(Array.from({ length: 10_000 }, () => settings()));
  for (let i = 0; i < 200 && !conn.socket.destroyed; i++) {
    if (!conn.socket.write(batch)) await Promise.race([new Promise((r) => conn.socket.once('drain', r)), new Promise((r) => conn.socket.once('close', r))]);
  }
  await until(() => s.destroyed || s.socket.writableLength > 4 * 1024 * 1024, 10_000);
  expect(s.destroyed).toBe(true);
  expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/ACKs unread/) });
});

test('a flood of empty CONTINUATION frames (CVE-2024-27316 style) is a connection error, not an ever-growing header block', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(frame(FRAME.HEADERS, 0, 1, status200.subarray(0, 2)));
  const empty = frame(FRAME.CONTINUATION, 0, 1);
  const batch = Buffer.concat(Array.from({ length: 10_000 }, () => empty));
  for (let i = 0; i < 100 && !conn.socket.destroyed && !s.destroyed; i++) {
    if (!conn.socket.write(batch)) await Promise.race([new Promise((r) => conn.socket.once('drain', r)), new Promise((r) => conn.socket.once('close', r))]);
  }
  await until(() => s.destroyed, 3000);
  expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/CONTINUATION/) });
});

/** Writes `batch` until the session is gone (or `rounds` batches), waiting for the socket's drain: the app does not read. */
async function flood(conn: RawConn, s: H2ClientSession, batch: Buffer, rounds: number): Promise<void> {
  for (let i = 0; i < rounds && !conn.socket.destroyed && !s.destroyed; i++) {
    if (!conn.socket.write(batch)) await Promise.race([new Promise((r) => conn.socket.once('drain', r)), new Promise((r) => conn.socket.once('close', r))]);
  }
}

describe("the flood guards are counted (wren_limit_exceeded_total{direction=\"inbound\"}), named as the frame-level server's", () => {
  test('unread PING ACKs with no request in flight: h2-unread-control-frames', async () => {
    let conn!: RawConn;
    const port = await settingsApp((c) => (conn = c));
    const limits: string[] = [];
    const s = session(port, { onLimit: (l) => void limits.push(l) });
    await until(() => conn !== undefined);
    await conn.next(isSettingsAck);
    conn.socket.pause();
    await flood(conn, s, Buffer.concat(Array.from({ length: 10_000 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8)))), 100);
    await until(() => s.destroyed, 10_000);
    expect(limits).toEqual(['h2-unread-control-frames']);
  });

  test('a SETTINGS frame of more than 32 entries (each INITIAL_WINDOW_SIZE walks every stream): h2-settings-flood, the call fails', async () => {
    const { conn, s, p, limits } = await requestSent();
    conn.socket.write(settings(...Array.from({ length: 33 }, (): [number, number] => [SETTING_INITIAL_WINDOW_SIZE, 65_535])));
    await until(() => s.destroyed, 5000);
    expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/33 entries/) });
    expect(limits).toEqual(['h2-settings-flood']);
    // 32 are taken: the frame-level server's bound, node:http2's maxSettings.
    const ok = await requestSent();
    ok.conn.socket.write(settings(...Array.from({ length: 32 }, (): [number, number] => [SETTING_INITIAL_WINDOW_SIZE, 65_535])));
    await new Promise((r) => setTimeout(r, 100));
    expect(ok.s.destroyed).toBe(false);
    expect(ok.limits).toEqual([]);
  });

  test("32 SETTINGS_INITIAL_WINDOW_SIZE entries walk the open streams once, not once an entry (the frame-level server's fix, adv14 lead)", async () => {
    const { conn, s } = await requestSent();
    const walks = jest.spyOn(IdTable.prototype, 'values');
    try {
      conn.socket.write(settings(...Array.from({ length: 32 }, (_, i): [number, number] => [SETTING_INITIAL_WINDOW_SIZE, 70_000 + i])));
      await new Promise((r) => setTimeout(r, 100));
      expect(walks.mock.calls.length).toBe(1);
    } finally {
      walks.mockRestore();
    }
    expect(s.destroyed).toBe(false);
  });

  test('unread SETTINGS ACKs: h2-unread-control-frames', async () => {
    let conn!: RawConn;
    const port = await rawApp((c) => (conn = c));
    const limits: string[] = [];
    const s = session(port, { onLimit: (l) => void limits.push(l) });
    await until(() => conn !== undefined);
    conn.socket.pause();
    await flood(conn, s, Buffer.concat(Array.from({ length: 10_000 }, () => settings())), 200);
    await until(() => s.destroyed, 10_000);
    expect(limits).toEqual(['h2-unread-control-frames']);
  });

  /** A session counting its limits, with one request whose HEADERS the raw app has read. */
  async function requestSent(): Promise<{ conn: RawConn; s: ReturnType<typeof session>; p: Promise<unknown>; limits: string[] }> {
    let conn!: RawConn;
    const port = await settingsApp((c) => (conn = c));
    const limits: string[] = [];
    const s = session(port, { onLimit: (l) => void limits.push(l) });
    const p = s.request(request(), {}).catch((e: unknown) => e);
    await until(() => conn !== undefined);
    await conn.next(isHeaders(1));
    return { conn, s, p, limits };
  }

  test('a header block in empty CONTINUATION frames: h2-continuation-flood', async () => {
    const { conn, s, p, limits } = await requestSent();
    conn.socket.write(frame(FRAME.HEADERS, 0, 1, status200.subarray(0, 2)));
    await flood(conn, s, Buffer.concat(Array.from({ length: 1000 }, () => frame(FRAME.CONTINUATION, 0, 1))), 100);
    await until(() => s.destroyed, 5000);
    expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/CONTINUATION/) });
    expect(limits).toEqual(['h2-continuation-flood']);
  });

  test('a header block in more full CONTINUATION frames than it may take: h2-continuation-flood', async () => {
    // maxHeaderListBytes 16 KiB: a block may take the frames 2 x 16 KiB needs and 8 more, 11 CONTINUATIONs.
    const { conn, s, p, limits } = await requestSent();
    const full = Buffer.alloc(16_384, 0x80);
    conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, 0, 1, full), ...Array.from({ length: 12 }, () => frame(FRAME.CONTINUATION, 0, 1, full))]));
    await until(() => s.destroyed, 5000);
    expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/too many CONTINUATION frames/) });
    expect(limits).toEqual(['h2-continuation-flood']);
  });

  // Found by review (adv23): a response header block of more than 2 x maxHeaderListBytes +
  // 16 KiB octets was taken for a flood and ended the app session, failing every call on it.
  // An oversize header list is its stream's error (RFC 9113 section 10.5.1), as nghttp2 (the
  // node:http2 client, appHttp2 node) takes it: that call fails, the others go on.
  test('a response header block over the limit in a few full frames fails only its call; another call on the session is answered', async () => {
    let conn!: RawConn;
    const port = await settingsApp((c) => (conn = c));
    const limits: string[] = [];
    const s = session(port, { onLimit: (l) => void limits.push(l) });
    const big = s.request(request(), {}).catch((e: unknown) => e);
    const other = s.request(request(), {});
    await until(() => conn !== undefined);
    await conn.next(isHeaders(3));
    // 60 KB of fields (the list may take 16 KiB) in HEADERS and three CONTINUATIONs: over 2 x 16 KiB + 16 KiB.
    const block = Buffer.concat([status200, hpackLiteral('x-big', 'a'.repeat(60_000))]);
    const parts = [0, 1, 2, 3].map((i) => block.subarray(i * 16_384, (i + 1) * 16_384));
    conn.socket.write(Buffer.concat(parts.map((b, i) => frame(i === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (i === 0 ? FLAG.END_STREAM : 0) | (i === 3 ? FLAG.END_HEADERS : 0), 1, b))));
    expect(await big).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/response headers over/) });
    conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, status200), frame(FRAME.DATA, FLAG.END_STREAM, 3, Buffer.from('ok'))]));
    expect((await readAll(await other)).toString()).toBe('ok');
    expect(s.destroyed).toBe(false);
    expect(limits).toEqual([]);
  });

  test('empty DATA frames in a row (CVE-2019-9518): h2-empty-frames-flood at the second, as Envoy; one between frames with data is delivered', async () => {
    const one = await requestSent();
    one.conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), frame(FRAME.DATA, 0, 1, Buffer.from('a')), frame(FRAME.DATA, 0, 1), frame(FRAME.DATA, 0, 1, Buffer.from('b')), frame(FRAME.DATA, FLAG.END_STREAM, 1)]));
    expect((await readAll((await one.p) as ProxyResponse)).toString()).toBe('ab');
    expect(one.limits).toEqual([]);
    const { conn, s, p, limits } = await requestSent();
    conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), frame(FRAME.DATA, 0, 1), frame(FRAME.DATA, 0x8, 1, Buffer.from([1, 0]))]));
    await until(() => s.destroyed, 5000);
    await expect(readAll((await p) as ProxyResponse)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
    expect(limits).toEqual(['h2-empty-frames-flood']);
  });

  test('AppH2Client hands its onLimit to the sessions it opens', async () => {
    let conn!: RawConn;
    const port = await settingsApp((c) => (conn = c));
    const limits: string[] = [];
    const client = new AppH2Client({
      address: '127.0.0.1', clock: systemClock, logger: silentLogger, connectTimeoutMs: 1000, streamWindowBytes: 65_536, connectionWindowBytes: 1 << 20, maxHeaderListBytes: 16_384, resetBudget: 0,
      onLimit: (l) => void limits.push(l),
    });
    try {
      const p = client.request(port, request(), {}).catch((e: unknown) => e);
      await until(() => conn !== undefined);
      await conn.next(isSettingsAck);
      conn.socket.pause();
      const batch = Buffer.concat(Array.from({ length: 10_000 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8))));
      for (let i = 0; i < 100 && !conn.socket.destroyed && limits.length === 0; i++) {
        if (!conn.socket.write(batch)) await Promise.race([new Promise((r) => conn.socket.once('drain', r)), new Promise((r) => conn.socket.once('close', r))]);
      }
      expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/ACKs unread/) });
      expect(limits).toEqual(['h2-unread-control-frames']);
    } finally {
      client.close(0);
    }
  });
});

test('a response head in HEADERS and 8 small CONTINUATION frames (what nghttp2 accepts) is delivered', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = s.request(request(), {});
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  const block = headerBlock([[':status', '200'], ...Array.from({ length: 9 }, (_, i): [string, string] => [`x-${i}`, 'v'.repeat(100)])]);
  const step = Math.ceil(block.length / 9);
  const parts = Array.from({ length: 9 }, (_, i) => block.subarray(i * step, (i + 1) * step));
  conn.socket.write(Buffer.concat(parts.map((b, i) => frame(i === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (i === 0 ? FLAG.END_STREAM : 0) | (i === 8 ? FLAG.END_HEADERS : 0), 1, b))));
  const res = await p;
  expect(res.status).toBe(200);
  expect(res.headers['x-8']).toBe('v'.repeat(100));
});

test('a response read to its end while the request is still uploading does not cut the upload (node:http2 neither)', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const upload = new PassThrough();
  upload.write('part1');
  const p = s.request(request({ method: 'POST', body: upload }), {});
  await until(() => conn !== undefined);
  await conn.next((f) => f.type === FRAME.DATA && f.id === 1);
  // A complete response before the whole request (RFC 9113 section 8.1): the client goes on
  // sending unless the server resets the stream with NO_ERROR.
  conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('accepted'))]));
  const res = await p;
  expect((await readAll(res)).toString()).toBe('accepted');
  await tick(20);
  upload.end('part2');
  await conn.next((f) => f.type === FRAME.DATA && f.id === 1 && (f.flags & FLAG.END_STREAM) !== 0);
  expect(conn.dataBytes).toBe(10);
  expect(conn.frames.filter((f) => f.type === FRAME.RST_STREAM)).toEqual([]);
  await until(() => s.active === 0);
});

test('HEADERS after the response ended (request still uploading) change nothing: STREAM_CLOSED, the trailers stay as they were', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const upload = new PassThrough();
  upload.write('part');
  const res = await (async () => {
    const p = s.request(request({ method: 'POST', body: upload }), {});
    await until(() => conn !== undefined);
    await conn.next((f) => f.type === FRAME.DATA && f.id === 1);
    conn.socket.write(Buffer.concat([
      frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200),
      frame(FRAME.DATA, 0, 1, Buffer.from('body')),
      frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([['grpc-status', '0']])),
    ]));
    return p;
  })();
  expect((await readAll(res)).toString()).toBe('body');
  expect(res.trailers()).toEqual({ 'grpc-status': '0' });
  // Half-closed (remote): more HEADERS are a stream error STREAM_CLOSED (RFC 9113 section 5.1).
  const forged = frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([['grpc-status', '13'], ['grpc-message', 'forged']]));
  // The PING's ACK says the client has taken the forged HEADERS.
  conn.socket.write(Buffer.concat([forged, frame(FRAME.PING, 0, 0, Buffer.alloc(8, 1))]));
  await conn.next((f) => f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0);
  expect(res.trailers()).toEqual({ 'grpc-status': '0' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.STREAM_CLOSED);
  expect(res.body!.errored).toBeNull();
  expect(s.active).toBe(0);
  expect(s.destroyed).toBe(false);
});

test('a response on a stream we never opened is a connection error: the waiting caller fails, it never gets that response', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200));
  expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const goaway = await conn.next((f) => f.type === FRAME.GOAWAY);
  expect(goaway.payload.readUInt32BE(4)).toBe(RST_CODE.PROTOCOL_ERROR);
});

test('a caller that gives up while the response head is half received: the rest of the block is decoded and dropped, the session goes on', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const ac = new AbortController();
  const p = s.request(request({ signal: ac.signal }), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  const block = headerBlock([[':status', '200'], ['x-a', 'b']]);
  conn.socket.write(frame(FRAME.HEADERS, 0, 1, block.subarray(0, 5)));
  await tick(20);
  ac.abort();
  expect(String(await p)).toMatch(/cancelled/);
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.CANCEL);
  conn.socket.write(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(5)));
  const next = s.request(request(), {});
  await conn.next(isHeaders(3));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200));
  expect((await next).status).toBe(200);
  expect(s.destroyed).toBe(false);
});

test('a session retired by GOAWAY closes its socket once its last stream ends, even when the app never closes its side', async () => {
  let conn!: RawConn;
  let connections = 0;
  // allowHalfOpen: the app's socket stays open after our FIN (what a careless or hostile app does).
  const port = await rawApp((c) => {
    conn = c;
    connections++;
    c.socket.write(settings());
  }, true);
  const s = session(port);
  const p = s.request(request(), {});
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(Buffer.concat([frame(FRAME.GOAWAY, 0, 0, Buffer.concat([word(1), word(0)])), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200)]));
  expect((await p).status).toBe(200);
  await conn.next((f) => f.type === FRAME.GOAWAY);
  // node:http2's session.close() destroys the socket once the streams are done; a half-closed
  // one kept by the app would hold a descriptor per GOAWAY for good.
  await until(() => s.socket.destroyed, 2000);
  expect(connections).toBe(1);
});

test('an upload never exceeds the windows while the app shrinks SETTINGS_INITIAL_WINDOW_SIZE mid-stream (negative windows, RFC 9113 section 6.9.2)', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.write(settings([SETTING_INITIAL_WINDOW_SIZE, 16_384]));
  });
  const s = session(port);
  const total = 200 * 1024;
  const body = Readable.from(Array.from({ length: 50 }, () => Buffer.alloc(4096, 1)));
  // The app's SETTINGS taken first: until then the window is 65 535 (section 6.5.3).
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  const p = quiet(s.request(request({ method: 'POST', body }), {}));
  const settle = async (): Promise<number> => {
    let last = -1;
    while (conn.dataBytes !== last) {
      last = conn.dataBytes;
      await tick(100);
    }
    return last;
  };
  expect(await settle()).toBe(16_384);
  // 16 384 sent of 16 384: shrinking to 0 makes the window -16 384; 10 000 back is still -6 384.
  conn.socket.write(Buffer.concat([settings([SETTING_INITIAL_WINDOW_SIZE, 0]), frame(FRAME.WINDOW_UPDATE, 0, 1, word(10_000))]));
  expect(await settle()).toBe(16_384);
  conn.socket.write(frame(FRAME.WINDOW_UPDATE, 0, 1, word(16_384)));
  expect(await settle()).toBe(16_384 + 10_000);
  // The connection window (65 535) is what holds now.
  conn.socket.write(settings([SETTING_INITIAL_WINDOW_SIZE, 0x7fffffff - 26_384 - 1]));
  expect(await settle()).toBe(65_535);
  conn.socket.write(frame(FRAME.WINDOW_UPDATE, 0, 0, word(1 << 20)));
  await conn.next((f) => f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0);
  expect(conn.dataBytes).toBe(total);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200));
  expect((await p).status).toBe(200);
});

test('SETTINGS_INITIAL_WINDOW_SIZE that takes an open stream\'s window past 2^31-1 is a connection error FLOW_CONTROL_ERROR (RFC 9113 section 6.9.2)', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const upload = new PassThrough();
  const p = s.request(request({ method: 'POST', body: upload }), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(Buffer.concat([frame(FRAME.WINDOW_UPDATE, 0, 1, word(0x7fffffff - 65_535)), settings([SETTING_INITIAL_WINDOW_SIZE, 65_536])]));
  const goaway = await conn.next((f) => f.type === FRAME.GOAWAY);
  expect(goaway.payload.readUInt32BE(4)).toBe(RST_CODE.FLOW_CONTROL_ERROR);
  expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
});

test('WINDOW_UPDATE past 2^31-1: on a stream it resets that stream only, on the connection it ends the session', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const a = s.request(request({ method: 'POST', body: new PassThrough() }), {}).catch((e: unknown) => e);
  const b = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(3));
  conn.socket.write(frame(FRAME.WINDOW_UPDATE, 0, 1, word(0x7fffffff)));
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.FLOW_CONTROL_ERROR);
  expect(await a).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  expect(s.destroyed).toBe(false);
  conn.socket.write(frame(FRAME.WINDOW_UPDATE, 0, 0, word(0x7fffffff)));
  const goaway = await conn.next((f) => f.type === FRAME.GOAWAY);
  expect(goaway.payload.readUInt32BE(4)).toBe(RST_CODE.FLOW_CONTROL_ERROR);
  expect(await b).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
});

/** One response to one request on a fresh raw app: `frames` are written once the request's HEADERS arrive. */
async function answer(method: string, frames: (id: number) => Buffer): Promise<{ res: Promise<ProxyResponse>; conn: RawConn }> {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const res = quiet(s.request(request({ method }), {}));
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(frames(1));
  return { res, conn };
}

test('a body shorter than its content-length is never delivered as complete (RFC 9113 section 8.1.1: malformed)', async () => {
  const { res, conn } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['content-length', '100']])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('body'))]));
  const r = await res.catch((e: unknown) => e);
  // Either the head is refused or its body fails: never a clean end after 4 of 100 bytes.
  if ('status' in (r as object)) await expect(readAll(r as ProxyResponse)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  else expect(r).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
});

test('a body longer than its content-length fails at the first byte too many', async () => {
  const { res } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['content-length', '2']])), frame(FRAME.DATA, 0, id, Buffer.from('body'))]));
  const r = await res.catch((e: unknown) => e);
  if ('status' in (r as object)) await expect(readAll(r as ProxyResponse)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  else expect(r).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
});

test('a head-only response with content-length 100 is malformed, but not for HEAD nor 304 (RFC 9110 sections 8.6, 15.4.5)', async () => {
  const head100 = (status: string) => (id: number) => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([[':status', status], ['content-length', '100']]));
  await expect((await answer('GET', head100('200'))).res).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const forHead = await (await answer('HEAD', head100('200'))).res;
  expect([forHead.status, forHead.headers['content-length']]).toEqual([200, '100']);
  expect((await (await answer('GET', head100('304'))).res).status).toBe(304);
});

test('a body as long as its content-length, with trailers, is delivered whole', async () => {
  const { res } = await answer('POST', (id) => Buffer.concat([
    frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['content-length', '8']])),
    frame(FRAME.DATA, 0, id, Buffer.from('bo')),
    frame(FRAME.DATA, 0, id, Buffer.from('dy..')),
    frame(FRAME.DATA, 0, id, Buffer.from('ok')),
    frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([['x-t', '1']])),
  ]));
  const r = await res;
  expect((await readAll(r)).toString()).toBe('body..ok');
  expect(r.trailers()).toEqual({ 'x-t': '1' });
});

test('a response field name with uppercase letters is malformed (RFC 9113 section 8.2.1): Content-Length cannot slip past the length check', async () => {
  const { res, conn } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['Content-Length', '100']])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('body'))]));
  await expect(res).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
  const trailers = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, status200), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([['Grpc-Status', '0']]))]));
  await expect(readAll(await trailers.res)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
});

test.each(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te'])('a response or trailers with the connection-specific field %s are malformed (RFC 9113 section 8.2.2), as nghttp2 makes them: never passed on without it', async (name) => {
  const value = name === 'te' ? 'gzip' : 'close';
  const { res, conn } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], [name, value]])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('body'))]));
  await expect(res).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
  const trailers = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, status200), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([[name, value]]))]));
  await expect(readAll(await trailers.res)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
});

test.each([['HEAD', '200'], ['GET', '204'], ['GET', '304']])('DATA with content on a response to %s with status %s is malformed (RFC 9110 section 6.4.1), as nghttp2 takes it; empty DATA with END_STREAM is not', async (method, status) => {
  const { res, conn } = await answer(method, (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', status], ['content-length', '5']].slice(0, status === '204' ? 1 : 2) as [string, string][])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('hello'))]));
  const r = await res.catch((e: unknown) => e);
  if ('status' in (r as object)) await expect(readAll(r as ProxyResponse)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  else expect(r).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
  const empty = await answer(method, (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', status]])), frame(FRAME.DATA, FLAG.END_STREAM, id)]));
  const ok = await empty.res;
  expect([ok.status, (await readAll(ok)).length]).toEqual([Number(status), 0]);
});

test('te: trailers in a response is no connection-specific field', async () => {
  const { res } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['te', 'trailers']])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('body'))]));
  expect((await readAll(await res)).toString()).toBe('body');
});

/** What a writer that attaches its listeners late sees (h2-relay.ts, write-response.ts): 'end', 'error', or nothing at all. */
function outcome(body: BodyStream): Promise<string> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('nothing'), 1000);
    body.on('data', () => undefined);
    body.on('end', () => (clearTimeout(t), resolve('end')));
    body.on('error', () => (clearTimeout(t), resolve('error')));
  });
}

test('a response reset in the same read as its head fails for a reader that attaches later (it never just goes silent)', async () => {
  const rst = Buffer.alloc(4);
  rst.writeUInt32BE(2);
  const { res } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, status200), frame(FRAME.DATA, 0, id, Buffer.from('part')), frame(FRAME.RST_STREAM, 0, id, rst)]));
  const r = await res;
  await tick(20);
  expect(await outcome(r.body!)).toBe('error');
});

test('a body cut short of its content-length in the same read as its head fails for a reader that attaches later', async () => {
  const { res } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', '200'], ['content-length', '100']])), frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('body'))]));
  const r = await res;
  await tick(20);
  expect(await outcome(r.body!)).toBe('error');
});

test('RST_STREAM NO_ERROR after a complete response (stop sending, RFC 9113 section 8.1) does not spend the reset budget, as for appHttp2 node', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  let spent = 0;
  const s = session(port, { resetBudget: 3, onResetBudget: () => spent++ });
  for (let i = 0; i < 5; i++) {
    const id = 1 + 2 * i;
    const upload = new PassThrough();
    upload.write('x');
    const p = s.request(request({ method: 'POST', body: upload }), {});
    await until(() => conn !== undefined);
    await conn.next(isHeaders(id));
    conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([[':status', '413']])), frame(FRAME.RST_STREAM, 0, id, word(0))]));
    expect((await p).status).toBe(413);
  }
  await until(() => s.active === 0);
  expect(spent).toBe(0);
  expect(s.retired).toBe(false);
});

/** The connection error the client answers `bad` with (GOAWAY's code), and what its caller gets. */
async function connectionErrorFor(bad: (id: number) => Buffer): Promise<{ code: number; err: unknown }> {
  const { res, conn } = await answer('GET', bad);
  const err = await res.catch((e: unknown) => e);
  const goaway = await conn.next((f) => f.type === FRAME.GOAWAY);
  return { code: goaway.payload.readUInt32BE(4), err };
}

test.each([
  ['SETTINGS_ENABLE_PUSH 1 from a server (section 6.5.2)', () => settings([0x2, 1]), RST_CODE.PROTOCOL_ERROR],
  ['PUSH_PROMISE with push disabled (section 8.4)', (id: number) => frame(0x5, FLAG.END_HEADERS, id, Buffer.concat([word(2), status200])), RST_CODE.PROTOCOL_ERROR],
  ['a frame over 16 384 bytes (section 4.2)', (id: number) => frame(FRAME.DATA, 0, id, Buffer.alloc(16_385)), 0x6],
  ['DATA on stream 0', () => frame(FRAME.DATA, 0, 0, Buffer.from('x')), RST_CODE.PROTOCOL_ERROR],
  ['HEADERS on an even stream', () => frame(FRAME.HEADERS, FLAG.END_HEADERS, 2, status200), RST_CODE.PROTOCOL_ERROR],
  ['DATA with padding longer than the frame (section 6.1)', (id: number) => frame(FRAME.DATA, 0x8, id, Buffer.from([5, 1, 2])), RST_CODE.PROTOCOL_ERROR],
  ['a header block interrupted by another frame (section 4.3)', (id: number) => Buffer.concat([frame(FRAME.HEADERS, 0, id, status200), frame(FRAME.PING, 0, 0, Buffer.alloc(8))]), RST_CODE.PROTOCOL_ERROR],
  ['a header block that HPACK cannot decode (RFC 7541 section 2.3.3: index 0)', (id: number) => frame(FRAME.HEADERS, FLAG.END_HEADERS, id, Buffer.from([0x80])), 0x9],
  ['DATA on a stream we never opened', () => frame(FRAME.DATA, 0, 99, Buffer.alloc(10)), RST_CODE.PROTOCOL_ERROR],
])('%s is a connection error; the caller fails', async (_name, bad, code) => {
  const r = await connectionErrorFor(bad);
  expect(r.code).toBe(code);
  expect(r.err).toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
});

test('DATA past the stream window resets that stream (FLOW_CONTROL_ERROR); the session serves the next request', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port, { streamWindowBytes: 1000 });
  const p = s.request(request(), {});
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), frame(FRAME.DATA, 0, 1, Buffer.alloc(1001))]));
  const res = await p;
  await expect(readAll(res)).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.FLOW_CONTROL_ERROR);
  const next = s.request(request(), {});
  await conn.next(isHeaders(3));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200));
  expect((await next).status).toBe(200);
});

test('an HPACK bomb (one 4 KB entry referenced 1 000 times in a 5 KB block) fails its stream only, within the header list limit', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = s.request(request(), {});
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  // :status 200 (index 8), a literal with incremental indexing, new name "x-b", a 4 000-byte
  // value (its length a 7-bit prefix integer, RFC 7541 sections 6.2.1, 5.1), then index 62 x 1000.
  const value = Buffer.alloc(4000, 0x61);
  const len = Buffer.from([0x7f, (4000 - 127) % 128 | 0x80, Math.floor((4000 - 127) / 128)]);
  const block = Buffer.concat([Buffer.from([0x88, 0x40, 3]), Buffer.from('x-b'), len, value, Buffer.alloc(1000, 0xbe)]);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, block));
  await expect(p).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const next = s.request(request(), {});
  await conn.next(isHeaders(3));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, Buffer.from([0x88, 0xbe])));
  const res = await next;
  // The table stayed in step with the app's encoder: index 62 is still its x-b entry.
  expect([res.status, res.headers['x-b']]).toEqual([200, value.toString()]);
});

test('an app that closes the connection mid-frame: the answered response fails (never a clean end), the waiting one rejects', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const a = s.request(request(), {});
  const b = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(3));
  const data = frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.alloc(1000));
  conn.socket.end(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), data.subarray(0, 500)]));
  const res = await a;
  await expect(readAll(res)).rejects.toMatchObject({ code: 'UPSTREAM_RESET' });
  expect(await b).toMatchObject({ code: 'UPSTREAM_RESET' });
});

test('a trailers-only response (gRPC status in the head, END_STREAM) has no body and its fields', async () => {
  const { res } = await answer('POST', (id) => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '5']])));
  const r = await res;
  expect([r.status, r.body, r.headers['grpc-status']]).toEqual([200, null, '5']);
});

test('a caller that gives up while its upload waits for window: RST_STREAM CANCEL, the body left paused, the session goes on', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.write(settings([SETTING_INITIAL_WINDOW_SIZE, 1000]));
  });
  const s = session(port);
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  const upload = new PassThrough();
  upload.write(Buffer.alloc(5000));
  const ac = new AbortController();
  const p = s.request(request({ method: 'POST', body: upload, signal: ac.signal }), {}).catch((e: unknown) => e);
  await conn.next((f) => f.type === FRAME.DATA && f.id === 1);
  await tick(20);
  expect(conn.dataBytes).toBe(1000);
  ac.abort();
  expect(String(await p)).toMatch(/cancelled/);
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.CANCEL);
  expect(upload.isPaused()).toBe(true);
  // Window for the gone stream changes nothing; no more of its bytes go out.
  conn.socket.write(frame(FRAME.WINDOW_UPDATE, 0, 1, word(100_000)));
  const next = s.request(request(), {});
  await conn.next(isHeaders(3));
  expect(conn.dataBytes).toBe(1000);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200));
  expect((await next).status).toBe(200);
  expect(s.active).toBe(0);
});

test('2 000 requests at once over an app that allows one stream: one open at a time, all answered, each with its own answer', async () => {
  let conn!: RawConn;
  let open = 0;
  let most = 0;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.write(settings([SETTING_MAX_CONCURRENT_STREAMS, 1]));
    const answerEach = (f: Frame): void => {
      if (f.type !== FRAME.HEADERS) return;
      most = Math.max(most, ++open);
      // Answered later, on its own stream, with its stream id as the body.
      setImmediate(() => {
        open--;
        c.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, f.id, status200), frame(FRAME.DATA, FLAG.END_STREAM, f.id, Buffer.from(String(f.id)))]));
      });
    };
    c.onFrame(answerEach);
  });
  const s = session(port);
  await until(() => conn !== undefined);
  await conn.next(isSettingsAck);
  const bodies = await Promise.all(Array.from({ length: 2000 }, () => s.request(request(), {}).then(readAll)));
  expect(bodies.map(String)).toEqual(Array.from({ length: 2000 }, (_, i) => String(1 + 2 * i)));
  expect(most).toBe(1);
  expect(s.active).toBe(0);
}, 60_000);

test('GOAWAY twice, the second lowering the last stream id: streams above it are refused and sent again on a new connection', async () => {
  const conns: RawConn[] = [];
  const port = await rawApp((c) => {
    conns.push(c);
    c.socket.write(settings());
  });
  const client = new AppH2Client({ address: '127.0.0.1', clock: systemClock, logger: silentLogger, connectTimeoutMs: 1000, streamWindowBytes: 65_536, connectionWindowBytes: 1 << 20, maxHeaderListBytes: 16_384, resetBudget: 0 });
  try {
    const all = [1, 2, 3].map(() => client.request(port, request(), {}));
    await until(() => conns.length === 1);
    const first = conns[0];
    await first.next(isHeaders(5));
    // Last stream id 2^31-1 (an app about to stop), then 1: streams 3 and 5 were never processed (RFC 9113 section 6.8).
    first.socket.write(Buffer.concat([frame(FRAME.GOAWAY, 0, 0, Buffer.concat([word(0x7fffffff), word(0)])), frame(FRAME.GOAWAY, 0, 0, Buffer.concat([word(1), word(0)]))]));
    first.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([[':status', '201']])));
    await until(() => conns.length === 2);
    const second = conns[1];
    await second.next(isHeaders(3));
    second.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([[':status', '202']])), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, headerBlock([[':status', '203']]))]));
    expect((await Promise.all(all)).map((r) => r.status).sort()).toEqual([201, 202, 203]);
    expect(first.frames.filter((f) => f.type === FRAME.HEADERS).map((f) => f.id)).toEqual([1, 3, 5]);
  } finally {
    client.close(0);
  }
});

test('a response on a stream its caller cancelled is dropped: the next caller gets only its own response', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const ac = new AbortController();
  const a = s.request(request({ signal: ac.signal }), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  ac.abort();
  await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  const b = s.request(request(), {});
  await conn.next(isHeaders(3));
  conn.socket.write(Buffer.concat([
    frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([[':status', '200'], ['x-for', 'a']])),
    frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('for a')),
    frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, headerBlock([[':status', '200'], ['x-for', 'b']])),
    frame(FRAME.DATA, FLAG.END_STREAM, 3, Buffer.from('for b')),
  ]));
  const res = await b;
  expect([res.headers['x-for'], (await readAll(res)).toString()]).toEqual(['b', 'for b']);
  expect(String(await a)).toMatch(/cancelled/);
  expect(s.destroyed).toBe(false);
});

test('an app that never sends SETTINGS still gets requests (RFC 9113 section 3.4 lets a client start at once) and answers them', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
  });
  const s = session(port);
  const p = s.request(request({ method: 'POST', body: Readable.from([Buffer.alloc(70_000, 1)]) }), {});
  await until(() => conn !== undefined);
  // The default window (65 535) holds the upload until the app gives more.
  await conn.next((f) => f.type === FRAME.DATA);
  await tick(50);
  expect(conn.dataBytes).toBe(65_535);
  conn.socket.write(Buffer.concat([frame(FRAME.WINDOW_UPDATE, 0, 0, word(10_000)), frame(FRAME.WINDOW_UPDATE, 0, 1, word(10_000))]));
  await conn.next((f) => f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0);
  expect(conn.dataBytes).toBe(70_000);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200));
  expect((await p).status).toBe(200);
});

test('response fields named like Object.prototype members (constructor, __proto__) arrive as sent, as node:http2 gives them', async () => {
  const { res } = await answer('GET', (id) => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock([[':status', '200'], ['constructor', 'x'], ['__proto__', 'y'], ['__proto__', 'z'], ['x-a', '1']])));
  const r = await res;
  expect(Object.entries(r.headers)).toEqual([['constructor', 'x'], ['__proto__', 'y, z'], ['x-a', '1']]);
  expect(Object.getPrototypeOf(r.headers)).toBe(Object.prototype);
});

test.each(['2e2', '1e2', '20 ', '099', '1000', ''])('a :status of %j is malformed (RFC 9113 section 8.3.2: three digits)', async (status) => {
  const { res, conn } = await answer('GET', (id) => Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock([[':status', status]])), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, status200)]));
  await expect(res).rejects.toMatchObject({ code: 'UPSTREAM_PROTOCOL' });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
});

test('a reset after the whole request went out but before any response fails the request; it is not sent again (the app may have acted on it)', async () => {
  let conn!: RawConn;
  let connections = 0;
  const port = await rawApp((c) => {
    conn = c;
    connections++;
    c.socket.write(settings());
  });
  const client = new AppH2Client({ address: '127.0.0.1', clock: systemClock, logger: silentLogger, connectTimeoutMs: 1000, streamWindowBytes: 65_536, connectionWindowBytes: 1 << 20, maxHeaderListBytes: 16_384, resetBudget: 0 });
  try {
    const p = client.request(port, request(), {}).catch((e: unknown) => e);
    await until(() => conn !== undefined);
    await conn.next(isHeaders(1));
    conn.socket.write(frame(FRAME.RST_STREAM, 0, 1, word(2)));
    expect(await p).toMatchObject({ code: 'UPSTREAM_RESET', message: expect.stringMatching(/code 2/) });
    await tick(50);
    expect(conn.frames.filter((f) => f.type === FRAME.HEADERS).length).toBe(1);
    expect(connections).toBe(1);
  } finally {
    client.close(0);
  }
});

test('a frame trickled one byte per read costs copies in proportion to its size, not its square', async () => {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.setNoDelay(true);
    c.socket.write(settings());
  });
  const s = session(port);
  const p = s.request(request(), {});
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  const bytes = Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.alloc(8192, 7))]);
  const concat = Buffer.concat;
  let copied = 0;
  let reads = 0;
  // Each read node makes of the socket reaches the session's onData (net/direct-reads.ts: a
  // view of the thread's shared read buffer, no 'data' event).
  const sess = s as unknown as { onData(c: Buffer): void };
  const onData = sess.onData;
  sess.onData = function (this: unknown, c: Buffer): void {
    reads++;
    onData.call(this, c);
  };
  Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
    const out = concat(list, total);
    copied += out.length;
    return out;
  }) as typeof Buffer.concat;
  try {
    for (let i = 0; i < bytes.length; i++) {
      conn.socket.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    const res = await p;
    expect((await readAll(res)).length).toBe(8192);
  } finally {
    Buffer.concat = concat;
  }
  // Most bytes came in reads of their own: copying all that was pending at each read would be about reads x 4 KiB.
  expect(reads).toBeGreaterThan(1000);
  expect(copied).toBeLessThan(20 * 8192);
}, 60_000);

test('a header block that never ends holds every stream of its connection only until the keepalive PING goes unanswered; the next request gets a new connection', async () => {
  const conns: RawConn[] = [];
  const port = await rawApp((c) => {
    conns.push(c);
    c.socket.write(settings());
  });
  let timeouts = 0;
  const client = new AppH2Client({
    address: '127.0.0.1', clock: systemClock, logger: silentLogger, connectTimeoutMs: 1000, streamWindowBytes: 65_536, connectionWindowBytes: 1 << 20, maxHeaderListBytes: 16_384, resetBudget: 0,
    keepalive: { intervalMs: 100, timeoutMs: 200 }, onKeepaliveTimeout: () => timeouts++,
  });
  try {
    const a = client.request(port, request(), {}).catch((e: unknown) => e);
    const b = client.request(port, request(), {}).catch((e: unknown) => e);
    await until(() => conns.length === 1);
    await conns[0].next(isHeaders(3));
    // Stream 1's head starts and never ends: no frame of stream 3 (nor a PING ACK) may come in between (RFC 9113 section 4.3).
    conns[0].socket.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, status200.subarray(0, 1)));
    expect(await a).toMatchObject({ message: expect.stringMatching(/PING/) });
    expect(await b).toMatchObject({ message: expect.stringMatching(/PING/) });
    expect(timeouts).toBe(1);
    const c = client.request(port, request(), {});
    await until(() => conns.length === 2);
    await conns[1].next(isHeaders(1));
    conns[1].socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200));
    expect((await c).status).toBe(200);
  } finally {
    client.close(0);
  }
});

/**
 * RST_STREAM, WINDOW_UPDATE or DATA for a stream never opened: an id above every one we opened,
 * or an even id (a server opens those only by PUSH_PROMISE, which we disable). RFC 9113
 * section 5.1 (idle: any frame but HEADERS or PRIORITY), 6.4 and 6.9: a connection error
 * PROTOCOL_ERROR. An app that sends them has lost track of its streams, so none of its
 * answers on this connection can be trusted.
 */
describe.each([
  ['RST_STREAM', 7, frame(FRAME.RST_STREAM, 0, 7, word(RST_CODE.CANCEL))],
  ['RST_STREAM', 2, frame(FRAME.RST_STREAM, 0, 2, word(RST_CODE.CANCEL))],
  ['WINDOW_UPDATE', 7, frame(FRAME.WINDOW_UPDATE, 0, 7, word(1000))],
  ['WINDOW_UPDATE', 2, frame(FRAME.WINDOW_UPDATE, 0, 2, word(1000))],
  ['DATA', 2, frame(FRAME.DATA, 0, 2, Buffer.from('x'))],
])('%s on idle stream %i', (_type, _id, bad) => {
  test('is a connection error PROTOCOL_ERROR: the sent request fails (502), the one waiting for a slot goes again on a new connection', async () => {
    const conns: RawConn[] = [];
    const port = await rawApp((c) => {
      conns.push(c);
      c.socket.write(settings([SETTING_MAX_CONCURRENT_STREAMS, 1]));
    });
    const client = new AppH2Client({ address: '127.0.0.1', clock: systemClock, logger: silentLogger, connectTimeoutMs: 1000, streamWindowBytes: 65_536, connectionWindowBytes: 1 << 20, maxHeaderListBytes: 16_384, resetBudget: 0 });
    try {
      const sent = client.request(port, request(), {}).catch((e: unknown) => e);
      await until(() => conns.length === 1);
      await conns[0].next(isHeaders(1));
      await conns[0].next(isSettingsAck);
      // The app takes one stream at a time: this one waits for stream 1's slot, never sent.
      const waiting = quiet(client.request(port, request(), {}));
      await tick(20);
      conns[0].socket.write(bad);
      const goaway = await conns[0].next((f) => f.type === FRAME.GOAWAY);
      expect(goaway.payload.readUInt32BE(4)).toBe(RST_CODE.PROTOCOL_ERROR);
      // Sent: the app may have acted on it, so it is not sent again; a 502 (UPSTREAM_PROTOCOL).
      const err = await sent;
      expect(err).toMatchObject({ code: 'UPSTREAM_PROTOCOL', httpStatus: 502 });
      expect(wasRefusedByApp(err)).toBe(false);
      // Never sent: safe to send again (RFC 9113 section 8.7), on a new connection.
      await until(() => conns.length === 2);
      await conns[1].next(isHeaders(1));
      conns[1].socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock([[':status', '204']])));
      expect((await waiting).status).toBe(204);
      expect(conns[0].frames.filter((f) => f.type === FRAME.HEADERS).map((f) => f.id)).toEqual([1]);
    } finally {
      client.close(0);
    }
  });
});

test('RST_STREAM and WINDOW_UPDATE for streams we opened and closed are ignored (RFC 9113 section 5.1, closed): the session goes on', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const first = quiet(s.request(request(), {}));
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200));
  expect((await first).status).toBe(200);
  // Stream 3 is cancelled by its caller: closed on our side, the app may not know yet.
  const ac = new AbortController();
  const cancelled = s.request(request({ signal: ac.signal }), {}).catch((e: unknown) => e);
  await conn.next(isHeaders(3));
  ac.abort();
  expect(String(await cancelled)).toMatch(/cancelled/);
  conn.socket.write(Buffer.concat([
    frame(FRAME.WINDOW_UPDATE, 0, 1, word(1000)), frame(FRAME.RST_STREAM, 0, 1, word(RST_CODE.CANCEL)),
    frame(FRAME.WINDOW_UPDATE, 0, 3, word(1000)), frame(FRAME.RST_STREAM, 0, 3, word(RST_CODE.CANCEL)),
  ]));
  const next = s.request(request(), {});
  await conn.next(isHeaders(5));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 5, status200));
  expect((await next).status).toBe(200);
  expect(conn.frames.some((f) => f.type === FRAME.GOAWAY)).toBe(false);
  expect(s.destroyed).toBe(false);
});

test('an app answering one request with 1xx without end: more than MAX_INTERIM_RESPONSES is a stream error (502 UPE, RST_STREAM PROTOCOL_ERROR), counted; the session goes on', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const limits: string[] = [];
  const s = session(port, { onLimit: (l) => limits.push(l) });
  const hint = frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([[':status', '103'], ['link', '</a.css>; rel=preload']]));
  const flooded = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  conn.socket.write(Buffer.concat([...Array.from({ length: 1000 }, () => hint), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200)]));
  const err = await flooded;
  expect(err).toBeInstanceOf(ProxyError);
  expect((err as ProxyError).code).toBe('UPSTREAM_PROTOCOL');
  expect((await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1)).payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
  expect(limits).toEqual(['interim-responses']);
  // A few before the final response are skipped, on the same session.
  const ok = s.request(request(), {});
  await conn.next(isHeaders(3));
  const hint3 = frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, headerBlock([[':status', '100']]));
  conn.socket.write(Buffer.concat([...Array.from({ length: 16 }, () => hint3), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200)]));
  expect((await ok).status).toBe(200);
  expect(limits).toEqual(['interim-responses']);
});

test('a 101 is not an interim response in HTTP/2 (RFC 9113 section 8.6): the response is malformed, a 502 for its caller; the session goes on', async () => {
  let conn!: RawConn;
  const port = await settingsApp((c) => (conn = c));
  const s = session(port);
  const p = s.request(request(), {}).catch((e: unknown) => e);
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  // A final response after it must not be delivered as if the 101 had been a 1xx to skip.
  conn.socket.write(Buffer.concat([
    frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([[':status', '101'], ['upgrade', 'websocket']])),
    frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, status200),
  ]));
  expect(await p).toMatchObject({ code: 'UPSTREAM_PROTOCOL', httpStatus: 502 });
  const rst = await conn.next((f) => f.type === FRAME.RST_STREAM && f.id === 1);
  expect(rst.payload.readUInt32BE(0)).toBe(RST_CODE.PROTOCOL_ERROR);
  const next = s.request(request(), {});
  await conn.next(isHeaders(3));
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, status200));
  expect((await next).status).toBe(200);
  expect(s.destroyed).toBe(false);
});

/**
 * A request in flight on a raw app, and `noise()`: another session's read of 60 KB (an app
 * that answers with bytes that are no HTTP/2), landing in the thread's shared read buffer.
 */
async function requestWithNoise(): Promise<{ conn: RawConn; response: Promise<ProxyResponse>; noise: () => Promise<void> }> {
  let conn!: RawConn;
  const port = await rawApp((c) => {
    conn = c;
    c.socket.setNoDelay(true);
    c.socket.write(settings());
  });
  const noisy = await rawApp((c) => void c.socket.write(Buffer.alloc(60_000, 0x21)));
  const response = session(port).request(request(), {});
  await until(() => conn !== undefined);
  await conn.next(isHeaders(1));
  const noise = async (): Promise<void> => {
    await tick(30);
    const other = session(noisy);
    await new Promise<void>((r) => other.socket.once('close', () => r()));
  };
  return { conn, response, noise };
}

test("a frame cut by a read's end waits as a copy: another session's read, landing in the shared buffer meanwhile, does not change it", async () => {
  const { conn, response, noise } = await requestWithNoise();
  const payload = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(6), 'latin1');
  const data = frame(FRAME.DATA, FLAG.END_STREAM, 1, payload);
  // The head and part of a DATA frame in one read: the part waits for the rest.
  conn.socket.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, status200), data.subarray(0, 9 + 100)]));
  const res = await response;
  // The rest in two reads, each after another session's read: the frame's parts wait across both.
  await noise();
  conn.socket.write(data.subarray(9 + 100, 9 + 150));
  await noise();
  conn.socket.write(data.subarray(9 + 150));
  expect((await readAll(res)).toString('latin1')).toBe(payload.toString('latin1'));
});

test("a response header block's first fragment waits as a copy while another session's read lands in the shared buffer; its CONTINUATION completes the head", async () => {
  const { conn, response, noise } = await requestWithNoise();
  const va = 'a'.repeat(120);
  const vb = 'b'.repeat(120);
  const block = headerBlock([[':status', '200'], ['x-a', va], ['x-b', vb]]);
  conn.socket.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, 150)));
  await noise();
  conn.socket.write(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(150)));
  const res = await response;
  expect([res.status, res.headers['x-a'], res.headers['x-b']]).toEqual([200, va, vb]);
});
