import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { FakeClock } from '../../common/clock.js';
import { H1Connection, type H1ConnectionOptions, type H1ServerExchange } from './h1-connection.js';

/**
 * The delayed close (Envoy's delayed_close_timeout): once the connection has ended its side,
 * a client that keeps its own open is destroyed after delayedCloseMs, counted through
 * onLimit; a client that closes in time is not. Real sockets (a listener with
 * allowHalfOpen, as the proxy's), fake time for the timer.
 */
const BIG = 32 << 20;

let server: Server;
let port: number;
let clock: FakeClock;
const limits: string[] = [];
const conns: H1Connection[] = [];
const serverSockets: Socket[] = [];
const clients: Socket[] = [];

/** Answered on a later turn, as the proxy's service does (after the request's end). */
function answer(ex: H1ServerExchange): void {
  const body = ex.head!.target === '/big' ? Buffer.alloc(BIG, 0x61) : Buffer.from('ok\n');
  setImmediate(() => ex.send(200, { 'content-type': 'text/plain' }, body));
}

async function start(opts: Partial<H1ConnectionOptions> = {}): Promise<void> {
  clock = new FakeClock();
  server = createServer({ allowHalfOpen: true }, (s) => {
    serverSockets.push(s);
    s.on('error', () => undefined);
    conns.push(new H1Connection(s, { onRequest: answer, clock, onLimit: (l) => void limits.push(l), ...opts }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
}

afterEach(async () => {
  for (const s of clients.splice(0)) s.destroy();
  for (const s of serverSockets.splice(0)) s.destroy();
  conns.length = limits.length = 0;
  await new Promise((r) => server.close(r));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client that keeps its half open when the server ends its side (it never ends its own). */
async function halfOpenClient(wire: string): Promise<{ s: Socket; text: () => string; ended: Promise<unknown> }> {
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  clients.push(s);
  s.on('error', () => undefined);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const ended = once(s, 'end');
  await once(s, 'connect');
  s.write(wire);
  return { s, text: () => text, ended };
}

/** The server's side of the latest connection, once accepted. */
async function lastServerSocket(n: number): Promise<Socket> {
  while (serverSockets.length < n) await sleep(5);
  return serverSockets[n - 1];
}

const closed = (s: Socket) => (s.destroyed ? Promise.resolve() : once(s, 'close').then(() => undefined));

describe('H1Connection delayed close', () => {
  it('destroys a connection whose client keeps its half open after `connection: close`, an error response or an HTTP/1.0 answer, counted', async () => {
    await start({ delayedCloseMs: 1000 });
    const wires = [
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n',
      'GET / HTTP/1.0\r\n\r\n',
    ];
    for (const [i, wire] of wires.entries()) {
      const c = await halfOpenClient(wire);
      const ss = await lastServerSocket(i + 1);
      await c.ended; // our FIN: the response is whole
      expect(c.text()).toMatch(i === 1 ? /^HTTP\/1\.1 400 / : /^HTTP\/1\.1 200 [^]*ok\n$/);
      await sleep(20);
      clock.advance(999);
      await sleep(20);
      expect(ss.destroyed).toBe(false);
      expect(limits).toHaveLength(i);
      clock.advance(1);
      await closed(ss);
      expect(limits).toEqual(wires.slice(0, i + 1).map(() => 'delayed-close-timeout'));
      expect(clock.pending()).toBe(0);
    }
  });

  it('a client that closes in time: nothing is destroyed by the timer, nothing counted, the timer cleared', async () => {
    await start({ delayedCloseMs: 1000 });
    const c = await halfOpenClient('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    const ss = await lastServerSocket(1);
    await c.ended;
    expect(clock.pending()).toBe(1);
    c.s.end();
    await closed(ss);
    expect(clock.pending()).toBe(0);
    clock.advance(5000);
    expect(limits).toEqual([]);
  });

  it('a drained idle connection (closeWhenIdle) gets the same bound', async () => {
    await start({ delayedCloseMs: 1000 });
    const c = await halfOpenClient('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    const ss = await lastServerSocket(1);
    while (!c.text().endsWith('ok\n')) await sleep(5);
    expect(clock.pending()).toBe(0); // kept alive: no timer of its own
    conns[0].closeWhenIdle();
    await c.ended;
    clock.advance(1000);
    await closed(ss);
    expect(limits).toEqual(['delayed-close-timeout']);
  });

  it('while its last bytes are still being written, progress starts the wait again; with none the socket goes', async () => {
    await start({ delayedCloseMs: 1000 });
    const c = await halfOpenClient('GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    c.s.pause();
    const ss = await lastServerSocket(1);
    while (!ss.writableEnded) await sleep(5);
    // The client reads part of the response: the bytes our side holds move.
    let got = 0;
    const count = (d: Buffer) => void (got += d.length);
    c.s.on('data', count);
    c.s.resume();
    while (got < 8 << 20) await sleep(5);
    c.s.pause();
    clock.advance(1000);
    await sleep(20);
    expect(ss.destroyed).toBe(false);
    expect(limits).toEqual([]);
    expect(clock.pending()).toBe(1); // armed again
    // It reads no more: once a whole wait passes with nothing moving, the socket is destroyed.
    for (let i = 0; i < 50 && !ss.destroyed; i++) {
      await sleep(50);
      clock.advance(1000);
    }
    await closed(ss);
    expect(limits).toEqual(['delayed-close-timeout']);
    expect(got).toBeLessThan(BIG);
  });

  it('delayedCloseMs 0 turns it off', async () => {
    await start({ delayedCloseMs: 0 });
    const c = await halfOpenClient('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    const ss = await lastServerSocket(1);
    await c.ended;
    expect(clock.pending()).toBe(0);
    clock.advance(60_000);
    await sleep(50);
    expect(ss.destroyed).toBe(false);
    expect(limits).toEqual([]);
  });
});
