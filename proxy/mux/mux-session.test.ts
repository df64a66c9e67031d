import type { TLSSocket } from 'node:tls';
import { Deframer, FrameType, FLAG_FIN, frameHeader, controlFrame, MAX_PAYLOAD } from './frame.js';
import { MuxSession } from './mux-session.js';
import type { MuxStream } from './mux-stream.js';
import { frameRecorder, MuxTestPairs, tick, until } from './mux-test-pair.js';
import { isLent, lentCopy } from '../net/body-buffers.js';

/** Real sockets on port 0 (the session uses only the socket API a TLS socket shares with TCP): mux-test-pair.ts. */
const pairs = new MuxTestPairs();
afterEach(() => pairs.destroyAll());
afterAll(() => pairs.close());

/** Polls `cond` every 10 ms until it holds; throws (failing the test) if it does not within `ms`: a bound for a loaded machine, not a speed. */
async function untilMs(cond: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`condition not reached within ${ms} ms: ${cond.toString()}`);
}

const pair = (window = 64 * 1024, onStream?: (s: MuxStream) => void, maxStreams = 100, connWindow = 1 << 20) => pairs.pair({ window, onStream, maxStreams, connWindow });

/** A pair whose client opened two streams and wrote a byte on each ('a', 'b'), both served by now. */
async function twoServedStreams(): Promise<{ p: Awaited<ReturnType<typeof pair>>; served: MuxStream[]; a: MuxStream; b: MuxStream }> {
  const served: MuxStream[] = [];
  const p = await pair(64 * 1024, (st) => served.push(st));
  const a = p.client.open()!;
  const b = p.client.open()!;
  a.write('a');
  b.write('b');
  await new Promise((r) => setTimeout(r, 30));
  return { p, served, a, b };
}

const readAll = (s: MuxStream): Promise<string> =>
  new Promise((resolve, reject) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });

describe('Deframer', () => {
  const frames = Buffer.concat([
    frameHeader(FrameType.Data, 0, 1, 5), Buffer.from('hello'),
    controlFrame(FrameType.Window, 1, 1000),
    frameHeader(FrameType.Data, FLAG_FIN, 3, 0),
    controlFrame(FrameType.Reset, 5, 2),
  ]);
  const expected = [
    [FrameType.Data, 0, 1, 'hello'],
    [FrameType.Window, 0, 1, '000003e8'],
    [FrameType.Data, FLAG_FIN, 3, ''],
    [FrameType.Reset, 0, 5, '00000002'],
  ];

  test('gives the same frames however the bytes are split', () => {
    for (let cut = 0; cut <= frames.length; cut++) {
      for (const step of [1, 3, 7, frames.length]) {
        const rec = frameRecorder();
        const d = new Deframer(rec);
        d.push(frames.subarray(0, cut));
        for (let i = cut; i < frames.length; i += step) d.push(frames.subarray(i, Math.min(frames.length, i + step)));
        expect(rec.frames).toEqual(expected);
      }
    }
  });

  test.each([
    ['an oversized payload', frameHeader(FrameType.Data, 0, 1, MAX_PAYLOAD + 1), /frame of 65537 bytes/],
    ['an unknown type', frameHeader(9 as FrameType, 0, 1, 0), /unknown frame type 9/],
    ['a control frame of the wrong size', frameHeader(FrameType.Window, 0, 1, 8), /control frame of 8 bytes/],
  ])('refuses %s and stops reading', (_name, bytes, why) => {
    const got: string[] = [];
    const d = new Deframer({ data: () => got.push('frame'), control: () => got.push('frame'), malformed: (w) => got.push(w) });
    d.push(bytes);
    d.push(Buffer.concat([frameHeader(FrameType.Data, 0, 1, 1), Buffer.from('x')]));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatch(why);
  });
});

