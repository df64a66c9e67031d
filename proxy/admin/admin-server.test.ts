import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { FakeClock } from '../../common/clock.js';
import { createLogger } from '../../common/logger.js';
import { AdminServer } from './admin-server.js';

/**
 * The admin port's bound on a response nobody reads (net/delayed-close.ts boundFlush): node's
 * server waits without end for such a response to be written, keep-alive or not, each socket
 * held with its response. Real sockets, fake time for the bound.
 */
const SMALL = 'wren_up 1\n';
let body = SMALL;
const clock = new FakeClock();
const limits: string[] = [];
let admin: AdminServer;
let port: number;

beforeAll(async () => {
  admin = new AdminServer({
    address: '127.0.0.1', port: 0, logger: createLogger({ level: 'error', sink: () => undefined }),
    ready: () => ({ ready: true, reason: 'ready' }),
    metrics: async () => ({ contentType: 'text/plain', body }),
    configDump: () => ({}), clusters: () => ({}), certs: () => ({}), drain: () => undefined,
    clock, onLimit: (l) => void limits.push(l),
    limits: { requestHeadersTimeoutMs: 0, maxConnectionsPerListener: 4096 },
  });
  port = (await admin.listen()).port;
});
afterAll(() => admin.close());

test('a client that does not read its response is let go once nothing moves for the delayed close (1 s), counted; one that reads is served', async () => {
  body = 'x'.repeat(32 << 20); // more than the kernel's buffers take
  for (const connection of ['close', 'keep-alive']) {
    limits.length = 0;
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    await once(s, 'connect');
    s.pause();
    s.write(`GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: ${connection}\r\n\r\n`);
    for (let i = 0; i < 200 && limits.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(1000);
    }
    expect([connection, limits]).toEqual([connection, ['delayed-close-timeout']]);
    s.destroy();
  }
  body = SMALL;
  limits.length = 0;
  const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect([ok.status, await ok.text()]).toEqual([200, SMALL]);
  clock.advance(5000);
  expect(limits).toEqual([]);
});

test('GET / lists the endpoints, each description in one column apart from its path (the longest path included)', async () => {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  expect(res.status).toBe(200);
  const lines = (await res.text()).trimEnd().split('\n');
  expect(lines.find((l) => l.includes('/debug/route'))).toMatch(/^GET {2}\/debug\/route\?authority=&path=&method=&header=n:v {2,}which HTTPRoute/);
  const column = (l: string) => /^\S+\s+\S+\s+/.exec(l)![0].length;
  expect(new Set(lines.map(column)).size).toBe(1);
});

/** An admin port of its own (connection cap 3, headers timeout 10 s), its limits counted in `counted`. */
async function bounded(): Promise<{ port: number; clock: FakeClock; counted: string[]; close: () => Promise<void> }> {
  const clock = new FakeClock();
  const counted: string[] = [];
  const a = new AdminServer({
    address: '127.0.0.1', port: 0, logger: createLogger({ level: 'error', sink: () => undefined }),
    ready: () => ({ ready: true, reason: 'ready' }), metrics: async () => ({ contentType: 'text/plain', body: SMALL }),
    configDump: () => ({}), clusters: () => ({}), certs: () => ({}), drain: () => undefined,
    clock, onLimit: (l) => void counted.push(l), limits: { requestHeadersTimeoutMs: 10_000, maxConnectionsPerListener: 3 },
  });
  return { port: (await a.listen()).port, clock, counted, close: () => a.close() };
}

const open = async (port: number): Promise<Socket> => {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await once(s, 'connect');
  return s;
};
const closed = (s: Socket) => (s.destroyed || s.readableEnded ? Promise.resolve() : once(s, 'close').then(() => undefined));
/** Lets the server see what the sockets did (accept, the bytes sent) before the fake clock moves. */
const settle = () => new Promise((r) => setTimeout(r, 50));

/*
 * Every container of the pod shares the loopback the admin port binds, so it is bounded
 * like the metrics port: before, it took every connection offered (node's server has no
 * cap) and a silent one stayed until node's 60 s headersTimeout, counted nowhere.
 */
