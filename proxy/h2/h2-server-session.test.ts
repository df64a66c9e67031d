import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { H2ServerSession, type H2ServerSessionOptions } from './h2-server-session.js';
import { frameServer, type FrameServer } from './h2-server-test-options.js';
import { HpackDecoder } from './hpack-decoder.js';
import type { BodyStream, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { settledBody } from '../http/settled-body.js';
import type { LimitName } from '../http/h2-session-guard.js';
import { clientStart, frame, goawayCode, headerBlock, isGoaway, isRst, rawPeer, request as rawRequest, rstCode, rstStream, FRAME, FLAG, PREFACE, type RawPeer } from '../../test/helpers/h2-frames.js';

/**
 * The frame-level HTTP/2 server against a real node:http2 client (what apps run) and raw
 * frames (what node:http2 will not send): requests as the outbound's layers see them,
 * bodies and trailers both ways under flow control, resets both ways, malformed requests
 * (RFC 9113 section 8.3.1), the 431, CONNECT, REFUSED_STREAM, the premature-reset budget,
 * the timeouts, PING, CONTINUATION and GOAWAY on drain.
 */
let frames: FrameServer;
let port: number;
let service: HttpService;
let over: Partial<H2ServerSessionOptions> = {};
const limits: LimitName[] = [];
let sessions: Set<H2ServerSession>;
const clients: ClientHttp2Session[] = [];
const raws: Socket[] = [];

beforeAll(async () => {
  frames = await frameServer((req) => service(req), (l) => limits.push(l), () => over);
  port = frames.port;
  sessions = frames.sessions;
});

afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
  for (const s of raws.splice(0)) s.destroy();
  over = {};
  limits.length = 0;
});

afterAll(async () => {
  await frames.close();
});

function client(): ClientHttp2Session {
  const c = h2connect(`http://127.0.0.1:${port}`);
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

function answer(status: number, body: string | null, headers: Record<string, string> = {}, trailers?: Record<string, string>): ProxyResponse {
  return { status, headers, body: body === null ? null : Readable.from([Buffer.from(body)]), trailers: () => trailers };
}

function readAll(r: BodyStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    r.on('data', (c: Buffer) => parts.push(c));
    r.on('end', () => resolve(Buffer.concat(parts)));
    r.on('error', reject);
  });
}

/** A node:http2 client request: the response head, body and trailers, or the stream's error. */
function fetch(c: ClientHttp2Session, headers: Record<string, string>, body?: Buffer | Readable, trailers?: Record<string, string>): Promise<{ head: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders | undefined; rst: number }> {
  return new Promise((resolve, reject) => {
    const st: ClientHttp2Stream = c.request(headers, { endStream: body === undefined, waitForTrailers: trailers !== undefined });
    if (trailers !== undefined) st.on('wantTrailers', () => st.sendTrailers(trailers));
    let head: IncomingHttpHeaders = {};
    let t: IncomingHttpHeaders | undefined;
    const parts: Buffer[] = [];
    st.on('response', (h) => (head = h));
    st.on('trailers', (h) => (t = h));
    st.on('data', (d: Buffer) => parts.push(d));
    st.on('close', () => resolve({ head, body: Buffer.concat(parts), trailers: t, rst: st.rstCode ?? 0 }));
    st.on('error', () => undefined);
    if (body instanceof Readable) body.pipe(st);
    else if (body !== undefined) st.end(body);
    void reject;
  });
}

/** A raw connection: frames received are kept (header blocks decoded), `until` waits for one. */
function raw(): RawPeer {
  const r = rawPeer(port, new HpackDecoder(4096));
  raws.push(r.sock);
  return r;
}


