import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { request as httpRequest, Agent } from 'node:http';
import { H1Server, type H1ServerOptions } from './h1-server.js';
import type { BodyStream, HttpService, ProxyRequest, ProxyResponse } from './exchange.js';
import { settledBody } from './settled-body.js';
import { FakeClock, systemClock } from '../../common/clock.js';
import { ProxyError } from '../errors/proxy-error.js';
import { createServer as createTlsServer, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { peerSpiffeId } from '../tls/peer-identity.js';
import { testPki } from '../../test/helpers/pki.js';

let listener: Server;
let port: number;
let h1: H1Server;
const seen: ProxyRequest[] = [];
const limits: string[] = [];
const clientErrors: string[] = [];
const exchanges = { now: 0 };

const text = (s: string, headers: Record<string, string> = {}): ProxyResponse => ({ status: 200, headers: { 'content-type': 'text/plain', ...headers }, body: settledBody(Buffer.from(s)), trailers: () => undefined });

async function start(service: HttpService, opts: Partial<H1ServerOptions> = {}): Promise<void> {
  h1 = new H1Server({
    service: (req) => {
      seen.push(req);
      return service(req);
    },
    maxHeaderBytes: 1024,
    clock: systemClock,
    identityOf: () => 'spiffe://test/ns/a/sa/b',
    onLimit: (l) => limits.push(l),
    onClientError: (e) => clientErrors.push(`${e.label}:${e.reason}`),
    onExchange: (d) => (exchanges.now += d),
    ...opts,
  });
  listener = createServer({ allowHalfOpen: true }, (s) => h1.serve(s));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  port = (listener.address() as AddressInfo).port;
}

afterEach(async () => {
  h1.close();
  await new Promise((r) => listener.close(r));
  seen.length = limits.length = clientErrors.length = 0;
  exchanges.now = 0;
});

/** Raw bytes in; what came back once the server closed (or `until` matched). */
async function raw(wire: string | ((s: Socket) => void), until?: RegExp, maxMs = 3000): Promise<{ text: string; closed: boolean }> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  let got = '';
  let closed = false;
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.on('error', () => undefined);
  const end = new Promise<void>((r) => s.once('close', () => ((closed = true), r())));
  if (typeof wire === 'string') s.write(wire);
  else wire(s);
  const t0 = Date.now();
  // The poll stops once the socket has closed: left running (up to maxMs), its timers were
  // counted by the next test file in this jest worker (test/request-cost.test.ts failed in CI).
  await Promise.race([end, (async () => {
    while (!closed && (!until || !until.test(got)) && Date.now() - t0 < maxMs) await new Promise((r) => setTimeout(r, 5));
  })()]);
  s.destroy();
  return { text: got, closed };
}