describe('MuxSession', () => {
  test('streams carry bytes both ways with half-close, and are forgotten once both halves ended', async () => {
    const served: MuxStream[] = [];
    const p = await pair(64 * 1024, (s) => {
      served.push(s);
      void readAll(s).then((body) => s.end(`echo:${body}`));
    });
    const streams = [p.client.open()!, p.client.open()!, p.client.open()!];
    expect(streams.map((s) => s.id)).toEqual([1, 3, 5]);
    const answers = streams.map((s) => readAll(s));
    streams.forEach((s, i) => s.end(`request ${i}`));
    expect(await Promise.all(answers)).toEqual(['echo:request 0', 'echo:request 1', 'echo:request 2']);
    expect(served.map((s) => s.peer)).toEqual(Array(3).fill('spiffe://td/ns/a/sa/b'));
    await tick();
    await tick();
    expect(p.client.size).toBe(0);
    expect(p.server.size).toBe(0);
  });

  test('flow control: a reader that does not read holds the sender to the window', async () => {
    const WINDOW = 16 * 1024;
    let peer: MuxStream | null = null;
    const p = await pair(WINDOW, (s) => {
      peer = s;
      s.pause();
    });
    const s = p.client.open()!;
    const big = Buffer.alloc(1024 * 1024, 0x61);
    let written = false;
    s.write(big, () => (written = true));
    await new Promise((r) => setTimeout(r, 100));
    // The peer holds at most its stream's buffer (highWaterMark, 64 KiB) plus the window:
    // of the 1 MB written, the rest waits at the sender, not in the peer's memory.
    expect(peer!.readableLength).toBeGreaterThan(0);
    expect(peer!.readableLength).toBeLessThanOrEqual(64 * 1024 + WINDOW);
    expect(written).toBe(false);
    // Reading again grants the window back until everything has crossed.
    let got = 0;
    peer!.on('data', (d: Buffer) => (got += d.length));
    peer!.resume();
    s.end();
    await new Promise((r) => peer!.once('end', r));
    expect(got).toBe(big.length);
    expect(written).toBe(true);
  });

  test("streams whose readers stopped hold their own windows only: the connection's window comes back as DATA arrives, so the other streams go on", async () => {
    // RFC 9113 section 5.2 (as node:http2 does it): the connection's window is given back on
    // arrival, each stream's as its reader consumes. When unread bytes kept their share of
    // the connection's window, a few stalled streams held all of it and stopped every stream
    // of the connection (the mesh's head-of-line stall): the stalled streams below never held
    // more than their Readable buffers and one connection window together, and the ninth
    // stream got no byte across.
    const WINDOW = 64 * 1024;
    const BUFFER = 64 * 1024; // a stream's Readable highWaterMark: what it takes in before its reader is behind
    const CONN = 128 * 1024;
    const STALLED = 8;
    const served: MuxStream[] = [];
    const p = await pair(WINDOW, (st) => {
      served.push(st);
      if (served.length <= STALLED) st.pause();
    }, 100, CONN);
    const stalled = Array.from({ length: STALLED }, () => p.client.open()!);
    for (const st of stalled) st.write(Buffer.alloc(1 << 20, 0x62));
    const held = (): number => served.slice(0, STALLED).reduce((a, st) => a + st.readableLength, 0);
    await untilMs(() => served.length === STALLED && held() > STALLED * BUFFER + CONN, 10_000);
    // Each holds at most its window and its buffer: the bound is per stream (maxStreams x window per connection).
    await new Promise((r) => setTimeout(r, 50));
    for (const st of served) expect(st.readableLength).toBeLessThanOrEqual(WINDOW + BUFFER);
    // A ninth stream sends 8 connection windows' worth to a reader that reads: all of it crosses.
    const c = p.client.open()!;
    c.end(Buffer.alloc(8 * CONN, 0x63));
    let got = 0;
    let ended = false;
    await untilMs(() => served.length > STALLED, 10_000);
    served[STALLED].on('data', (d: Buffer) => (got += d.length)).once('end', () => (ended = true));
    await untilMs(() => ended, 10_000);
    expect(got).toBe(8 * CONN);
    // A stalled stream destroyed takes its unread bytes with it; its writer is reset.
    expect(p.server.size).toBe(STALLED + 1);
    const reset = new Promise((r) => stalled[0].once('close', r));
    served[0].destroy();
    await reset;
    expect(p.server.size).toBe(STALLED);
  });

  test('more data than the window granted resets the stream (flow-control error)', async () => {
    let peer: MuxStream | null = null;
    const p = await pair(1024, (s) => {
      peer = s;
      s.on('error', () => undefined);
    });
    const s = p.client.open()!;
    s.on('error', () => undefined);
    // Bypass the stream's own accounting: the raw frames of a misbehaving sender.
    p.raw.write(Buffer.concat([frameHeader(FrameType.Data, 0, s.id, 10), Buffer.alloc(10)]));
    p.raw.write(Buffer.concat([frameHeader(FrameType.Data, 0, s.id, 2000), Buffer.alloc(2000)]));
    const closed = new Promise((r) => s.once('close', r));
    await closed;
    expect(peer!.destroyed).toBe(true);
    expect(s.destroyed).toBe(true);
  });

  test('destroy() resets the stream at the peer; other streams go on', async () => {
    const errors: string[] = [];
    const served: MuxStream[] = [];
    const p = await pair(64 * 1024, (s) => {
      served.push(s);
      s.on('error', (e) => errors.push(e.message));
    });
    const a = p.client.open()!;
    const b = p.client.open()!;
    a.write('x');
    b.write('y');
    await new Promise((r) => setTimeout(r, 20));
    a.destroy();
    await new Promise((r) => served[0].once('close', r));
    expect(errors).toEqual(['stream reset by the peer (code 0)']);
    const answer = readAll(b);
    served[1].end('still here');
    b.end();
    expect(await answer).toBe('still here');
  });

  test("resetForUpstream(code): the peer's stream fails with the upstream's HTTP/2 code (resetCode), a plain reset carries none", async () => {
    const errors: { message: string; resetCode?: number }[] = [];
    const served: MuxStream[] = [];
    const p = await pair(64 * 1024, (s) => {
      served.push(s);
      s.on('error', (e: Error & { resetCode?: number }) => errors.push({ message: e.message, resetCode: e.resetCode }));
    });
    const a = p.client.open()!;
    const b = p.client.open()!;
    a.write('x');
    b.write('y');
    await until(() => served.length === 2);
    a.resetForUpstream(0x8); // CANCEL
    await new Promise((r) => served[0].once('close', r));
    b.destroy();
    await new Promise((r) => served[1].once('close', r));
    expect(errors).toEqual([
      { message: "stream reset by the peer's upstream (code 8)", resetCode: 0x8 },
      { message: 'stream reset by the peer (code 0)', resetCode: undefined },
    ]);
  });

  test('a lost connection fails every open stream as a connection reset', async () => {
    const p = await pair();
    const streams = [p.client.open()!, p.client.open()!];
    const errs = streams.map((s) => new Promise<NodeJS.ErrnoException>((r) => s.once('error', r)));
    p.raw.destroy();
    const got = await Promise.all(errs);
    expect(got.map((e) => e.code)).toEqual(['ECONNRESET', 'ECONNRESET']);
    expect(p.client.isClosed).toBe(true);
    expect(p.client.open()).toBeNull();
  });

  test('GOAWAY: no new stream, open ones finish, then the connection closes', async () => {
    const served: MuxStream[] = [];
    const p = await pair(64 * 1024, (s) => served.push(s));
    const s = p.client.open()!;
    s.write('first');
    await new Promise((r) => setTimeout(r, 20));
    p.server.goAway();
    await new Promise((r) => setTimeout(r, 20));
    expect(p.client.goingAway).toBe(true);
    expect(p.client.open()).toBeNull();
    const answer = readAll(s);
    void readAll(served[0]).then(() => served[0].end('done'));
    s.end();
    expect(await answer).toBe('done');
    await new Promise((r) => p.raw.once('close', r));
  });

  test('a server refuses streams beyond maxStreams', async () => {
    const p = await pair(64 * 1024, () => undefined, 1);
    const a = p.client.open()!;
    expect(p.client.open()).toBeNull(); // the client keeps its own bound
    a.write('x');
    // A misbehaving client opening a second stream anyway gets RESET (refused).
    p.raw.write(Buffer.concat([frameHeader(FrameType.Data, 0, 99, 1), Buffer.from('y')]));
    await new Promise((r) => setTimeout(r, 30));
    expect(p.server.size).toBe(1);
  });

  test('a stream refused beyond maxStreams (limits.maxConcurrentStreams on the inbound) is counted as max-concurrent-streams', async () => {
    const limits: string[] = [];
    const p = await pairs.pair({ maxStreams: 1, onStream: () => undefined, onLimit: (l) => limits.push(l) });
    const a = p.client.open()!;
    a.write('x');
    await until(() => p.server.size === 1);
    p.raw.write(Buffer.concat([frameHeader(FrameType.Data, 0, 99, 1), Buffer.from('y')]));
    await until(() => limits.length > 0);
    expect(limits).toEqual(['max-concurrent-streams']);
    expect(p.server.size).toBe(1);
  });

  test("a turn's frames from every stream leave in one write", async () => {
    const p = await pair(64 * 1024, () => undefined);
    const streams = Array.from({ length: 10 }, () => p.client.open()!);
    const raw = p.raw as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    let writes = 0;
    let writevs = 0;
    const w = raw._write.bind(raw);
    const wv = raw._writev.bind(raw);
    const chunks: Buffer[] = [];
    raw._write = (...a) => (writes++, chunks.push(a[0] as Buffer), w(...a));
    raw._writev = (...a) => (writevs++, wv(...a));
    const head = 'GET / HTTP/1.1\r\nhost: web\r\n\r\n';
    // As the HTTP/1.1 codec writes (latin1 text), and as a body's bytes come (a Buffer).
    for (const [i, s] of streams.entries()) s.write(i % 2 === 0 ? head : Buffer.from(head, 'latin1'), i % 2 === 0 ? 'latin1' : undefined);
    await tick();
    // One write of one buffer: the ten streams' opening frames (empty DATA, open()) and their
    // ten frames back to back, nothing corked, no vector.
    expect(writes).toBe(1);
    expect(writevs).toBe(0);
    const rec = frameRecorder();
    new Deframer(rec).push(chunks[0]);
    expect(rec.frames).toEqual([...streams.map((s) => [FrameType.Data, 0, s.id, '']), ...streams.map((s) => [FrameType.Data, 0, s.id, head])]);
  });
});