test('a GET and a POST echoed: the request as the layers see it, trailers both ways', async () => {
  const seen: ProxyRequest[] = [];
  service = async (req) => {
    seen.push(req);
    if (req.body === null) return answer(200, 'hello', { 'content-type': 'text/plain', 'x-a': '1' });
    const data = await readAll(req.body);
    return { status: 201, headers: { 'x-got-trailer': String(req.trailers()?.['x-req'] ?? '') }, body: Readable.from([data]), trailers: () => ({ 'grpc-status': '0' }) };
  };
  const c = client();
  const get = await fetch(c, { ':path': '/a?b=1', ':authority': 'web:80', cookie: 'a=1', 'x-multi': 'x' });
  expect(get.head[':status']).toBe(200);
  expect(get.head['x-a']).toBe('1');
  expect(get.body.toString()).toBe('hello');
  const post = await fetch(c, { ':method': 'POST', ':path': '/echo', ':authority': 'web:80', te: 'trailers', 'content-type': 'application/grpc' }, Buffer.from('ping'), { 'x-req': 'yes' });
  expect(post.head[':status']).toBe(201);
  expect(post.head['x-got-trailer']).toBe('yes');
  expect(post.body.toString()).toBe('ping');
  expect(post.trailers?.['grpc-status']).toBe('0');
  const [g, p] = seen;
  expect(g).toMatchObject({ method: 'GET', scheme: 'http', authority: 'web:80', path: '/a?b=1', origProto: 'HTTP/2', body: null, origDst: { address: '10.0.0.1', port: 80 } });
  expect(g.headers).toEqual({ cookie: 'a=1', 'x-multi': 'x' });
  expect(g.source.address).toBe('127.0.0.1');
  expect(g.signal.aborted).toBe(false);
  expect(p.headers).toEqual({ te: 'trailers', 'content-type': 'application/grpc' });
  expect(p.trailers()).toEqual({ 'x-req': 'yes' });
});

test('a megabyte each way crosses the 64 KiB stream windows, and a settled response is one DATA frame with END_STREAM', async () => {
  service = async (req) => {
    if (req.path === '/settled') return { status: 200, headers: {}, body: settledBody(Buffer.from('whole')), trailers: () => undefined };
    const data = await readAll(req.body!);
    return { status: 200, headers: {}, body: Readable.from([data, data]), trailers: () => undefined };
  };
  const big = Buffer.alloc(1 << 20, 7);
  const r = await fetch(client(), { ':method': 'POST', ':path': '/', ':authority': 'x' }, big);
  expect(r.body.length).toBe(2 << 20);
  expect(r.body.every((b) => b === 7)).toBe(true);
  const { sock, frames, until } = raw();
  sock.write(Buffer.concat([clientStart(), rawRequest(1, 'x', '/settled')]));
  await until((f) => f.type === FRAME.DATA && f.id === 1);
  const data = frames.filter((f) => f.type === FRAME.DATA && f.id === 1);
  expect(data).toHaveLength(1);
  expect(data[0].flags & FLAG.END_STREAM).toBe(FLAG.END_STREAM);
  expect(data[0].payload.toString()).toBe('whole');
});

test('a client that resets its upload cancels the request: the signal aborts and the body fails, never ends', async () => {
  let req: ProxyRequest | undefined;
  let bodyError: Error | undefined;
  let ended = false;
  const gotReq = new Promise<void>((resolve) => {
    service = (r) => {
      req = r;
      r.body!.on('data', () => undefined);
      r.body!.on('end', () => (ended = true));
      r.body!.on('error', (e) => (bodyError = e));
      resolve();
      return new Promise(() => undefined);
    };
  });
  const { sock } = raw();
  sock.write(Buffer.concat([clientStart(), rawRequest(1, 'x', '/', 'POST', false), frame(FRAME.DATA, 0, 1, Buffer.alloc(1000))]));
  await gotReq;
  const aborted = new Promise<void>((r) => req!.signal.addEventListener('abort', () => r()));
  sock.write(rstStream(1, constants.NGHTTP2_CANCEL));
  await aborted;
  await new Promise((r) => setTimeout(r, 20));
  expect(ended).toBe(false);
  expect(bodyError).toBeDefined();
});

