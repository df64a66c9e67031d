import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { Agent, request, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { request as undiciRequest, Agent as UndiciAgent } from 'undici';
import { H1Connection, type H1ConnectionOptions, type H1ServerExchange } from './h1-connection.js';
import { isLent, lentCopy } from '../net/body-buffers.js';

const run = promisify(execFile);

/** Echo: method, target, body and trailers back; `?delay=ms` answers later; `?reject` answers 413 without reading. */
function echo(ex: H1ServerExchange): void {
  const h = ex.head!;
  const url = new URL(h.target, 'http://x');
  if (url.searchParams.has('reject')) return ex.send(413, { 'content-type': 'text/plain' }, Buffer.from('too big\n'));
  const chunks: Buffer[] = [];
  const answer = () => {
    const text = `${h.method} ${h.target} ${Buffer.concat(chunks).toString()}${ex.trailers ? ' ' + ex.trailers.join('=') : ''}`;
    const delay = Number(url.searchParams.get('delay') ?? 0);
    setTimeout(() => ex.send(200, { 'content-type': 'text/plain' }, Buffer.from(text)), delay);
  };
  if (!ex.body) return answer();
  ex.body.on('data', (c: Buffer) => chunks.push(c));
  ex.body.on('end', answer);
}

let server: Server;
let port: number;
const sockets = new Set<Socket>();
const errors: string[] = [];

async function start(opts: Partial<H1ConnectionOptions> = {}): Promise<void> {
  server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    new H1Connection(s, { onRequest: echo, onClientError: (e) => errors.push(e.reason), ...opts });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
}

afterEach(async () => {
  for (const s of sockets) s.destroy();
  server.close();
  errors.length = 0;
});

/** Raw bytes in, everything the server sent until it closed (or `until` matched). */
async function raw(wire: string | ((s: Socket, got: () => string) => Promise<void>), until?: RegExp): Promise<{ text: string; closed: boolean }> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  let text = '';
  let closed = false;
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const end = new Promise<void>((resolve) => s.on('close', () => ((closed = true), resolve())));
  if (typeof wire === 'string') s.write(wire);
  else await wire(s, () => text);
  // The poll stops once the socket has closed: left running, it went on forever in this
  // jest worker and its timers were counted by the next test file's (test/request-cost.test.ts).
  await Promise.race([end, (async () => {
    while (!closed && (!until || !until.test(text))) await new Promise((r) => setTimeout(r, 10));
  })()]);
  s.destroy();
  return { text, closed };
}

const waitFor = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