describe('MuxSession lifetime', () => {
  test('a client closes its connection when its last stream closes; a server closes an empty one after its idle timeout, counted', async () => {
    const { raw, accepted: s } = await pairs.connection();
    let idleCloses = 0;
    const srv = new MuxSession(s as unknown as TLSSocket, { client: false, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10, idleTimeoutMs: 150, onLimit: (l) => l === 'idle-connection-timeout' && idleCloses++, onStream: (st) => st.on('error', () => undefined) });
    const cli = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10 });
    pairs.track(cli, srv);
    const a = cli.open()!.on('error', () => undefined);
    a.write('x');
    await new Promise((r) => setTimeout(r, 250)); // a stream is open: no idle close
    expect(idleCloses).toBe(0);
    expect(srv.isClosed).toBe(false);
    a.destroy();
    // Ending at once: a stream asked for now would be written after the end (the pool opens another connection).
    expect(cli.goingAway).toBe(true);
    expect(cli.open()).toBeNull();
    await new Promise((r) => raw.once('close', r));
    expect(cli.isClosed).toBe(true);

    // A client that opens no stream: the server closes the connection after its idle timeout.
    const { raw: raw2, accepted: s2 } = await pairs.connection();
    const srv2 = new MuxSession(s2 as unknown as TLSSocket, { client: false, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10, idleTimeoutMs: 100, onLimit: (l) => l === 'idle-connection-timeout' && idleCloses++ });
    raw2.on('data', () => undefined);
    await new Promise((r) => raw2.once('close', r));
    expect(idleCloses).toBe(1);
    await new Promise((r) => setTimeout(r, 50)); // the server sees the client's own close
    expect(srv2.isClosed).toBe(true);
  });

  test('a client with an idle timeout keeps its connection when every stream closed at once, and closes it once idle that long', async () => {
    const { raw, accepted: s } = await pairs.connection();
    const srv = new MuxSession(s as unknown as TLSSocket, { client: false, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10, onStream: (st) => st.on('error', () => undefined) });
    const cli = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10, idleTimeoutMs: 200 });
    pairs.track(cli, srv);
    // Every stream cancelled in one turn (a caller that resets everything), then a new one at once.
    const streams = [1, 2, 3].map(() => cli.open()!.on('error', () => undefined));
    for (const st of streams) st.write('x');
    await new Promise((r) => setTimeout(r, 20));
    for (const st of streams) st.destroy();
    expect(cli.goingAway).toBe(false);
    const next = cli.open()!.on('error', () => undefined);
    expect(next).not.toBeNull();
    next.destroy();
    await new Promise((r) => setTimeout(r, 100)); // idle less than its timeout: still there
    expect(cli.isClosed).toBe(false);
    expect(cli.open()?.destroy()).toBeDefined();
    await new Promise((r) => raw.once('close', r)); // idle 200 ms: gone
    expect(cli.isClosed).toBe(true);
  });
});