test.each([
  ['an uppercase field name', [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'x'], ['X-Up', '1']]],
  ['no :path', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x']]],
  ['a :path not in origin form', [[':method', 'GET'], [':scheme', 'http'], [':path', 'x/y'], [':authority', 'x']]],
  ['a :method that is no token', [[':method', 'G T'], [':scheme', 'http'], [':path', '/'], [':authority', 'x']]],
  // RFC 9110 section 9.1: case-sensitive, none registered in lower case (the HTTP/1.1 parser's lowercase-method).
  ['a lower-case :method', [[':method', 'delete'], [':scheme', 'http'], [':path', '/'], [':authority', 'x']]],
  ['a duplicate :path', [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':path', '/b'], [':authority', 'x']]],
  ['a value with a trailing space', [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], ['x-a', 'v ']]],
  ['a connection-specific field', [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], ['connection', 'close']]],
  ['a pseudo-header after a regular field', [[':method', 'GET'], [':scheme', 'http'], ['x-a', '1'], [':path', '/']]],
  ['a response pseudo-header', [[':status', '200'], [':method', 'GET'], [':scheme', 'http'], [':path', '/']]],
  ['te other than trailers', [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], ['te', 'gzip']]],
  ['a :protocol (no extended CONNECT here)', [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':path', '/'], [':authority', 'x']]],
] as const)('a request with %s is malformed: RST_STREAM PROTOCOL_ERROR, the service never sees it', async (_why, fields) => {
  let called = 0;
  service = async () => {
    called++;
    return answer(200, null);
  };
  const { sock, until } = raw();
  sock.write(Buffer.concat([clientStart(), frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock(fields))]));
  const rst = await until(isRst(1));
  expect(rstCode(rst)).toBe(constants.NGHTTP2_PROTOCOL_ERROR);
  // The connection goes on: a good request on it is answered.
  sock.write(rawRequest(3, 'x'));
  await until((f) => f.type === FRAME.HEADERS && f.id === 3);
  expect(called).toBe(1);
});

test('DATA beyond content-length is malformed, and DATA beyond the stream window is FLOW_CONTROL_ERROR', async () => {
  service = () => new Promise(() => undefined);
  const { sock, until, frames } = raw();
  const cl = headerBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/'], [':authority', 'x'], ['content-length', '2']]);
  sock.write(Buffer.concat([clientStart(), frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, cl), frame(FRAME.DATA, 0, 1, Buffer.from('abc'))]));
  expect(rstCode(await until(isRst(1)))).toBe(constants.NGHTTP2_PROTOCOL_ERROR);
  // Nobody reads this body: window is given back while its buffer is under 64 KiB, then no
  // more; so 64 KiB buffered and a 64 KiB window used up (7 frames of 16 KiB), then one byte over.
  sock.write(rawRequest(3, 'x', '/', 'POST', false));
  for (let i = 0; i < 7; i++) sock.write(frame(FRAME.DATA, 0, 3, Buffer.alloc(16_384)));
  await new Promise((r) => setTimeout(r, 50));
  expect(frames.some(isRst(3))).toBe(false);
  sock.write(frame(FRAME.DATA, 0, 3, Buffer.alloc(1)));
  expect(rstCode(await until(isRst(3)))).toBe(constants.NGHTTP2_FLOW_CONTROL_ERROR);
});

test('headers above maxHeaderBytes get a 431 (gRPC: RESOURCE_EXHAUSTED), CONNECT a 403, as node:http2 did', async () => {
  let called = 0;
  service = async () => {
    called++;
    return answer(200, null);
  };
  const c = client();
  const big = await fetch(c, { ':path': '/', ':authority': 'x', 'x-big': 'a'.repeat(3000) });
  expect(big.head[':status']).toBe(431);
  expect(big.body.toString()).toContain('limit is 2048 bytes');
  const grpc = await fetch(c, { ':method': 'POST', ':path': '/s/M', ':authority': 'x', 'content-type': 'application/grpc', 'x-big': 'a'.repeat(3000) }, Buffer.alloc(5));
  expect(grpc.head[':status']).toBe(200);
  expect(grpc.head['grpc-status']).toBe('8');
  // Above the hard cap the list is not even kept: still a 431.
  const huge = await fetch(c, { ':path': '/', ':authority': 'x', 'x-1': 'a'.repeat(5000), 'x-2': 'b'.repeat(5000) });
  expect(huge.head[':status']).toBe(431);
  // ... but its content-type is: a gRPC caller still gets a trailers-only RESOURCE_EXHAUSTED,
  // not a 431 that gRPC's HTTP mapping makes UNKNOWN. grpc-js sends its metadata before
  // content-type, so the content-type comes past the limit here.
  const hugeGrpc = await fetch(c, { ':method': 'POST', ':path': '/s/M', ':authority': 'x', 'x-1': 'a'.repeat(5000), 'x-2': 'b'.repeat(5000), 'content-type': 'application/grpc' }, Buffer.alloc(5));
  expect([hugeGrpc.head[':status'], hugeGrpc.head['grpc-status']]).toEqual([200, '8']);
  const conn = await fetch(c, { ':method': 'CONNECT', ':authority': 'db:5432' });
  expect(conn.head[':status']).toBe(403);
  expect(called).toBe(0);
});