describe('H1Connection against real clients', () => {
  it('node:http: keep-alive reuses one connection for sequential requests, with bodies', async () => {
    await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const seen = new Set<unknown>();
    const get = (method: string, path: string, body?: string) =>
      new Promise<string>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method, path, agent }, async (res: IncomingMessage) => {
          seen.add(res.socket);
          let t = '';
          for await (const c of res) t += c;
          resolve(`${res.statusCode} ${t}`);
        });
        req.on('error', reject);
        req.end(body);
      });
    expect(await get('GET', '/a')).toBe('200 GET /a ');
    expect(await get('POST', '/b', 'hello')).toBe('200 POST /b hello');
    expect(await get('PUT', '/c', 'x'.repeat(100_000))).toBe(`200 PUT /c ${'x'.repeat(100_000)}`);
    expect(seen.size).toBe(1);
    agent.destroy();
  });

  it('undici: a pool of keep-alive connections, a streamed chunked body', async () => {
    await start();
    const dispatcher = new UndiciAgent({ connections: 2 });
    const results = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const r = await undiciRequest(`http://127.0.0.1:${port}/u${i}`, { method: 'POST', body: Readable.from([Buffer.from('a'), Buffer.from('b')]), dispatcher });
      return `${r.statusCode} ${await r.body.text()}`;
    }));
    expect(results).toEqual(Array.from({ length: 10 }, (_, i) => `200 POST /u${i} ab`));
    await dispatcher.close();
  });

  it('curl: two URLs on one connection, and a large upload with Expect: 100-continue', async () => {
    await start();
    const { stdout, stderr } = await run('curl', ['-sv', '--http1.1', `http://127.0.0.1:${port}/one`, `http://127.0.0.1:${port}/two`]);
    expect(stdout).toBe('GET /one GET /two ');
    expect(stderr).toMatch(/Re-using existing connection/);
    // curl waits for the 100 (here up to 20 s) before it sends the body.
    const up = await run('curl', ['-sv', '--http1.1', '--expect100-timeout', '20', '-H', 'Expect: 100-continue', '--data-binary', 'z'.repeat(5000), `http://127.0.0.1:${port}/up`]);
    expect(up.stdout).toBe(`POST /up ${'z'.repeat(5000)}`);
    expect(up.stderr).toMatch(/Expect: 100-continue/);
    expect(up.stderr).toMatch(/HTTP\/1.1 100 Continue/);
  });

  it('answers pipelined requests in order, whatever order the handler finishes them in (RFC 9112 section 9.3.2)', async () => {
    await start();
    const wire = ['/1?delay=80', '/2?delay=0', '/3?delay=40'].map((p) => `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`).join('') + 'POST /4 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi';
    const { text } = await raw(wire, /POST \/4 hi/);
    const order = [...text.matchAll(/(GET|POST) (\/\d)/g)].map((m) => m[2]);
    expect(order).toEqual(['/1', '/2', '/3', '/4']);
  });

  it('sends 100 Continue only when the body is read, and closes after a response that left the body unread', async () => {
    await start();
    const head = 'POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n';
    const ok = await raw(async (s, got) => {
      s.write(head);
      await waitFor(() => got().includes('100 Continue'));
      s.write('abc');
    }, /POST \/x abc/);
    expect(ok.text).toMatch(/^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 /);
    const rejected = await raw(head.replace('/x', '/x?reject'), /too big/);
    expect(rejected.text).not.toMatch(/100 Continue/);
    expect(rejected.text).toMatch(/^HTTP\/1.1 413 [^]*connection: close/);
    const after = await raw(head.replace('/x', '/x?reject') + 'abc' + 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(after.closed).toBe(true);
    expect(after.text).not.toMatch(/GET \/next/);
  });

  it('closes after Connection: close and after an HTTP/1.0 request, and answers HEAD without a body', async () => {
    await start();
    const close = await raw('GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(close.closed).toBe(true);
    expect(close.text).toMatch(/connection: close\r\n\r\nGET \/c $/);
    const old = await raw('GET /o HTTP/1.0\r\n\r\n');
    expect(old.closed).toBe(true);
    expect(old.text).toMatch(/GET \/o $/);
    const head = await raw('HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n', /GET \/g $/);
    expect(head.text).toMatch(/^HTTP\/1.1 200 \r\ncontent-type: text\/plain\r\ncontent-length: 8\r\n\r\nHTTP\/1.1 200 /);
  });

  it('answers a malformed or oversized request through the error table, and closes', async () => {
    await start({ limits: { maxHeadBytes: 1024, maxHeaderCount: 100, maxChunkExtBytes: 64 } });
    const smuggle = await raw('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(smuggle.closed).toBe(true);
    expect(smuggle.text).toMatch(/^HTTP\/1.1 400 \r\n[^]*wren-proxy-error: bad-request\r\n[^]*connection: close\r\n\r\nmalformed request: both Content-Length and Transfer-Encoding/);
    expect(smuggle.text).not.toMatch(/smuggled/);
    const big = await raw(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(2000)}\r\n\r\n`);
    expect(big.text).toMatch(/^HTTP\/1.1 431 [^]*wren-proxy-error: headers-too-large[^]*over 1024 bytes/);
    expect(errors).toEqual(['cl-and-te', 'head-too-large']);
  });

  it('hands an upgrade over with the bytes that followed it, or answers 501 without a taker', async () => {
    await start({
      onUpgrade: (head, socket, rest) => {
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n${head.target}|${rest.toString()}`);
        socket.on('data', (d: Buffer) => socket.write(d));
      },
    });
    const up = await raw(async (s, got) => {
      s.write('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nearly');
      await waitFor(() => got().includes('|early'));
      s.write(' later');
    }, /later/);
    expect(up.text).toMatch(/101 Switching Protocols[^]*\/ws\|early later$/);
    server.close();
    await start();
    const none = await raw('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n');
    expect(none.text).toMatch(/^HTTP\/1.1 501 /);
  });

  it('tells the handler when the client goes away before the response', async () => {
    let aborted = false;
    await start({ onRequest: (ex) => void (ex.onAbort = () => (aborted = true)) });
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitFor(() => sockets.size === 1);
    await new Promise((r) => setTimeout(r, 20));
    s.destroy();
    await waitFor(() => aborted);
    expect(aborted).toBe(true);
  });
});