describe('MuxSession: the close timeout after our FIN (delayed close)', () => {
  const CLOSE_MS = 100;

  test('a stream we ended goes within the close timeout when the peer never ends its half: counted, its slot free, and a peer that sends nothing more is not reset', async () => {
    const limits: string[] = [];
    // Answers the request it read, and ends its half (as an HTTP/1.1 server after `connection: close`).
    const p = await pairs.pair({ closeTimeoutMs: CLOSE_MS, onLimit: (l) => limits.push(l), onStream: (st) => st.once('data', () => st.end('bye')) });
    const a = p.client.open()!;
    const errors: Error[] = [];
    a.on('error', (e) => errors.push(e));
    const answer = readAll(a);
    a.write('request');
    // The peer reads our FIN and never sends its own: the stream held a slot of maxStreams for good.
    expect(await answer).toBe('bye');
    await untilMs(() => p.server.size === 0, 10_000);
    expect(limits).toEqual(['delayed-close-timeout']);
    // Let go quietly: a RESET would have made the peer drop what it had not read yet.
    await new Promise((r) => setTimeout(r, 50));
    expect(errors).toEqual([]);
    expect(a.destroyed).toBe(false);
  });

  test('a peer still sending after our FIN is reset at the close timeout', async () => {
    const limits: string[] = [];
    const p = await pairs.pair({ closeTimeoutMs: CLOSE_MS, onLimit: (l) => limits.push(l), onStream: (st) => {
      st.resume();
      st.end('bye');
    } });
    const a = p.client.open()!;
    a.on('data', () => undefined);
    // An upload that goes on after the answer and its FIN.
    a.once('end', () => a.write('more of the upload'));
    a.write('request');
    let err: (Error & { code?: string }) | null = null;
    a.once('error', (e) => (err = e));
    await untilMs(() => err !== null, 10_000);
    expect(err!.code).toBe('ECONNRESET');
    expect(limits).toEqual(['delayed-close-timeout']);
    expect(p.server.size).toBe(0);
  });

  test('a stream both sides ended whose reader never took the end goes at the close timeout, without a RESET and uncounted', async () => {
    const limits: string[] = [];
    let n = 0;
    const p = await pairs.pair({ closeTimeoutMs: CLOSE_MS, onLimit: (l) => limits.push(l), onStream: (st) => {
      if (n++ === 0) return; // the first keeps the client's connection open (a client closes it with its last stream)
      st.pause(); // a closing HTTP/1.1 connection that paused with bytes held: never reads to the end
      st.end('bye');
    } });
    p.client.open()!.write('x');
    const a = p.client.open()!;
    const errors: Error[] = [];
    a.on('error', (e) => errors.push(e));
    const answer = readAll(a);
    a.end('request');
    expect(await answer).toBe('bye');
    await untilMs(() => p.server.size === 1, 10_000);
    expect(limits).toEqual([]);
    await new Promise((r) => a.destroyed ? r(null) : a.once('close', r));
    expect(errors).toEqual([]);
  });

  test('a connection we ended (the idle GOAWAY) is destroyed when the peer never ends its side, counted; one the peer ends is not', async () => {
    const limits: string[] = [];
    const { raw, accepted } = await pairs.connection({ allowHalfOpen: true });
    raw.on('data', () => undefined);
    raw.on('error', () => undefined);
    const srv = new MuxSession(accepted as unknown as TLSSocket, { client: false, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10, idleTimeoutMs: 50, closeTimeoutMs: CLOSE_MS, onLimit: (l) => limits.push(l) });
    pairs.track(srv);
    // GOAWAY and our FIN reach the peer, which keeps its side open for good.
    await new Promise((r) => raw.once('end', r));
    await untilMs(() => srv.isClosed, 10_000);
    expect(limits).toEqual(['idle-connection-timeout', 'delayed-close-timeout']);
    expect(accepted.destroyed).toBe(true);
    raw.destroy();

    // A peer that ends its side in turn closes the connection itself (its timer goes with it): nothing more is counted.
    const { raw: raw2, accepted: accepted2 } = await pairs.connection();
    raw2.on('data', () => undefined);
    const srv2 = new MuxSession(accepted2 as unknown as TLSSocket, { client: false, windowBytes: 1024, connectionWindowBytes: 1 << 20, maxStreams: 10, idleTimeoutMs: 50, closeTimeoutMs: 30_000, onLimit: (l) => limits.push(l) });
    pairs.track(srv2);
    await new Promise((r) => raw2.once('close', r));
    await untilMs(() => srv2.isClosed, 10_000);
    expect(limits).toEqual(['idle-connection-timeout', 'delayed-close-timeout', 'idle-connection-timeout']);
  });
});

