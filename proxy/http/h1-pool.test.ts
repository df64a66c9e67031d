import { createServer, Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type OnReadOpts, type Server as NetServer, type Socket, type AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { Readable } from 'node:stream';
import { H1Pool } from './h1-pool.js';
import type { ProxyRequest, ProxyResponse } from './exchange.js';
import type { Headers } from './headers.js';
import { ProxyError } from '../errors/proxy-error.js';
import { FakeClock } from '../../common/clock.js';

const servers: (Server | NetServer)[] = [];
const pools: H1Pool[] = [];

afterEach(async () => {
  for (const p of pools.splice(0)) p.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(() => r(undefined)))));
});

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  trailers: Record<string, string>;
  body: string;
  socket: Socket;
}

/** An HTTP/1.1 app; `handle` answers, every request is recorded with its connection. */
async function app(handle: (req: IncomingMessage, res: ServerResponse, body: string) => void, tune?: (s: Server) => void): Promise<{ port: number; seen: Seen[]; connections: Set<Socket> }> {
  const seen: Seen[] = [];
  const connections = new Set<Socket>();
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, trailers: req.trailers as Record<string, string>, body, socket: req.socket });
      handle(req, res, body);
    });
  });
  server.on('connection', (s: Socket) => connections.add(s));
  tune?.(server);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, seen, connections };
}