test('connections over maxConnectionsPerListener are refused at accept, counted; the admin port serves again once they close', async () => {
  const { port, counted, close } = await bounded();
  const held = await Promise.all([open(port), open(port), open(port)]);
  await settle();
  const extra = await open(port);
  await closed(extra);
  expect(counted).toEqual(['max-connections']);
  held.forEach((s) => s.destroy());
  await Promise.all(held.map(closed));
  await settle();
  expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
  await close();
});

test('a request head that does not arrive within requestHeadersTimeoutMs closes the connection, counted; so does a keep-alive connection\'s next one', async () => {
  const { port, clock, counted: limits, close } = await bounded();
  const s = await open(port);
  s.write('GET /ready HTTP/1.1\r\nHost: localhost\r\n');
  await settle();
  clock.advance(9_999);
  expect(s.destroyed).toBe(false);
  clock.advance(1);
  await closed(s);
  expect(limits).toEqual(['request-headers-timeout']);

  // Kept alive after a response: the next head has the same time from the response's end.
  limits.length = 0;
  const k = await open(port);
  let got = '';
  k.on('data', (d: Buffer) => (got += d.toString()));
  k.write('GET /live HTTP/1.1\r\nHost: localhost\r\n\r\n');
  for (let i = 0; i < 100 && !got.includes('live\n'); i++) await settle();
  expect(got).toMatch(/^HTTP\/1\.1 200/);
  expect(limits).toEqual([]);
  k.write('GET /live HTTP/1.1\r\n');
  await settle();
  clock.advance(9_999);
  expect(k.destroyed).toBe(false);
  clock.advance(1);
  await closed(k);
  expect(limits).toEqual(['request-headers-timeout']);
  await close();
});

/** One request written as is on its own connection; the raw response. */
function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', reject);
    s.on('end', () => resolve(out));
    s.write(request.replace('\r\n', '\r\nConnection: close\r\n'));
  });
}

test('HEAD is answered as GET without the body; a 405 names the methods the endpoint takes (RFC 9110 sections 9.3.2, 15.5.6)', async () => {
  const head = await fetch(`http://127.0.0.1:${port}/ready`, { method: 'HEAD' });
  expect([head.status, head.headers.get('content-length'), await head.text()]).toEqual([200, '6', '']);
  expect((await fetch(`http://127.0.0.1:${port}/config_dump`, { method: 'HEAD' })).status).toBe(200);
  for (const [method, path, allow] of [['GET', '/drain', 'POST'], ['HEAD', '/logging', 'POST'], ['PUT', '/ready', 'GET, HEAD'], ['DELETE', '/config_dump', 'GET, HEAD']]) {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
    expect([method, path, r.status, r.headers.get('allow')]).toEqual([method, path, 405, allow]);
  }
});

test('a malformed request target or two Host headers is a 400 saying why, and the port keeps serving; an absolute-form target\'s authority is checked as its Host', async () => {
  // (node's parser itself refuses an authority-form target with GET: 400 too.)
  for (const target of ['http://[', 'http://localhost:99999/ready', '*']) {
    const r = await raw(`GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    expect([target, r.split('\r\n')[0]]).toEqual([target, 'HTTP/1.1 400 Bad Request']);
    expect(r).toMatch(/request target/);
  }
  const twoHosts = await raw('GET /ready HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n');
  expect(twoHosts).toMatch(/^HTTP\/1\.1 400 [^]*more than one Host/);
  // RFC 9112 section 3.2.2: the target's authority is the request's, whatever Host says.
  expect(await raw('GET http://evil.example/certs HTTP/1.1\r\nHost: localhost\r\n\r\n')).toMatch(/^HTTP\/1\.1 403 [^]*DNS rebinding/);
  expect(await raw('GET http://127.0.0.1/ready HTTP/1.1\r\nHost: localhost\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 [^]*ready/);
  // An origin-form target is a path: `//config_dump` is not a URL naming the host config_dump.
  expect(await raw('GET //config_dump HTTP/1.1\r\nHost: localhost\r\n\r\n')).toMatch(/^HTTP\/1\.1 404 /);
  expect((await fetch(`http://127.0.0.1:${port}/live`)).status).toBe(200);
});