describe('MuxSession: closed streams', () => {
  test("DATA in flight for a stream the server has closed is dropped, never read as a new stream's requests", async () => {
    const served: MuxStream[] = [];
    const got: string[] = [];
    const p = await pair(64 * 1024, (st) => {
      served.push(st);
      st.on('data', (d: Buffer) => got.push(`${st.id}:${d.toString('latin1')}`));
    });
    const s = p.client.open()!;
    s.write('POST / HTTP/1.1\r\ncontent-length: 100\r\n\r\nfirst part');
    await new Promise((r) => setTimeout(r, 30));
    served[0].destroy(); // the server resets it (a timeout, an early close)
    // The rest of the body, already on its way: a request line, for a parser that would take it.
    const rest = Buffer.from('GET /admin HTTP/1.1\r\n\r\n...');
    p.raw.write(Buffer.concat([frameHeader(FrameType.Data, 0, s.id, rest.length), rest]));
    // An older id than the newest: also closed, also dropped.
    const t = p.client.open()!;
    t.write('x');
    await new Promise((r) => setTimeout(r, 30));
    p.raw.write(Buffer.concat([frameHeader(FrameType.Data, 0, 1, 3), Buffer.from('GET')]));
    await new Promise((r) => setTimeout(r, 30));
    expect(served.map((x) => x.id)).toEqual([1, 3]);
    expect(got).toEqual([`1:POST / HTTP/1.1\r\ncontent-length: 100\r\n\r\nfirst part`, '3:x']);
    expect(p.server.isClosed).toBe(false);
  });

  test('a stream opened first and written last is still a new stream at the peer: ids reach the wire in the order streams are opened', async () => {
    // The outbound opens a virtual connection per request it cannot put on an idle one; a
    // request with a body waits for the session's handshake, a bodyless one writes at once,
    // so a stream opened later can write first. Its higher id must not make the peer take the
    // earlier stream's lower one for a stream it has closed (RFC 9113 section 5.1.1).
    const got = new Map<number, string>();
    const p = await pair(64 * 1024, (st) => {
      got.set(st.id, '');
      st.on('data', (d: Buffer) => got.set(st.id, got.get(st.id) + d.toString('latin1')));
    });
    const first = p.client.open()!;
    const second = p.client.open()!;
    second.write('GET /second HTTP/1.1\r\n\r\n');
    await new Promise((r) => setTimeout(r, 30));
    first.write('POST /first HTTP/1.1\r\ncontent-length: 4\r\n\r\nbody');
    await until(() => (got.get(first.id) ?? '').endsWith('body'));
    expect(got.get(first.id)).toBe('POST /first HTTP/1.1\r\ncontent-length: 4\r\n\r\nbody');
    expect(got.get(second.id)).toBe('GET /second HTTP/1.1\r\n\r\n');
    expect(p.server.isClosed).toBe(false);
  });

  test('a late response for a stream the client has closed is dropped; the connection and its other streams go on', async () => {
    const { p, served, a, b } = await twoServedStreams();
    a.destroy(); // the caller gave up (a timeout)
    served[0].write('a late answer'); // crossed the RESET on the wire
    await new Promise((r) => setTimeout(r, 30));
    expect(p.client.isClosed).toBe(false);
    const answer = readAll(b);
    served[1].end('b answer');
    b.end();
    expect(await answer).toBe('b answer');
  });
});

describe('MuxSession: windows past 2^31-1 (RFC 9113 section 6.9.1)', () => {
  test('a stream window grant past 2^31-1 resets that stream; a connection grant past it closes the connection', async () => {
    const { p, served } = await twoServedStreams();
    // The client (the raw socket is its connection) grants the server's stream 1 too much.
    p.raw.write(controlFrame(FrameType.Window, 1, 2 ** 31 - 1));
    await new Promise((r) => served[0].once('close', r));
    expect(served[0].destroyed).toBe(true);
    expect(p.server.isClosed).toBe(false);
    expect(served[1].destroyed).toBe(false);
    p.raw.write(controlFrame(FrameType.Window, 0, 2 ** 31 - 1));
    await new Promise((r) => setTimeout(r, 30));
    expect(p.server.isClosed).toBe(true);
  });
});

test('Deframer: a DATA payload is never copied: each piece is a view of the bytes pushed, however they were split', () => {
  const payload = Buffer.alloc(MAX_PAYLOAD);
  for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
  const bytes = Buffer.concat([frameHeader(FrameType.Data, FLAG_FIN, 1, payload.length), payload, controlFrame(FrameType.Window, 1, 7)]);
  // TLS reads of 16 KiB (node's clear-text chunk), then one byte at a time.
  for (const step of [16 * 1024, 1]) {
    const pieces: Buffer[] = [];
    let notViews = 0;
    let fins = 0;
    let pushed: Buffer = Buffer.alloc(0);
    const d = new Deframer({
      data: (_id, p, fin) => {
        if (p.buffer !== pushed.buffer) notViews++;
        fins += fin ? 1 : 0;
        pieces.push(Buffer.from(p));
      },
      control: (type, _id, value) => expect([type, value]).toEqual([FrameType.Window, 7]),
      malformed: (w) => {
        throw new Error(w);
      },
    });
    for (let i = 0; i < bytes.length; i += step) {
      // Each read in a buffer of its own, as node's allocation per read makes them.
      pushed = Buffer.from(bytes.subarray(i, i + step));
      d.push(pushed);
    }
    expect(notViews).toBe(0);
    expect(fins).toBe(1);
    expect(Buffer.concat(pieces).equals(payload)).toBe(true);
    expect(pieces.length).toBe(step === 1 ? payload.length : 5);
  }
});