/** A raw TCP server scripted per connection, for misbehaving apps. */
async function rawApp(onConnection: (s: Socket, n: number) => void): Promise<number> {
  let n = 0;
  const server = createNetServer((s) => onConnection(s, n++));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

function request(over: Partial<ProxyRequest> = {}): ProxyRequest {
  return {
    method: 'GET', scheme: 'http', authority: 'app.local', path: '/', headers: {}, body: null, trailers: () => undefined,
    origProto: 'HTTP/1.1', source: { address: '127.0.0.1', port: 1, identity: '' }, signal: new AbortController().signal, startedAt: 0,
    ...over,
  };
}

function pool(opts?: ConstructorParameters<typeof H1Pool>[0]): H1Pool {
  const p = new H1Pool(opts);
  pools.push(p);
  return p;
}

async function text(res: ProxyResponse): Promise<string> {
  if (!res.body) return '';
  let s = '';
  for await (const c of res.body) s += (c as Buffer).toString('latin1');
  return s;
}

const send = (p: H1Pool, port: number, over: Partial<ProxyRequest> = {}, head: Headers = {}) => p.request('127.0.0.1', port, request(over), head);

describe('H1Pool', () => {
  it('reuses one kept-alive connection for requests in sequence and cleans the response head', async () => {
    const a = await app((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-app': 'a', connection: 'keep-alive' });
      res.end('hi');
    });
    const p = pool();
    for (let i = 0; i < 3; i++) {
      const res = await send(p, a.port, { path: `/n/${i}` }, { 'x-req': String(i) });
      expect(res.status).toBe(200);
      expect(res.headers).toMatchObject({ 'content-type': 'text/plain', 'x-app': 'a' });
      expect(res.headers['connection']).toBeUndefined();
      expect(res.headers['keep-alive']).toBeUndefined();
      expect(await text(res)).toBe('hi');
    }
    expect(a.connections.size).toBe(1);
    expect(a.seen.map((s) => s.url)).toEqual(['/n/0', '/n/1', '/n/2']);
    expect(a.seen[2].headers).toMatchObject({ host: 'app.local', 'x-req': '2' });
  });

  it('streams a request body with a Content-Length as is, and one without it chunked with its trailers', async () => {
    const a = await app((_req, res) => res.end('ok'));
    const p = pool();
    const fixed = await send(p, a.port, { method: 'PUT', body: Readable.from([Buffer.from('abc'), Buffer.from('def')]) }, { 'content-length': '6' });
    expect(await text(fixed)).toBe('ok');
    expect(a.seen[0]).toMatchObject({ method: 'PUT', body: 'abcdef' });
    expect(a.seen[0].headers['transfer-encoding']).toBeUndefined();
    const chunked = await send(p, a.port, { method: 'POST', body: Readable.from([Buffer.from('part1 '), Buffer.from(''), Buffer.from('part2')]), trailers: () => ({ 'x-sum': '42' }) });
    expect(await text(chunked)).toBe('ok');
    expect(a.seen[1]).toMatchObject({ method: 'POST', body: 'part1 part2', trailers: { 'x-sum': '42' } });
    expect(a.seen[1].headers['transfer-encoding']).toBe('chunked');
    // A bodyless POST says so (as node's ClientRequest does); a bodyless GET says nothing.
    await text(await send(p, a.port, { method: 'POST' }));
    expect(a.seen[2].headers['content-length']).toBe('0');
    await text(await send(p, a.port));
    expect(a.seen[3].headers['content-length']).toBeUndefined();
    expect(a.connections.size).toBe(1);
  });

  it('sends a small request body with its head in one write: settled, or arriving within the same turn', async () => {
    const a = await app((_req, res) => res.end('ok'));
    let flushes = 0;
    const spy = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket => {
      const s = netConnect({ host, port, onread }) as Socket & { _write: (...x: unknown[]) => void; _writev: (...x: unknown[]) => void };
      const w = s._write.bind(s);
      const wv = s._writev.bind(s);
      s._write = (...x: unknown[]) => (flushes++, w(...x)); // one flush: one write(2)/writev(2), one TLS record on a TLS socket
      s._writev = (...x: unknown[]) => (flushes++, wv(...x));
      return s;
    };
    const p = pool({ connect: spy });
    await text(await send(p, a.port)); // the connection is up and idle
    const settled = (...parts: string[]) => {
      const b = new Readable({ read() {} });
      for (const x of parts) b.push(x);
      b.push(null);
      return Object.defineProperty(b, 'settled', { value: true });
    };
    flushes = 0;
    await text(await send(p, a.port, { method: 'POST', body: settled('hello') }, { 'content-length': '5' }));
    expect(flushes).toBe(1);
    flushes = 0;
    await text(await send(p, a.port, { method: 'POST', body: settled('ab', 'cd'), trailers: () => ({ 'x-t': '1' }) }));
    expect(flushes).toBe(1);
    // Not settled, but its bytes come a few ticks later (as through the retry layer's replayable body).
    const later = (x: string) => new Readable({ read() { process.nextTick(() => process.nextTick(() => (this.push(x), this.push(null)))); } });
    flushes = 0;
    await text(await send(p, a.port, { method: 'PUT', body: later('fixed') }, { 'content-length': '5' }));
    expect(flushes).toBe(1);
    flushes = 0;
    await text(await send(p, a.port, { method: 'PUT', body: later('chunky'), trailers: () => ({ 'x-t': '2' }) }));
    expect(flushes).toBe(1);
    expect(a.seen.slice(1).map((r) => [r.body, r.trailers['x-t']])).toEqual([['hello', undefined], ['abcd', '1'], ['fixed', undefined], ['chunky', '2']]);
    expect(a.connections.size).toBe(1);
  });

  it('does not hold the head back for a body that is late: the app sees the request before its body', async () => {
    let headSeen: () => void = () => undefined;
    const seen = new Promise<void>((r) => (headSeen = r));
    const server = createServer((req, res) => {
      headSeen();
      let b = '';
      req.on('data', (c: Buffer) => (b += c.toString()));
      req.on('end', () => res.end(`got ${b}`));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const body = new Readable({ read() {} });
    const res = send(pool(), (server.address() as AddressInfo).port, { method: 'POST', body }, { 'content-length': '4' });
    await seen; // would wait for ever if the head waited for the body
    body.push('late');
    body.push(null);
    expect(await text(await res)).toBe('got late');
  });

  it('carries a large response with backpressure, intact', async () => {
    const blob = Buffer.alloc(6 << 20);
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 31) & 0xff;
    const a = await app((_req, res) => {
      res.writeHead(200, { 'content-length': String(blob.length) });
      res.end(blob);
    });
    const res = await send(pool(), a.port);
    const hash = createHash('sha256');
    let n = 0;
    for await (const c of res.body!) {
      hash.update(c as Buffer);
      n += (c as Buffer).length;
      if (n < 1 << 20) await new Promise((r) => setTimeout(r, 1)); // a slow reader first
    }
    expect(n).toBe(blob.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(blob).digest('hex'));
  });

  it('relays chunked responses with trailers, and bodyless HEAD and 204 responses', async () => {
    const a = await app((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(200, { 'content-length': '100' }).end();
      if (req.url === '/204') return void res.writeHead(204).end();
      res.writeHead(200, { trailer: 'x-checksum' });
      res.write('part1 ');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end('part2');
    });
    const p = pool();
    const res = await send(p, a.port);
    expect(await text(res)).toBe('part1 part2');
    expect(res.trailers()).toEqual({ 'x-checksum': 'abc123' });
    const head = await send(p, a.port, { method: 'HEAD' });
    expect(head.body).toBeNull();
    expect(head.headers['content-length']).toBe('100');
    expect((await send(p, a.port, { path: '/204' })).body).toBeNull();
    expect(a.connections.size).toBe(1);
  });

  it('opens a new connection after a `connection: close` response', async () => {
    const a = await app((_req, res) => {
      res.setHeader('connection', 'close');
      res.end('bye');
    });
    const p = pool();
    expect(await text(await send(p, a.port))).toBe('bye');
    expect(await text(await send(p, a.port))).toBe('bye');
    expect(a.connections.size).toBe(2);
    // With nothing open, the origin is forgotten (endpoints come and go).
    await new Promise((r) => setImmediate(r));
    expect((p as unknown as { origins: Map<string, unknown> }).origins.size).toBe(0);
  });

  it("a new origin's arrays have the maps of a used origin's, so the pool's optimised code takes it without a deoptimisation (object-array.ts)", async () => {
    setFlagsFromString('--allow-natives-syntax');
    const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
    const a = await app((_req, res) => res.end('ok'));
    const p = pool();
    expect(await text(await send(p, a.port))).toBe('ok');
    const origins = (p as unknown as { origins: Map<string, { idle: object[] }> }).origins;
    const used = [...origins.values()][0].idle;
    expect(used).toHaveLength(1); // the connection went back to it
    // An origin made later (as one is after the pool forgot the last: the idle timeout).
    const fresh = p.origin('127.0.0.1', 1).idle;
    expect(fresh).toHaveLength(0);
    expect(sameMap(fresh, used)).toBe(true);
  });

  it('a connection whose server ended its side while idle is closed, not kept half-open and reused (a transport that half-closes, as a mesh stream)', async () => {
    let accepted = 0;
    let serverClosed = 0;
    const port = await rawApp((s) => {
      accepted++;
      s.on('error', () => undefined);
      s.on('close', () => serverClosed++);
      // Answers one request (kept alive), then ends its side (a drain) and reads on.
      s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    });
    // allowHalfOpen, as a mux stream (mux-stream.ts): the server's FIN does not end our side by itself.
    // Fake time: the pool's idle timeout (4 s) must not be what closes it.
    const p = pool({ connect: (host, port) => netConnect({ host, port, allowHalfOpen: true }), clock: new FakeClock() });
    expect(await text(await send(p, port))).toBe('ok');
    for (let i = 0; i < 2000 && serverClosed === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(serverClosed).toBe(1);
    // The next request takes a new connection, not the one the server ended.
    expect(await text(await send(p, port))).toBe('ok');
    expect(accepted).toBe(2);
  });

  it('resends a bodyless request once when a reused connection turns out closed, but not one with a body', async () => {
    const port = await rawApp((s, n) => {
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        // The first connection answers once, then dies on its next request without a response.
        if (n === 0) s.once('data', () => s.destroy());
      });
    });
    const p = pool();
    expect(await text(await send(p, port))).toBe('ok');
    expect(await text(await send(p, port))).toBe('ok');
    const q = pool();
    const r2 = await rawApp((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        s.once('data', () => s.destroy());
      });
    });
    expect(await text(await send(q, r2))).toBe('ok');
    const err = await send(q, r2, { method: 'POST', body: Readable.from([Buffer.from('x')]) }).catch((e) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe('UPSTREAM_RESET');
  });

  it('sends a refused request again with its body when the body was small enough to keep (refusedReplayBytes), and not a larger one', async () => {
    const a = await app((_req, res) => res.end('ok'));
    // Each pool's first connection is refused by "the peer" once the request's bytes have gone out on it.
    let refusals = 0;
    const refusingPool = (): H1Pool => {
      let opened = 0;
      const connect = (host: string, port: number): Socket => {
        const s = netConnect({ host, port });
        if (opened++ > 0) return s;
        // The peer never takes what is written on it (a refused stream is never processed).
        let refused = false;
        s.write = (() => {
          if (!refused) {
            refused = true;
            refusals++;
            setTimeout(() => s.destroy(Object.assign(new Error('stream refused by the peer (REFUSED_STREAM)'), { refusedStream: true })), 20);
          }
          return true;
        }) as unknown as Socket['write'];
        return s;
      };
      return pool({ connect, refusedReplayBytes: 16 });
    };
    const body = () => Readable.from([Buffer.from('part1 '), Buffer.from('part2')]);
    const chunked = await send(refusingPool(), a.port, { method: 'POST', body: body(), trailers: () => ({ 'x-sum': '42' }) });
    expect(await text(chunked)).toBe('ok');
    const fixed = await send(refusingPool(), a.port, { method: 'POST', body: body() }, { 'content-length': '11' });
    expect(await text(fixed)).toBe('ok');
    // Only the whole requests reached the app, once each (the refused connections' bytes never made a request).
    expect(a.seen.map((x) => [x.body, x.trailers['x-sum'] ?? ''])).toEqual([['part1 part2', '42'], ['part1 part2', '']]);
    const big = await send(refusingPool(), a.port, { method: 'POST', body: Readable.from([Buffer.alloc(40, 0x61)]) }).catch((e) => e);
    expect((big as ProxyError).code).toBe('UPSTREAM_RESET');
    expect(a.seen).toHaveLength(2);
    expect(refusals).toBe(3);
  });

  // The replay's wait for its new connection is a wait like the first: the per-try timers
  // (layers/request-state.ts) stand still through it. The pool told only the first.
  it('tells the request\'s connection wait of every connection it waits for: the first, and the new one after a refused stream', async () => {
    const a = await app((_req, res) => res.end('ok'));
    let opened = 0;
    const connect = (host: string, port: number): Socket => {
      const s = netConnect({ host, port });
      if (opened++ > 0) return s;
      let refused = false;
      s.write = (() => {
        if (!refused) {
          refused = true;
          // Refused once the connection is up (the peer's answer to the stream).
          const refuse = () => setImmediate(() => s.destroy(Object.assign(new Error('stream refused by the peer (REFUSED_STREAM)'), { refusedStream: true })));
          if (s.connecting) s.once('connect', refuse);
          else refuse();
        }
        return true;
      }) as unknown as Socket['write'];
      return s;
    };
    const told: string[] = [];
    const wait = { waitsForConnection: () => void told.push('waits'), connected: () => void told.push('connected') };
    const res = await pool({ connect }).request('127.0.0.1', a.port, request(), {}, undefined, 0, '', '', wait);
    expect(await text(res)).toBe('ok');
    expect(opened).toBe(2);
    expect(told).toEqual(['waits', 'connected', 'waits', 'connected']);
  });

  it('does not resend a bodyless non-idempotent request (RFC 9110 section 9.2.2): the server may have taken it before dying', async () => {
    let posts = 0;
    // Every request is answered, but the first connection's second one (the POST): taken, then the connection dies.
    const port = await rawApp((s, n) => {
      let seen = 0;
      s.on('data', (d: Buffer) => {
        if (d.toString('latin1').startsWith('POST')) posts++;
        if (n === 0 && ++seen === 2) s.destroy();
        else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      });
    });
    const p = pool();
    expect(await text(await send(p, port))).toBe('ok');
    const err = await send(p, port, { method: 'POST' }).catch((e) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe('UPSTREAM_RESET');
    expect(posts).toBe(1);
  });

  it('drops idle connections the app closes, and those past the app keep-alive hint', async () => {
    const a = await app((_req, res) => res.end('x'), (s) => (s.keepAliveTimeout = 50));
    const p = pool();
    await text(await send(p, a.port));
    await new Promise((r) => setTimeout(r, 200));
    expect(await text(await send(p, a.port))).toBe('x');
    expect(a.connections.size).toBe(2);
    // `keep-alive: timeout=1` leaves no safe reuse window (the pool keeps 1 s of margin).
    const b = await app((_req, res) => {
      res.setHeader('keep-alive', 'timeout=1');
      res.end('y');
    });
    await text(await send(p, b.port));
    await text(await send(p, b.port));
    expect(b.connections.size).toBe(2);
  });

  it('queues requests beyond maxSockets', async () => {
    let open = 0;
    let peak = 0;
    const a = await app((_req, res) => setTimeout(() => res.end('slow'), 30));
    const p = pool({ maxSockets: 2 });
    const server = servers[servers.length - 1] as Server;
    server.on('connection', (s: Socket) => {
      peak = Math.max(peak, ++open);
      s.on('close', () => open--);
    });
    const all = await Promise.all(Array.from({ length: 6 }, () => send(p, a.port).then(text)));
    expect(all).toEqual(Array(6).fill('slow'));
    expect(peak).toBe(2);
    expect(a.connections.size).toBe(2);
  });

  it('cancels on the abort signal, queued or in flight, and closes the connection', async () => {
    const a = await app(() => undefined); // never answers
    const p = pool({ maxSockets: 1 });
    const first = new AbortController();
    const second = new AbortController();
    const r1 = send(p, a.port, { signal: first.signal }).catch((e) => e);
    const r2 = send(p, a.port, { signal: second.signal }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 50));
    second.abort();
    expect(((await r2) as ProxyError).code).toBe('CLIENT_CANCELLED');
    const closed = new Promise((r) => [...a.connections][0].once('close', r));
    first.abort();
    expect(((await r1) as ProxyError).code).toBe('CLIENT_CANCELLED');
    await closed;
  });

  it('closes the connection when the consumer drops the body before its end', async () => {
    const a = await app((_req, res) => {
      res.writeHead(200, { 'content-length': String(1 << 20) });
      res.write(Buffer.alloc(1024));
    });
    const p = pool();
    const res = await send(p, a.port);
    const closed = new Promise((r) => [...a.connections][0].once('close', r));
    res.body!.destroy();
    await closed;
  });

  it('reports app failures with the proxy error codes', async () => {
    const p = pool();
    const refused = await rawApp((s) => s.destroy());
    const server = servers.pop() as NetServer;
    await new Promise((r) => server.close(r));
    expect(((await send(p, refused).catch((e) => e)) as ProxyError).code).toBe('CONNECT_REFUSED');
    const garbage = await rawApp((s) => s.once('data', () => s.end('SSH-2.0-OpenSSH\r\n\r\n')));
    expect(((await send(p, garbage).catch((e) => e)) as ProxyError).code).toBe('UPSTREAM_PROTOCOL');
    const cut = await rawApp((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')));
    const res = await send(p, cut);
    await expect(text(res)).rejects.toMatchObject({ code: 'UPSTREAM_RESET' });
  });

  it('refuses to write request heads that would break the framing', async () => {
    let connections = 0;
    const port = await rawApp(() => connections++);
    const p = pool();
    for (const [over, head] of [
      [{}, { 'x-a': 'a\r\nx-injected: 1' }],
      [{}, { 'bad name': '1' }],
      [{ path: '/a b' }, {}],
      [{ method: 'GE T' }, {}],
    ] as [Partial<ProxyRequest>, Headers][]) {
      expect(((await send(p, port, over, head).catch((e) => e)) as ProxyError).code).toBe('BAD_REQUEST');
    }
    expect(connections).toBe(0);
  });

  it('rides on an http.Agent: its maxSockets, and agent.destroy() closes the connections', async () => {
    const a = await app((_req, res) => res.end('z'));
    const agent = new Agent({ keepAlive: true, maxSockets: 3 });
    const p = H1Pool.of(agent);
    expect(H1Pool.of(agent)).toBe(p);
    expect(p.maxSockets).toBe(3);
    await text(await send(p, a.port));
    const closed = new Promise((r) => [...a.connections][0].once('close', r));
    agent.destroy();
    await closed;
  });

  it('says a response body is settled once the parser has seen its end, and not while it streams', async () => {
    let finish: () => void = () => undefined;
    const a = await app((req, res) => {
      if (req.url === '/small') return res.end('whole');
      res.writeHead(200, { 'content-length': '10' });
      res.write('part1');
      finish = () => res.end('part2');
    });
    const p = pool();
    const small = await send(p, a.port, { path: '/small' });
    await new Promise((r) => setImmediate(r));
    expect((small.body as unknown as { settled: boolean }).settled).toBe(true);
    expect(await text(small)).toBe('whole');
    const big = await send(p, a.port, { path: '/streaming' });
    expect((big.body as unknown as { settled: boolean }).settled).toBe(false);
    const got = text(big);
    finish();
    expect(await got).toBe('part1part2');
    expect((big.body as unknown as { settled: boolean }).settled).toBe(true);
  });

  it('bounds the connect with connectTimeoutMs (a request\'s waitMs overrides it): CONNECT_TIMEOUT', async () => {
    // A TLS handshake that never completes (a peer that accepts and stays silent): the transport is never up.
    const { connect: tlsConnect } = await import('node:tls');
    const held: Socket[] = [];
    const silent = await rawApp((s) => void held.push(s));
    const hanging = (host: string, port: number) => tlsConnect({ host, port, rejectUnauthorized: false }) as unknown as Socket;
    const p = pool({ connect: hanging, secure: true, connectTimeoutMs: 100 });
    const t0 = Date.now();
    expect(((await send(p, silent).catch((e) => e)) as ProxyError).code).toBe('CONNECT_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    const t1 = Date.now();
    const viaWait = await p.request('127.0.0.1', silent, request(), {}, undefined, 300).catch((e) => e);
    expect((viaWait as ProxyError).code).toBe('CONNECT_TIMEOUT');
    expect(Date.now() - t1).toBeGreaterThanOrEqual(280);
    for (const s of held) s.destroy();
  });

  it('keeps origins of different peer identities apart, and retire() ends reuse of the connections open now', async () => {
    const a = await app((_req, res) => res.end('r'));
    const p = pool();
    await text(await p.request('127.0.0.1', a.port, request(), {}, undefined, 0, 'spiffe://td/ns/a/sa/x'));
    await text(await p.request('127.0.0.1', a.port, request(), {}, undefined, 0, 'spiffe://td/ns/a/sa/y'));
    expect(a.connections.size).toBe(2);
    expect(p.connections('127.0.0.1', a.port, 'spiffe://td/ns/a/sa/x')).toBe(1);
    const closed = new Promise((r) => [...a.connections][0].once('close', r));
    p.retire();
    await closed;
    await text(await p.request('127.0.0.1', a.port, request(), {}, undefined, 0, 'spiffe://td/ns/a/sa/x'));
    expect(a.connections.size).toBe(3);
  });

  it('drain() closes the idle connections to an origin now and the busy ones after their exchange, giving their slots back; a queued request moves to a new connection', async () => {
    const a = await app((req, res) => setTimeout(() => res.end('d'), req.url === '/slow' ? 200 : 0));
    const closed = new Set<Socket>();
    const p = pool({ maxSockets: 1 });
    let held = 0;
    const limits = { admitConnection: () => (held++, { release: () => void held-- }) };
    const go = (path: string) => p.request('127.0.0.1', a.port, request({ path }), {}, limits, 1000).then(text);
    await go('/idle');
    const idle = [...a.connections][0];
    expect(held).toBe(1);
    p.drain('127.0.0.1', a.port);
    await new Promise((r) => idle.once('close', r));
    expect(held).toBe(0);
    // Busy, with a request queued behind it (maxSockets 1).
    const slow = go('/slow');
    await new Promise((r) => setTimeout(r, 50));
    const queued = go('/queued');
    const busy = [...a.connections].find((c) => c !== idle)!;
    busy.once('close', () => closed.add(busy));
    p.drain('127.0.0.1', a.port);
    await new Promise((r) => setTimeout(r, 50));
    expect(closed.has(busy)).toBe(false); // its exchange goes on
    expect(await slow).toBe('d');
    expect(await queued).toBe('d');
    expect(closed.has(busy)).toBe(true);
    expect(a.seen.find((x) => x.url === '/queued')!.socket).not.toBe(busy);
    expect(a.connections.size).toBe(3);
    expect(held).toBe(1); // the queued request's new connection, idle now
  });

  it('adds the caller\'s extra field lines to the head as they are', async () => {
    const a = await app((_req, res) => res.end('e'));
    await text(await pool().request('127.0.0.1', a.port, request(), { 'x-a': '1' }, undefined, 0, '', 'wren-target-port: 8080\r\nwren-orig-proto: HTTP/1.1\r\n'));
    expect(a.seen[0].headers).toMatchObject({ 'x-a': '1', 'wren-target-port': '8080', 'wren-orig-proto': 'HTTP/1.1' });
  });

  it('reads into its own buffer (onread): no \'data\' event per read, and bodies stay intact across reads', async () => {
    const blob = randomBytes(1 << 20); // not periodic: a chunk overwritten by a later read cannot look the same
    const a = await app((req, res) => res.end(req.url === '/big' ? blob : 'small'));
    const given: (OnReadOpts | undefined)[] = [];
    let dataEvents = 0;
    const spy = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket => {
      given.push(onread);
      return netConnect({ host, port, onread }).on('data', () => void dataEvents++);
    };
    const p = pool({ connect: spy });
    expect(await text(await send(p, a.port, { path: '/small' }))).toBe('small');
    // A slow reader: reads after the first overwrite the connection's buffer while earlier chunks wait unread.
    const res = await send(p, a.port, { path: '/big' });
    const chunks: Buffer[] = [];
    for await (const c of res.body!) {
      chunks.push(c as Buffer);
      if (chunks.length < 4) await new Promise((r) => setTimeout(r, 5));
    }
    expect(Buffer.concat(chunks).equals(blob)).toBe(true);
    expect(given).toHaveLength(1);
    expect(Buffer.isBuffer(given[0]?.buffer)).toBe(true);
    expect(dataEvents).toBe(0);
  });

  it('a request that waited for its connection says when it was sent (sentAt, the balancer\'s latency start); one sent at once on a kept-alive connection does not', async () => {
    const a = await app((_req, res) => res.end('ok'));
    const clock = new FakeClock();
    const p = pool({ clock });
    const t0 = clock.now();
    const first = send(p, a.port);
    clock.advance(250); // the connection comes up on a later turn: it is 250 ms later when the request goes out
    const res = await first;
    expect(res.sentAt).toBe(t0 + 250);
    expect(await text(res)).toBe('ok');
    const again = await send(p, a.port);
    expect(again.sentAt).toBe(-1);
    expect(await text(again)).toBe('ok');
  });

  it('closes a connection idleTimeoutMs after it last went idle, with one timer that re-checks when it fires', async () => {
    const a = await app((_req, res) => res.end('ok'));
    const clock = new FakeClock();
    let timeouts = 0;
    const p = pool({ clock, idleTimeoutMs: 100, onIdleTimeout: () => timeouts++ });
    expect(await text(await send(p, a.port))).toBe('ok');
    expect(clock.pending()).toBe(1); // armed for t+100
    clock.advance(60);
    expect(await text(await send(p, a.port))).toBe('ok'); // idle again from t+60: due t+160
    expect(clock.pending()).toBe(1); // the same timer: not re-armed per request
    clock.advance(40); // t+100: it fires, finds 40 ms of idleness, waits for the rest
    expect(p.connections('127.0.0.1', a.port)).toBe(1);
    expect(clock.pending()).toBe(1);
    clock.advance(59);
    expect(p.connections('127.0.0.1', a.port)).toBe(1);
    expect(timeouts).toBe(0);
    clock.advance(1); // t+160
    expect(p.connections('127.0.0.1', a.port)).toBe(0);
    expect(timeouts).toBe(1);
    expect(clock.pending()).toBe(0);
    // A shorter keep-alive hint after the timer was armed moves it earlier.
    const b = await app((_req, res) => {
      res.setHeader('keep-alive', 'timeout=2'); // 2 s less the pool's 1 s of margin: 1000 ms
      res.end('y');
    });
    const q = pool({ clock, idleTimeoutMs: 5000, onIdleTimeout: () => timeouts++ });
    expect(await text(await send(q, b.port))).toBe('y');
    clock.advance(999);
    expect(q.connections('127.0.0.1', b.port)).toBe(1);
    clock.advance(1);
    expect(q.connections('127.0.0.1', b.port)).toBe(0);
    expect(timeouts).toBe(2);
  });

  it("lengthens a connection's idle timeout to the server's keep-alive hint, less 1 s, up to maxIdleTimeoutMs; without one the pool's own", async () => {
    // A raw app: node's server would add its own `Keep-Alive: timeout=5` to every response.
    let hint: string | undefined = 'timeout=5';
    const port = await rawApp((sock) =>
      sock.on('data', () => sock.write(`HTTP/1.1 200 OK\r\ncontent-length: 2\r\n${hint === undefined ? '' : `keep-alive: ${hint}\r\n`}\r\nok`)),
    );
    const clock = new FakeClock();
    const p = pool({ clock, idleTimeoutMs: 100, maxIdleTimeoutMs: 10_000 });
    expect(await text(await send(p, port))).toBe('ok');
    clock.advance(3999);
    expect(p.connections('127.0.0.1', port)).toBe(1);
    clock.advance(1);
    expect(p.connections('127.0.0.1', port)).toBe(0);
    // A hint past the cap: the cap.
    hint = 'timeout=60';
    expect(await text(await send(p, port))).toBe('ok');
    clock.advance(9999);
    expect(p.connections('127.0.0.1', port)).toBe(1);
    clock.advance(1);
    expect(p.connections('127.0.0.1', port)).toBe(0);
    // The same connection's next response without a hint: the pool's 100 ms again.
    expect(await text(await send(p, port))).toBe('ok');
    hint = undefined;
    expect(await text(await send(p, port))).toBe('ok');
    clock.advance(100);
    expect(p.connections('127.0.0.1', port)).toBe(0);
    // Without maxIdleTimeoutMs a hint only shortens.
    hint = 'timeout=60';
    const q = pool({ clock, idleTimeoutMs: 100 });
    expect(await text(await send(q, port))).toBe('ok');
    clock.advance(100);
    expect(q.connections('127.0.0.1', port)).toBe(0);
    // The pool on an http.Agent (the app's, unmeshed endpoints') takes hints up to 10 minutes (undici's keepAliveMaxTimeout).
    const agent = new Agent();
    expect(H1Pool.of(agent).maxIdleTimeoutMs).toBe(600_000);
    expect(H1Pool.of(agent).idleTimeoutMs).toBe(4000);
    agent.destroy();
  });

  it("keeps the idle timeout off the socket's own timer (node re-arms that per read and write); a slow exchange is not cut by it", async () => {
    const a = await app((req, res) => (req.url === '/slow' ? setTimeout(() => res.end('late'), 250) : res.end('ok')));
    let armed = 0;
    const spy = (host: string, port: number, _peer: string, onread?: OnReadOpts): Socket => {
      const s = netConnect({ host, port, onread });
      const setTimeout = s.setTimeout.bind(s);
      s.setTimeout = (ms: number) => (armed++, setTimeout(ms));
      return s;
    };
    const p = pool({ connect: spy, idleTimeoutMs: 100 });
    for (let i = 0; i < 20; i++) expect(await text(await send(p, a.port))).toBe('ok');
    // Never: without a connect timeout the socket's timer is not used (it was armed once when
    // the connection came up, and node re-armed it on every read and write after that).
    expect(armed).toBe(0);
    // Busy for longer than the idle timeout: the timer fires and is ignored, the exchange completes.
    expect(await text(await send(p, a.port, { path: '/slow' }))).toBe('late');
    expect(await text(await send(p, a.port))).toBe('ok');
    expect(a.connections.size).toBe(1);
    // Idle past it: closed.
    await new Promise((r) => setTimeout(r, 250));
    expect(p.connections('127.0.0.1', a.port)).toBe(0);
  });
});

test("over a mux stream whose session reads into the thread's shared buffer, response body chunks are copies: a slow reader gets them whole while another stream's reads overwrite that buffer", async () => {
  const { MuxTestPairs } = await import('../mux/mux-test-pair.js');
  const pairs = new MuxTestPairs();
  try {
    const body = Buffer.alloc(300_000);
    for (let k = 0; k < body.length; k++) body[k] = (k * 7 + (k >>> 10) * 13) & 0xff;
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    let noiseSent = 0;
    const p = await pairs.pair({
      onStream: (st) =>
        st.once('data', (first: Buffer) => {
          if (first.toString('latin1').startsWith('NOISE')) {
            // Another virtual connection's bytes, a little at a time for as long as the test runs.
            const pump = async (): Promise<void> => {
              while (!st.destroyed && noiseSent < 4_000_000) {
                st.write(Buffer.alloc(3000, 0x6e));
                noiseSent += 3000;
                await turn();
              }
            };
            void pump();
            return;
          }
          // The response in 2 KiB writes, one a turn: each a small frame, read as a view.
          void (async () => {
            st.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
            for (let off = 0; off < body.length; off += 2048) {
              st.write(body.subarray(off, off + 2048));
              await turn();
            }
          })();
        }),
    });
    expect(p.client.viewReads).toBe(true);
    const noise = p.client.open()!;
    let noiseGot = 0;
    noise.on('data', (d: Buffer) => void (noiseGot += d.length));
    noise.write('NOISE');
    const hp = pool({
      connect: () => {
        const s = p.client.open()!;
        process.nextTick(() => s.emit('connect'));
        return s as unknown as Socket;
      },
    });
    const res = await hp.request('peer', 80, request(), {});
    const got: Buffer[] = [];
    let reads = 0;
    for await (const c of res.body as AsyncIterable<Buffer>) {
      got.push(c);
      // A slow reader: the chunks it has not taken wait in the body while the noise is read.
      if (++reads % 4 === 0) await new Promise((r) => setTimeout(r, 3));
    }
    expect(noiseGot).toBeGreaterThan(100_000);
    const all = Buffer.concat(got);
    expect(all.length).toBe(body.length);
    expect(all.equals(body)).toBe(true);
  } finally {
    pairs.close();
  }
});

describe('interim (1xx) responses (RFC 9110 section 15.2)', () => {
  const interimApp = (n: number, line = 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n') =>
    rawApp((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.write(line.repeat(n) + 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    });

  test('a few are skipped and the final response delivered; more than MAX_INTERIM_RESPONSES to one request is a protocol error (502 UPE), counted once', async () => {
    const limits: string[] = [];
    const p = pool({ onLimit: (l) => limits.push(l) });
    const few = await send(p, await interimApp(16, 'HTTP/1.1 100 Continue\r\n\r\n'));
    expect([few.status, await text(few)]).toEqual([200, 'ok']);
    // An app answering with 1xx without end (here a thousand in one read, then a 200 the client must not get).
    const err = await send(p, await interimApp(1000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe('UPSTREAM_PROTOCOL');
    expect((err as ProxyError).httpStatus).toBe(502);
    expect(limits).toEqual(['interim-responses']);
  });

  test('the count is per request: a connection reused after a response with interim ones starts again', async () => {
    const port = await rawApp((s) => {
      s.on('error', () => undefined);
      s.on('data', () => s.write('HTTP/1.1 100 Continue\r\n\r\n'.repeat(10) + 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    });
    const p = pool({ onLimit: () => { throw new Error('no limit expected'); } });
    for (let i = 0; i < 3; i++) expect(await text(await send(p, port))).toBe('ok');
  });
});