test('a lent body buffer (body-buffers.ts) written to the client goes back once node has written it: at once to an empty socket, at the drain after a backlog', async () => {
  let exchange: H1ServerExchange | null = null;
  await start({ onRequest: (ex) => void (exchange = ex) });
  const c = connect(port, '127.0.0.1');
  await once(c, 'connect');
  c.pause();
  c.write('GET /download HTTP/1.1\r\nhost: x\r\n\r\n');
  for (let i = 0; i < 500 && exchange === null; i++) await new Promise((r) => setTimeout(r, 2));
  const ex = exchange!;
  const socket = ex.conn.socket;
  ex.respond(200, { 'content-type': 'application/octet-stream' }, 1 << 30);
  const first = lentCopy(Buffer.alloc(32 * 1024, 0x61));
  expect(ex.write(first)).toBe(true);
  expect(socket.writableLength).toBe(0);
  expect(isLent(first)).toBe(false);
  // The client does not read: once the kernel's buffers are full, node keeps what it could not write.
  let last = first;
  let lentBacklog = 0;
  for (let i = 0; i < 10_000; i++) {
    last = lentCopy(Buffer.alloc(32 * 1024, 0x62));
    const ok = ex.write(last);
    if (socket.writableLength > 0) lentBacklog++;
    if (!ok) break;
  }
  expect(socket.writableLength).toBeGreaterThan(0);
  expect(lentBacklog).toBeGreaterThan(0);
  expect(isLent(last)).toBe(true);
  // The client reads: the socket drains, and what it held goes back.
  c.resume();
  await once(socket, 'drain');
  await new Promise((r) => setImmediate(r));
  expect(isLent(last)).toBe(false);
  c.destroy();
});

test('on a TLS connection (whose writes complete on a later turn) a lent body buffer goes back at the next body write, so a keep-alive connection holds no more than its writes in flight', async () => {
  const { testServerCert } = await import('../../test/helpers/test-ca.js');
  const { createServer: createTls, connect: tlsConnect } = await import('node:tls');
  const pki = testServerCert(['localhost']);
  const exchanges: H1ServerExchange[] = [];
  const srv = createTls({ key: pki.key, cert: pki.cert }, (s) => new H1Connection(s, { onRequest: (ex) => void exchanges.push(ex) }));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const c = tlsConnect({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1', servername: 'localhost', ca: pki.ca });
  await once(c, 'secureConnect');
  let got = 0;
  c.on('data', (d: Buffer) => (got += d.length));
  const turn = () => new Promise((r) => setImmediate(r));
  const sent: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    c.write('GET /r HTTP/1.1\r\nhost: x\r\n\r\n');
    for (let k = 0; k < 500 && exchanges.length <= i; k++) await new Promise((r) => setTimeout(r, 2));
    const ex = exchanges[i];
    ex.respond(200, {}, 2 * 40 * 1024);
    for (let j = 0; j < 2; j++) {
      const b = lentCopy(Buffer.alloc(40 * 1024, 0x61 + i));
      ex.write(b);
      // Still node's: a TLS write completes on a later turn.
      expect(isLent(b)).toBe(true);
      // Every earlier one went back once the socket had written it.
      expect(sent.filter((x) => isLent(x))).toEqual([]);
      sent.push(b);
      await turn();
      await turn();
    }
    ex.end();
  }
  for (let k = 0; k < 500 && got < 3 * (80 * 1024 + 40); k++) await new Promise((r) => setTimeout(r, 2));
  c.destroy();
  srv.close();
});