test('streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused with REFUSED_STREAM', async () => {
  over = { maxConcurrentStreams: 2 };
  service = () => new Promise(() => undefined);
  const { sock, until, frames } = raw();
  sock.write(clientStart());
  const settings = await until((f) => f.type === FRAME.SETTINGS && f.flags === 0);
  expect(settings.payload.readUInt16BE(0)).toBe(3);
  expect(settings.payload.readUInt32BE(2)).toBe(2);
  sock.write(Buffer.concat([rawRequest(1, 'x'), rawRequest(3, 'x'), rawRequest(5, 'x')]));
  expect(rstCode(await until(isRst(5)))).toBe(constants.NGHTTP2_REFUSED_STREAM);
  expect(frames.some((f) => f.type === FRAME.RST_STREAM && f.id !== 5)).toBe(false);
  // The limit firing is counted (wren_limit_exceeded_total{limit="max-concurrent-streams"}), as every listener limit is.
  expect(limits).toEqual(['max-concurrent-streams']);
});

test('rapid reset: streams reset in the read that opened them reach no service; the budget ends with GOAWAY ENHANCE_YOUR_CALM', async () => {
  over = { prematureResets: { totalStreamCount: 20, minStreamLifetimeMs: 1000 } };
  let called = 0;
  service = async () => {
    called++;
    return answer(200, 'x');
  };
  const { sock, until, closed } = raw();
  const parts = [clientStart()];
  for (let id = 1; id < 60; id += 2) parts.push(rawRequest(id, 'x'), rstStream(id, constants.NGHTTP2_CANCEL));
  sock.write(Buffer.concat(parts));
  const g = await until(isGoaway);
  expect(goawayCode(g)).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  await closed;
  expect(called).toBe(0);
  expect(limits).toEqual(['premature-resets']);
});

test('the preface is checked and the first frame must be SETTINGS; PING is answered with its payload', async () => {
  const bad = raw();
  bad.sock.write('GET / HTTP/1.1\r\n\r\n');
  await bad.closed;
  const noSettings = raw();
  noSettings.sock.write(Buffer.concat([PREFACE, frame(FRAME.PING, 0, 0, Buffer.alloc(8))]));
  expect(goawayCode(await noSettings.until(isGoaway))).toBe(constants.NGHTTP2_PROTOCOL_ERROR);
  const ok = raw();
  ok.sock.write(Buffer.concat([clientStart(), frame(FRAME.PING, 0, 0, Buffer.from('12345678'))]));
  const pong = await ok.until((f) => f.type === FRAME.PING);
  expect(pong.flags).toBe(FLAG.ACK);
  expect(pong.payload.toString()).toBe('12345678');
});

test('a header block in HEADERS and CONTINUATION is one request; one left open closes the connection after the headers timeout', async () => {
  over = { headersTimeoutMs: 200 };
  service = async (req) => answer(200, req.headers['x-a'] as string);
  const { sock, until } = raw();
  const block = headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'x'], ['x-a', 'joined']]);
  sock.write(Buffer.concat([clientStart(), frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, 10)), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(10))]));
  const data = await until((f) => f.type === FRAME.DATA && f.id === 1);
  expect(data.payload.toString()).toBe('joined');
  const half = raw();
  half.sock.write(Buffer.concat([clientStart(), rawRequest(1, 'x'), frame(FRAME.HEADERS, FLAG.END_STREAM, 3, block.subarray(0, 10))]));
  const t0 = Date.now();
  await half.closed;
  expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  expect(limits).toEqual(['request-headers-timeout']);
});