describe('H1Server', () => {
  it('turns requests into ProxyRequests: absolute-form, Host, source and identity, body only when there is one, expect not passed on', async () => {
    await start(async (req) => {
      let body = '';
      if (req.body) for await (const c of req.body) body += String(c);
      return text(`${req.authority} ${req.path} ${body} ${JSON.stringify(req.trailers() ?? null)}`);
    });
    const r = await raw(
      'GET http://web.default:8080/a?b=1 HTTP/1.1\r\nHost: ignored\r\n\r\n' +
        'POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTE: trailers, deflate\r\nContent-Length: 2\r\n\r\nhi' +
        'POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n',
      /X-Sum|x-sum/,
    );
    expect(r.text).toContain('web.default:8080 /a?b=1  null');
    expect(r.text).toContain('h /p hi null');
    expect(r.text).toContain('h /c abc {"x-sum":"9"}');
    expect(seen[0].body).toBeNull();
    expect(seen[0].source).toMatchObject({ address: '127.0.0.1', identity: 'spiffe://test/ns/a/sa/b' });
    expect(seen[1].headers['expect']).toBeUndefined();
    expect(seen[1].headers['te']).toBe('trailers');
    expect(seen[1].headers['host']).toBeUndefined();
  });

  it('answers pipelined requests in order over one connection, whatever order the service finishes them in', async () => {
    await start(async (req) => {
      await new Promise((r) => setTimeout(r, Number(new URL(req.path, 'http://x').searchParams.get('ms'))));
      return text(req.path);
    });
    const wire = ['/1?ms=60', '/2?ms=0', '/3?ms=30'].map((p) => `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`).join('');
    const r = await raw(wire, /\/3\?ms=30$/);
    expect([...r.text.matchAll(/\/(\d)\?ms/g)].map((m) => m[1])).toEqual(['1', '2', '3']);
    expect(r.text.match(/HTTP\/1\.1 200 OK\r\n/g)).toHaveLength(3);
  });

  it('frames responses: content-length when known, chunked with trailers otherwise, close-delimited for HTTP/1.0, no body for HEAD/204/304', async () => {
    await start(async (req): Promise<ProxyResponse> => {
      if (req.path === '/chunked') {
        const body = new PassThrough();
        setTimeout(() => body.end('late'), 20);
        return { status: 200, headers: {}, body, trailers: () => ({ 'grpc-status': '0' }) };
      }
      if (req.path === '/204') return { status: 204, headers: { 'content-length': '5' }, body: Readable.from(['never']), trailers: () => undefined };
      return { status: 200, headers: { 'content-length': '5' }, body: Readable.from([Buffer.from('he'), Buffer.from('llo')]), trailers: () => undefined };
    });
    const chunked = await raw('GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n', /0\r\ngrpc-status: 0\r\n\r\n$/);
    expect(chunked.text).toMatch(/^HTTP\/1\.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nlate\r\n0\r\ngrpc-status: 0\r\n\r\n$/);
    const old = await raw('GET /chunked HTTP/1.0\r\n\r\n');
    expect(old).toEqual({ text: 'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nlate', closed: true });
    const len = await raw('GET /len HTTP/1.1\r\nHost: a\r\n\r\nHEAD /len HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n', /204 No Content\r\n\r\n$/);
    expect(len.text).toBe('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello' + 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n' + 'HTTP/1.1 204 No Content\r\n\r\n');
  });

  it('cuts the connection when a body is longer or shorter than its content-length, or fails mid-way', async () => {
    await start(async (req) => {
      const n = req.path === '/long' ? '2' : '10';
      const body = new PassThrough();
      body.write('abc');
      if (req.path === '/fail') setTimeout(() => body.destroy(new Error('upstream reset')), 10);
      else body.end();
      return { status: 200, headers: { 'content-length': n }, body, trailers: () => undefined };
    });
    for (const p of ['/long', '/short', '/fail']) {
      const r = await raw(`GET ${p} HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n`);
      expect(r.closed).toBe(true);
      expect(r.text.match(/HTTP\/1\.1/g)?.length ?? 0).toBeLessThanOrEqual(1);
      expect(r.text).not.toContain('abc\r\nHTTP');
    }
    expect(seen.map((r) => r.path)).toEqual(['/long', '/short', '/fail']);
  });

  it('answers malformed requests from the error table and tells onClientError; CONNECT refused; a bodied upgrade refused', async () => {
    await start(async () => text('ok'));
    const smuggle = await raw('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(smuggle.closed).toBe(true);
    expect(smuggle.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\nwren-proxy-error: bad-request\r\ncontent-type: text\/plain; charset=utf-8\r\ncontent-length: \d+\r\nconnection: close\r\n\r\nmalformed request: both Content-Length and Transfer-Encoding \(RFC 9112 sections 6.3 item 3 and 11.2\)\n$/);
    const big = await raw(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(2000)}\r\n\r\n`);
    expect(big.text).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\nwren-proxy-error: headers-too-large\r\n[^]*over 1024 bytes \(the limit\)/);
    const te = await raw('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n');
    expect(te.text).toMatch(/^HTTP\/1\.1 501 Not Implemented\r\nwren-proxy-error: not-implemented\r\n/);
    expect(clientErrors).toEqual(['bad-request:cl-and-te', 'headers-too-large:head-too-large', 'not-implemented:te-not-implemented']);
    const conn = await raw('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nbytes');
    expect(conn.text).toMatch(/^HTTP\/1\.1 403 Forbidden\r\nwren-proxy-error: connect-not-supported\r\n[^]*connection: close\r\n\r\nthe mesh does not carry CONNECT tunnels from the app: example.com:443\n$/);
    const bodied = await raw('POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc');
    expect(bodied.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\nwren-proxy-error: bad-request\r\n[^]*an upgrade request cannot carry a body/);
    expect(seen).toHaveLength(0);
  });

  it('aborts the request signal when the client goes away before the response, and counts the exchange over', async () => {
    let signal: ProxyRequest['signal'] | undefined;
    await start((req) => {
      signal = req.signal;
      return new Promise(() => undefined);
    });
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
    while (!signal) await new Promise((r) => setTimeout(r, 5));
    expect(exchanges.now).toBe(1);
    expect(signal.aborted).toBe(false);
    s.destroy();
    while (!signal.aborted) await new Promise((r) => setTimeout(r, 5));
    expect(exchanges.now).toBe(0);
  });

  it('halfCloseOf (a mux stream): a client that half-closes (FIN) after whole requests is answered, pipelined ones in order, through the service, then closed (RFC 9112 section 9.6)', async () => {
    const signals: ProxyRequest['signal'][] = [];
    await start(async (req) => {
      signals.push(req.signal);
      // Answered after the FIN has arrived, as a forwarded request is.
      await new Promise((r) => setTimeout(r, 50));
      return text(`${req.method} ${req.path}`);
    }, { halfCloseOf: () => true });
    const r = await raw((s) => {
      s.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi');
      s.end();
    });
    expect(r.closed).toBe(true);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nGET \/aHTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nPOST \/b$/);
    expect(seen.map((q) => q.path)).toEqual(['/a', '/b']);
    expect(signals.map((x) => x.aborted)).toEqual([false, false]);
    expect(exchanges.now).toBe(0);
    // A request cut short by the FIN (its body incomplete) is reported as before (client-cancelled, truncated).
    const cut = await raw((s) => {
      s.write('GET /c HTTP/1.1\r\nHost: a\r\n\r\nPOST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc');
      s.end();
    });
    expect(cut.closed).toBe(true);
    expect(cut.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*GET \/c/);
    expect(clientErrors).toEqual(['client-cancelled:truncated']);
  });

  it('a client that goes away mid-body while the service has not touched the body: aborted, and nothing thrown', async () => {
    let signal: ProxyRequest['signal'] | undefined;
    let body: BodyStream | null = null;
    await start((req) => {
      if (req.method === 'GET') return Promise.resolve(text('ok'));
      signal = req.signal;
      body = req.body;
      return new Promise(() => undefined);
    });
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write('POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc');
    while (!signal) await new Promise((r) => setTimeout(r, 5));
    s.destroy();
    while (!signal.aborted) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    expect(body!.destroyed).toBe(true);
    // The server still serves.
    expect((await raw('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')).closed).toBe(true);
  });

  it('backpressure: a client that does not read pauses the response body; the bytes buffered stay bounded', async () => {
    let produced = 0;
    const chunk = Buffer.alloc(64 * 1024, 1);
    await start(async () => {
      const body = new Readable({
        read() {
          produced += chunk.length;
          this.push(chunk);
        },
      });
      return { status: 200, headers: {}, body, trailers: () => undefined };
    });
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.pause();
    s.write('GET /endless HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise((r) => setTimeout(r, 500));
    const after500 = produced;
    await new Promise((r) => setTimeout(r, 500));
    // Kernel buffers on both sides plus a stream high-water mark or two: a few MB at most, and no longer growing.
    expect(after500).toBeLessThan(32 << 20);
    expect(produced - after500).toBeLessThanOrEqual(256 * 1024);
    s.destroy();
  });

  it('timers: 408 from the table for a slow head, idle keep-alive closed, a stalled exchange cut; each reported', async () => {
    const clock = new FakeClock();
    await start(() => new Promise(() => undefined), { clock, headersTimeoutMs: 1000, idleTimeoutMs: 5000, streamIdleTimeoutMs: 3000 });
    // Real time for the bytes to reach the server (the machine may be loaded), then fake time for its timers.
    const tick = async (ms: number) => {
      await new Promise((r) => setTimeout(r, 150));
      clock.advance(ms);
      await new Promise((r) => setTimeout(r, 50));
    };
    const slow = raw((s) => s.write('GET / HTTP/1.1\r\nHost: a\r\nX-Slow: '));
    await tick(999);
    expect(limits).toEqual([]);
    await tick(200);
    const r = await slow;
    expect(r.text).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\nwren-proxy-error: headers-timeout\r\n[^]*connection: close\r\n\r\nrequest headers did not arrive in time: after 1000 ms\n$/);
    expect(limits).toEqual(['request-headers-timeout']);
    // A connection that sent nothing at all is closed without an unsolicited 408 (node:http sent one).
    const silent = raw(() => undefined);
    await tick(1200);
    expect(await silent).toEqual({ text: '', closed: true });
    expect(limits).toEqual(['request-headers-timeout', 'request-headers-timeout']);
    limits.length = 1;
    const stalled = raw('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
    await tick(3200);
    expect((await stalled).closed).toBe(true);
    expect(limits).toEqual(['request-headers-timeout', 'stream-idle-timeout']);
  });

  it('delayed close: a client that keeps its half open after `connection: close` is destroyed after 1 s by default (or delayedCloseMs), reported, its connection forgotten', async () => {
    const clock = new FakeClock();
    await start(async () => text('ok'), { clock });
    const halfOpen = async (): Promise<{ s: Socket; ended: Promise<unknown> }> => {
      const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      s.on('error', () => undefined);
      s.resume();
      const ended = once(s, 'end');
      await once(s, 'connect');
      s.write('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      return { s, ended };
    };
    const a = await halfOpen();
    await a.ended; // answered, and our side ended
    expect(h1.connections).toBe(1);
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(999);
    await new Promise((r) => setTimeout(r, 20));
    expect([h1.connections, limits]).toEqual([1, []]);
    clock.advance(1);
    while (h1.connections > 0) await new Promise((r) => setTimeout(r, 5));
    expect(limits).toEqual(['delayed-close-timeout']);
    a.s.destroy();
    h1.close();
    await new Promise((r) => listener.close(r));
    limits.length = 0;
    await start(async () => text('ok'), { clock, delayedCloseMs: 5000 });
    const b = await halfOpen();
    await b.ended;
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(4999);
    await new Promise((r) => setTimeout(r, 20));
    expect([h1.connections, limits]).toEqual([1, []]);
    clock.advance(1);
    while (h1.connections > 0) await new Promise((r) => setTimeout(r, 5));
    expect(limits).toEqual(['delayed-close-timeout']);
    b.s.destroy();
  });

  it('idle keep-alive connections close after the idle timeout; closeIdle() drains: idle closed now, in-flight finished with connection: close', async () => {
    const clock = new FakeClock();
    let release: (() => void) | undefined;
    await start((req) => (req.path === '/wait' ? new Promise((r) => (release = () => r(text('done')))) : Promise.resolve(text('ok'))), { clock, idleTimeoutMs: 5000 });
    const idle = raw('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise((r) => setTimeout(r, 150));
    clock.advance(5200);
    expect((await idle).closed).toBe(true);
    expect(limits).toEqual(['idle-connection-timeout']);

    const agent = new Agent({ keepAlive: true });
    const get = (path: string) =>
      new Promise<{ body: string; connection: string | undefined }>((resolve, reject) => {
        httpRequest({ port, path, agent }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve({ body: b, connection: res.headers.connection }));
        }).on('error', reject).end();
      });
    const idleConn = raw('GET / HTTP/1.1\r\nHost: a\r\n\r\n', undefined, 2000);
    const inflight = get('/wait');
    while (!release) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    expect(h1.connections).toBe(2);
    h1.closeIdle();
    const closedIdle = await idleConn;
    expect(closedIdle.closed).toBe(true);
    release();
    expect(await inflight).toEqual({ body: 'done', connection: 'close' });
    agent.destroy();
  });

  it('an HTTP/1.0 client: keep-alive only when asked; a response to it is never chunked', async () => {
    await start(async () => text('x'));
    const ka = await raw('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n');
    expect(ka.text).toBe('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\nx' + 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx');
    expect(ka.closed).toBe(true);
  });

  it('a response field that could split the message is refused: 502 from the error table, not a cut connection', async () => {
    await start(async () => text('x', { 'x-bad': 'a\r\nset-cookie: injected' }));
    const r = await raw('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(r.text).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\nwren-proxy-error: upstream-protocol\r\n/);
    expect(r.text).not.toContain('injected');
  });

  it('a service that throws synchronously or rejects is answered through the error table', async () => {
    await start((req) => {
      if (req.path === '/sync') throw new ProxyError('NO_ROUTE', 'sync');
      return Promise.reject(new ProxyError('OVERFLOW'));
    });
    const r = await raw('GET /sync HTTP/1.1\r\nHost: a\r\n\r\nGET /async HTTP/1.1\r\nHost: a\r\n\r\n', /overflow \(a concurrency limit is reached\)\n$/);
    expect(r.text).toMatch(/^HTTP\/1\.1 404 Not Found\r\nwren-proxy-error: no-route\r\n[^]*HTTP\/1\.1 503 Service Unavailable\r\nwren-proxy-error: overflow\r\n/);
  });

  it('serves a TLS socket too, the peer identity from identityOf (the mTLS inbound path)', async () => {
    const pki = testPki();
    const srv = pki.issue('default', 'web');
    const cli = pki.issue('default', 'client');
    await start(async (req) => text(`${req.source.identity} ${req.authority}${req.path}`), { identityOf: (sock) => peerSpiffeId(sock as TLSSocket) });
    const tlsListener = createTlsServer({ key: srv.keyPem, cert: srv.certChainPem, ca: srv.trustBundlePem, requestCert: true, rejectUnauthorized: true }, (sock) => h1.serve(sock));
    tlsListener.listen(0, '127.0.0.1');
    await once(tlsListener, 'listening');
    const s = tlsConnect({ port: (tlsListener.address() as AddressInfo).port, host: '127.0.0.1', key: cli.keyPem, cert: cli.certChainPem, ca: cli.trustBundlePem, checkServerIdentity: () => undefined });
    await once(s, 'secureConnect');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.write('GET /a HTTP/1.1\r\nHost: web\r\n\r\nGET /b HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n');
    await once(s, 'close');
    tlsListener.close();
    expect(got).toContain(`${cli.spiffeId} web/a`);
    expect(got).toMatch(new RegExp(`connection: close\\r\\n\\r\\n${cli.spiffeId.replace(/[/.]/g, '\\$&')} web/b$`));
  });
});