describe('MuxStream inactivity timer (net.Socket setTimeout semantics)', () => {
  test("activity holds 'timeout' off; it fires a period after the last byte, and a later byte arms it again", async () => {
    const { a, served } = await twoServedStreams();
    const fired: number[] = [];
    const t0 = performance.now();
    a.on('timeout', () => fired.push(performance.now() - t0));
    a.setTimeout(60);
    a.on('data', () => undefined);
    // A byte every 20 ms for 200 ms: never 60 ms idle.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 20));
      served[0]!.write('x');
    }
    expect(fired).toEqual([]);
    await new Promise((r) => setTimeout(r, 150));
    expect(fired).toHaveLength(1);
    // 60 ms after the last byte (which came at about 200 ms), not 60 ms after setTimeout.
    expect(fired[0]!).toBeGreaterThanOrEqual(200 + 60 - 5);
    await new Promise((r) => setTimeout(r, 100));
    expect(fired).toHaveLength(1); // not re-armed without activity
    a.write('y'); // our own write counts as activity too
    await new Promise((r) => setTimeout(r, 120));
    expect(fired).toHaveLength(2);
    a.setTimeout(0);
    a.write('z');
    await new Promise((r) => setTimeout(r, 100));
    expect(fired).toHaveLength(2); // 0: off
  });
});

test('a stream is `accepted` once the peer grants window on it or answers on it; a refused one never is', async () => {
  // A client that takes ten streams, a server that takes one (its limit lower than ours).
  const served: MuxStream[] = [];
  const { raw, accepted: sock } = await pairs.connection();
  const client = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: 64 * 1024, connectionWindowBytes: 1 << 20, maxStreams: 10 });
  const server = new MuxSession(sock as unknown as TLSSocket, { client: false, windowBytes: 64 * 1024, connectionWindowBytes: 1 << 20, maxStreams: 1, peer: 'spiffe://td/ns/a/sa/b', onStream: (st) => served.push(st.on('error', () => undefined)) });
  pairs.track(client, server);
  const a = client.open()!.on('error', () => undefined);
  const b = client.open()!;
  const refused = new Promise<Error>((r) => b.once('error', r));
  a.write('a');
  b.write('b');
  expect((await refused as { refusedStream?: boolean }).refusedStream).toBe(true);
  expect(b.accepted).toBe(false);
  // Served, but it has neither granted nor answered yet: nothing tells it from a refusal to come.
  expect(a.accepted).toBe(false);
  served[0].write('answer');
  await new Promise((r) => a.once('data', r));
  expect(a.accepted).toBe(true);
  // A grant alone (the peer read half its window of an upload) tells it too.
  const c = (await pair(64 * 1024, (st) => st.resume())).client.open()!;
  c.write(Buffer.alloc(40 * 1024));
  for (let i = 0; i < 200 && !c.accepted; i++) await tick();
  expect(c.accepted).toBe(true);
});

test('refusals teach the client the peer\'s limit: no new stream beyond it, one once a stream closes', async () => {
  const { raw, accepted: sock } = await pairs.connection();
  const client = new MuxSession(raw as unknown as TLSSocket, { client: true, windowBytes: 64 * 1024, connectionWindowBytes: 1 << 20, maxStreams: 10 });
  const server = new MuxSession(sock as unknown as TLSSocket, { client: false, windowBytes: 64 * 1024, connectionWindowBytes: 1 << 20, maxStreams: 2, peer: 'spiffe://td/ns/a/sa/b', onStream: (st) => void st.on('error', () => undefined) });
  pairs.track(client, server);
  // A burst of eight: the peer takes two and refuses six.
  const burst = Array.from({ length: 8 }, () => client.open()!.on('error', () => undefined));
  const refusals = burst.slice(2).map((st) => new Promise((r) => st.once('close', r)));
  for (const st of burst) st.write('x');
  expect(client.limitLearnt).toBe(false);
  await Promise.all(refusals);
  expect(client.limitLearnt).toBe(true);
  expect(client.size).toBe(2);
  expect(client.full).toBe(true);
  expect(client.open()).toBeNull();
  burst[0].destroy();
  await tick();
  expect(client.full).toBe(false);
});