test('a connection whose first stream does not come within the headers timeout is closed', async () => {
  over = { headersTimeoutMs: 150 };
  const { sock, closed } = raw();
  sock.write(clientStart());
  const t0 = Date.now();
  await closed;
  expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
  expect(limits).toEqual(['request-headers-timeout']);
});

test('a stream on which nothing moves is reset with CANCEL after the stream idle timeout; an idle connection is closed', async () => {
  over = { streamIdleTimeoutMs: 200, idleTimeoutMs: 300 };
  let signal: ProxyRequest['signal'] | undefined;
  service = (req) => {
    signal = req.signal;
    return new Promise(() => undefined);
  };
  const { sock, until, closed } = raw();
  sock.write(Buffer.concat([clientStart(), rawRequest(1, 'x')]));
  const t0 = Date.now();
  expect(rstCode(await until(isRst(1)))).toBe(constants.NGHTTP2_CANCEL);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  expect(signal?.aborted).toBe(true);
  await closed;
  expect(limits).toEqual(['stream-idle-timeout', 'idle-connection-timeout']);
});

test('a response body that fails mid-way resets the stream (INTERNAL_ERROR): the client never takes it for whole', async () => {
  service = async () => {
    const body = new Readable({ read() {} });
    body.push(Buffer.from('part'));
    setTimeout(() => body.destroy(new Error('upstream gone')), 20);
    return { status: 200, headers: {}, body, trailers: () => undefined };
  };
  const r = await fetch(client(), { ':path': '/', ':authority': 'x' });
  expect(r.head[':status']).toBe(200);
  expect(r.body.toString()).toBe('part');
  expect(r.rst).toBe(constants.NGHTTP2_INTERNAL_ERROR);
});

test('draining: GOAWAY NO_ERROR names the last stream, which still completes; later streams are refused', async () => {
  let release!: () => void;
  service = () => new Promise<ProxyResponse>((r) => (release = () => r(answer(200, 'late'))));
  const { sock, until, closed, frames } = raw();
  sock.write(Buffer.concat([clientStart(), rawRequest(1, 'x')]));
  await until((f) => f.type === FRAME.SETTINGS && f.flags === 0);
  await new Promise((r) => setTimeout(r, 20));
  for (const s of sessions) {
    s.close();
    s.flush();
  }
  const g = await until(isGoaway);
  expect(g.payload.readUInt32BE(0)).toBe(1);
  expect(goawayCode(g)).toBe(constants.NGHTTP2_NO_ERROR);
  sock.write(rawRequest(3, 'x'));
  expect(rstCode(await until(isRst(3)))).toBe(constants.NGHTTP2_REFUSED_STREAM);
  release();
  await until((f) => f.type === FRAME.DATA && f.id === 1 && (f.flags & FLAG.END_STREAM) !== 0);
  expect(Buffer.concat(frames.filter((f) => f.type === FRAME.DATA && f.id === 1).map((f) => f.payload)).toString()).toBe('late');
  await closed;
});

test('a response waits for the client\'s window (SETTINGS_INITIAL_WINDOW_SIZE 0): DATA, then trailers, once WINDOW_UPDATE gives some', async () => {
  service = async () => ({ status: 200, headers: {}, body: Readable.from([Buffer.from('abcdef')]), trailers: () => ({ 'grpc-status': '0' }) });
  const { sock, until, frames } = raw();
  const zero = Buffer.alloc(6);
  zero.writeUInt16BE(4, 0); // SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 section 6.5.2)
  zero.writeUInt32BE(0, 2);
  sock.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, zero), rawRequest(1, 'x')]));
  await until((f) => f.type === FRAME.HEADERS && f.id === 1);
  await new Promise((r) => setTimeout(r, 50));
  expect(frames.filter((f) => f.id === 1).map((f) => f.type)).toEqual([FRAME.HEADERS]);
  const inc = (n: number) => {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(n);
    return frame(FRAME.WINDOW_UPDATE, 0, 1, p);
  };
  sock.write(inc(4));
  await until((f) => f.type === FRAME.DATA && f.id === 1);
  await new Promise((r) => setTimeout(r, 50));
  expect(frames.filter((f) => f.type === FRAME.DATA).map((f) => f.payload.toString())).toEqual(['abcd']);
  sock.write(inc(100));
  const trailers = await until((f) => f.type === FRAME.HEADERS && f.id === 1 && (f.flags & FLAG.END_STREAM) !== 0);
  expect(trailers.fields).toEqual(['grpc-status', '0']);
  expect(frames.filter((f) => f.type === FRAME.DATA).map((f) => f.payload.toString())).toEqual(['abcd', 'ef']);
});

test("request bodies from three clients at once, read slowly by the service, arrive byte for byte (the session reads into the thread's shared buffer: what it keeps is copied)", async () => {
  const pattern = (n: number, seed: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let k = 0; k < n; k++) b[k] = (k * 7 + seed * 31 + (k >>> 10) * 13) & 0xff;
    return b;
  };
  service = async (req) => {
    const parts: Buffer[] = [];
    let i = 0;
    for await (const c of req.body as AsyncIterable<Buffer>) {
      parts.push(c);
      // A slow reader: the chunks it has not taken wait in the body while other clients' reads land.
      if (++i % 4 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    return answer(200, Buffer.concat(parts).toString('base64'));
  };
  const bodies = [1, 2, 3].map((seed) => pattern(200_000 + seed * 7_777, seed));
  const results = await Promise.all(
    bodies.map((b) => {
      // 2 KiB writes: each a DATA frame of its own, several to a read.
      const pieces: Buffer[] = [];
      for (let off = 0; off < b.length; off += 2048) pieces.push(b.subarray(off, off + 2048));
      return fetch(client(), { ':method': 'POST', ':path': '/', ':authority': 'x' }, Readable.from(pieces));
    }),
  );
  results.forEach((r, i) => expect(Buffer.from(r.body.toString(), 'base64').equals(bodies[i])).toBe(true));
});

test("a frame cut by a read's end waits as a copy: another connection's read, landing in the shared buffer meanwhile, does not change it", async () => {
  service = async (req) => answer(200, (await readAll(req.body!)).toString('latin1'));
  const a = raw();
  await new Promise((r) => a.sock.once('connect', r));
  const payload = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(6), 'latin1');
  const data = frame(FRAME.DATA, FLAG.END_STREAM, 1, payload);
  // The head and half a DATA frame in one read: the half waits for the rest.
  a.sock.write(Buffer.concat([clientStart(), rawRequest(1, 'x', '/', 'POST', false), data.subarray(0, 9 + 100)]));
  await new Promise((r) => setTimeout(r, 30));
  // Another connection's 60 KB read lands in the buffer the half was read into.
  const b = raw();
  b.sock.write(Buffer.alloc(60_000, 0x21));
  await b.closed;
  a.sock.write(data.subarray(9 + 100));
  const head = await a.until((f) => f.type === FRAME.DATA && f.id === 1);
  const body = Buffer.concat(a.frames.filter((f) => f.type === FRAME.DATA && f.id === 1).map((f) => f.payload));
  expect(head.id).toBe(1);
  expect(body.toString('latin1')).toBe(payload.toString('latin1'));
});

test("a header block's first fragment waits as a copy while another connection's read lands in the shared buffer; its CONTINUATION completes the request", async () => {
  service = async (req) => answer(200, `${req.method} ${req.path} ${req.headers['x-a'] ?? '-'} ${req.headers['x-b'] ?? '-'}`);
  const a = raw();
  await new Promise((r) => a.sock.once('connect', r));
  const va = 'a'.repeat(120);
  const vb = 'b'.repeat(120);
  const block = headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/fragmented/path'], [':authority', 'x'], ['x-a', va], ['x-b', vb]]);
  a.sock.write(Buffer.concat([clientStart(), frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, 200))]));
  await new Promise((r) => setTimeout(r, 30));
  const b = raw();
  b.sock.write(Buffer.alloc(60_000, 0x21));
  await b.closed;
  a.sock.write(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(200)));
  await a.until((f) => f.type === FRAME.DATA && f.id === 1);
  const body = Buffer.concat(a.frames.filter((f) => f.type === FRAME.DATA && f.id === 1).map((f) => f.payload));
  expect(body.toString()).toBe(`GET /fragmented/path ${va} ${vb}`);
});