test("the session reads into the thread's shared buffer: frames cut by a read's end, and bytes a paused stream holds, stay whole while later reads overwrite it", async () => {
  const served: MuxStream[] = [];
  const p = await pair(1 << 20, (st) => served.push(st));
  expect(p.client.viewReads).toBe(true);
  expect(p.server.viewReads).toBe(true);
  // Patterned bodies of uneven sizes on four streams, written together: frames of up to
  // 64 KiB cross the reads' ends, and each read overwrites the buffer the one before used.
  const bodies = [0, 1, 2, 3].map((i) => {
    const b = Buffer.alloc(200_000 + i * 12_345);
    for (let k = 0; k < b.length; k++) b[k] = (k * 7 + i * 13 + (k >> 9)) & 0xff;
    return b;
  });
  const streams = bodies.map(() => p.client.open()!);
  // A first byte on each opens its stream at the server.
  for (const s of streams) s.write('x');
  await new Promise((r) => setTimeout(r, 20));
  expect(served).toHaveLength(4);
  // Two readers wait (their payloads go to the Readable) while the others read as they come.
  const got = bodies.map(() => [] as Buffer[]);
  const ends = served.map((st, i) => {
    st.on('data', (d: Buffer) => got[i].push(d));
    if (i % 2 === 0) st.pause();
    return new Promise<void>((r) => st.once('end', () => r()));
  });
  streams.forEach((s, i) => s.end(bodies[i]));
  await new Promise((r) => setTimeout(r, 50));
  for (const [i, st] of served.entries()) if (i % 2 === 0) st.resume();
  await Promise.all(ends);
  served.forEach((_, i) => expect(Buffer.concat(got[i]).equals(Buffer.concat([Buffer.from('x'), bodies[i]]))).toBe(true));
});

test('Deframer over views: a header or control frame split between reads is kept as a copy (the buffer it came in is overwritten)', () => {
  const wire = Buffer.concat([frameHeader(FrameType.Data, 0, 1, 5), Buffer.from('hello'), controlFrame(FrameType.Reset, 1, 2), frameHeader(FrameType.Data, FLAG_FIN, 3, 6), Buffer.from('world!')]);
  const expected = [[FrameType.Data, 0, 1, 'hello'], [FrameType.Reset, 0, 1, '00000002'], [FrameType.Data, FLAG_FIN, 3, 'world!']];
  const shared = Buffer.alloc(64);
  // Every cut, the second read landing where the first was (the first's bytes overwritten).
  for (let cut = 1; cut < wire.length; cut++) {
    const rec = frameRecorder();
    const d = new Deframer(rec);
    wire.copy(shared, 0, 0, cut);
    d.push(shared.subarray(0, cut));
    shared.fill(0x7a);
    wire.copy(shared, 0, cut);
    d.push(shared.subarray(0, wire.length - cut));
    expect([cut, rec.frames]).toEqual([cut, expected]);
  }
});

test('lent body buffers written by reference go back only after the socket has written them, and the peer gets their bytes as they were', async () => {
  const got: Buffer[] = [];
  const p = await pair(1 << 20, (st) => st.on('data', (d: Buffer) => got.push(Buffer.from(d))));
  const s = p.client.open()!;
  const raw = p.raw as unknown as { _writev: (chunks: unknown, cb: (e?: Error | null) => void) => void };
  // Hold the socket's write back: until its callback, node may still read the buffers.
  const held: (() => void)[] = [];
  const writev = raw._writev.bind(raw);
  raw._writev = (chunks, cb) => void held.push(() => writev(chunks, cb));
  const first = lentCopy(Buffer.alloc(32 * 1024, 0x41));
  s.write(first);
  await tick();
  await tick();
  expect(held).toHaveLength(1);
  expect(isLent(first)).toBe(true);
  // Not yet back: another copy of its size gets a block of its own.
  const second = lentCopy(Buffer.alloc(32 * 1024, 0x42));
  expect(second.buffer).not.toBe(first.buffer);
  raw._writev = writev;
  held.shift()!();
  await until(() => !isLent(first));
  s.write(second);
  await until(() => !isLent(second));
  // Both blocks are free again: the next copies reuse them and overwrite what was sent.
  const third = lentCopy(Buffer.alloc(32 * 1024, 0x43));
  expect([first.buffer, second.buffer]).toContain(third.buffer);
  await until(() => got.reduce((n, d) => n + d.length, 0) === 64 * 1024);
  const all = Buffer.concat(got);
  expect(all.subarray(0, 32 * 1024).every((x) => x === 0x41)).toBe(true);
  expect(all.subarray(32 * 1024).every((x) => x === 0x42)).toBe(true);
});

test('a lent body buffer sent in parts as the window opens goes back once its last part is written, and the peer gets it whole', async () => {
  const got: Buffer[] = [];
  const p = await pair(16 * 1024, (st) => st.on('data', (d: Buffer) => got.push(Buffer.from(d))));
  const s = p.client.open()!;
  const body = lentCopy(Buffer.from(Array.from({ length: 40 * 1024 }, (_, i) => (i * 7) & 0xff)));
  const want = Buffer.from(body);
  s.write(body);
  await tick();
  // The first 16 KiB left; the rest waits for the peer's window: the buffer is still needed.
  expect(isLent(body)).toBe(true);
  await until(() => got.reduce((n, d) => n + d.length, 0) === want.length);
  await until(() => !isLent(body));
  expect(Buffer.concat(got).equals(want)).toBe(true);
  // Its block serves again.
  expect(lentCopy(Buffer.alloc(40 * 1024, 1)).buffer).toBe(body.buffer);
});

test('a lent body buffer corked behind a head is joined with it into one frame, and goes back at once', async () => {
  const got: Buffer[] = [];
  const p = await pair(64 * 1024, (st) => st.on('data', (d: Buffer) => got.push(Buffer.from(d))));
  const s = p.client.open()!;
  const body = lentCopy(Buffer.alloc(20 * 1024, 0x62));
  s.cork();
  s.write('HTTP/1.1 200 OK\r\n\r\n', 'latin1');
  s.write(body);
  s.uncork();
  expect(isLent(body)).toBe(false);
  // Its block is reused and overwritten at once: the frame has its own copy.
  lentCopy(Buffer.alloc(20 * 1024, 0x78));
  await until(() => got.reduce((n, d) => n + d.length, 0) === 19 + 20 * 1024);
  expect(Buffer.concat(got).toString('latin1')).toBe('HTTP/1.1 200 OK\r\n\r\n' + 'b'.repeat(20 * 1024));
});

describe('MuxSession: the reset budget (CVE-2023-44487 backstop)', () => {
  /** A server session with a budget of 3 resets and no refill, and a raw client socket writing frames to it. */
  async function budgeted(): Promise<{ server: MuxSession; raw: import('node:net').Socket; limits: string[]; opened: number[] }> {
    const { raw, accepted } = await pairs.connection();
    raw.on('error', () => undefined); // the server's destroy resets the connection under our unread or unsent bytes
    const limits: string[] = [];
    const opened: number[] = [];
    const server = new MuxSession(accepted as unknown as TLSSocket, {
      client: false, windowBytes: 64 * 1024, connectionWindowBytes: 1 << 20, maxStreams: 100, peer: 'spiffe://td/ns/a/sa/b',
      resetBudget: { burst: 3, perSecond: 0 },
      onLimit: (l) => limits.push(l),
      onStream: (st) => {
        opened.push(st.id);
        st.on('error', () => undefined);
      },
    });
    pairs.track(server);
    return { server, raw, limits, opened };
  }

  /** Streams 1, 3, ... opened with a byte each, then reset by the client with `code`, all in one write. */
  function openAndReset(n: number, code: number): Buffer {
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) parts.push(frameHeader(FrameType.Data, 0, 1 + 2 * i, 1), Buffer.from('G'));
    for (let i = 0; i < n; i++) parts.push(controlFrame(FrameType.Reset, 1 + 2 * i, code));
    return Buffer.concat(parts);
  }

  test('a client resetting its streams past the budget loses the session', async () => {
    const { server, raw, limits } = await budgeted();
    raw.write(openAndReset(5, 0));
    await until(() => server.isClosed);
    expect(limits).toEqual(['premature-resets']);
  });

  test('a client resetting its own streams with REFUSED spends the budget too: a refusal is the server\'s word, not the caller\'s', async () => {
    // REFUSED from a server tells its client the stream was never processed (RFC 9113
    // section 8.7). From a client it means nothing more than a cancel, and was taken as a
    // refusal on the server too: it skipped the budget, so rapid reset went unbounded.
    const { server, raw, limits, opened } = await budgeted();
    raw.write(openAndReset(5, 2 /* ResetCode.Refused */));
    await until(() => server.isClosed);
    expect(opened.length).toBeGreaterThan(3);
    expect(limits).toEqual(['premature-resets']);
  });

  test('a client that makes the server reset its streams (DATA after its FIN or past the window, a window past 2^31-1) spends the budget as if it reset them itself', async () => {
    // Either frees the stream's slot and cuts its request at the app as a RESET does, so it
    // is rapid reset by another name (Envoy takes invalid messaging on a stream as a
    // connection error by default, stream_error_on_invalid_http_messaging).
    for (const breach of ['after-fin', 'past-window', 'window-overflow'] as const) {
      const { server, raw, limits, opened } = await budgeted();
      const parts: Buffer[] = [];
      for (let i = 0; i < 5; i++) {
        const id = 1 + 2 * i;
        if (breach === 'after-fin') parts.push(frameHeader(FrameType.Data, FLAG_FIN, id, 1), Buffer.from('G'), frameHeader(FrameType.Data, 0, id, 1), Buffer.from('x'));
        else if (breach === 'window-overflow') parts.push(frameHeader(FrameType.Data, 0, id, 1), Buffer.from('G'), controlFrame(FrameType.Window, id, 0x7fffffff));
        else {
          // Nobody reads the stream: it takes its 64 KiB window and its buffer's 64 KiB
          // (the window granted back as the buffer fills), and no more.
          const frame = Buffer.concat([frameHeader(FrameType.Data, 0, id, MAX_PAYLOAD), Buffer.alloc(MAX_PAYLOAD, 0x61)]);
          parts.push(frame, frame, frame);
        }
      }
      raw.write(Buffer.concat(parts));
      await until(() => server.isClosed);
      expect({ breach, opened: opened.length > 3, limits }).toEqual({ breach, opened: true, limits: ['premature-resets'] });
    }
  });

  test('frames after the session gave up, in the same read, open no stream: nothing more reaches the app', async () => {
    // The budget runs out at the 4th RESET; the streams opened behind it in the same write
    // were still served (onStream: an HTTP/1.1 server each, and their requests to the app)
    // by a session already closed, since the deframer read its buffer to the end.
    const { server, raw, limits, opened } = await budgeted();
    const late: Buffer[] = [];
    for (let id = 11; id <= 19; id += 2) late.push(frameHeader(FrameType.Data, 0, id, 1), Buffer.from('G'));
    raw.write(Buffer.concat([openAndReset(5, 0), ...late]));
    await until(() => server.isClosed);
    await tick();
    expect(limits).toEqual(['premature-resets']);
    expect(opened).toEqual([1, 3, 5, 7, 9]);
  });
});

