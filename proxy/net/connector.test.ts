import { Socket } from 'node:net';
import type { ClientHttp2Session } from 'node:http2';
import { FakeClock } from '../../common/clock.js';
import type { Endpoint } from '../../contract/model.js';
import { H1Pool } from '../http/h1-pool.js';
import { ProxyError } from '../errors/proxy-error.js';
import { H1Connector, SessionConnector, TcpConnector, type SessionPool } from './connector.js';

const ep: Endpoint = { address: '10.0.0.1', port: 8080, proxyPort: 15006, identity: 'spiffe://td/ns/default/sa/web', weight: 1, zone: '', ready: true };

/** Counts give-backs of a connection slot. */
function slot(): { release: () => void; released: number } {
  const s = { released: 0, release: () => void s.released++ };
  return s;
}

/** A session pool with one session that is open, or opening until `open()`. */
function fakePool(): SessionPool & { session: ClientHttp2Session; open(): void; gets: number } {
  const session = { closed: false } as unknown as ClientHttp2Session;
  let opened = false;
  let resolve!: (s: ClientHttp2Session) => void;
  const pending = new Promise<ClientHttp2Session>((r) => (resolve = r));
  const pool = {
    session,
    gets: 0,
    ready: () => (opened ? session : undefined),
    has: () => true,
    get: (_e: Endpoint, _ms?: number, c?: { release(): void }) => {
      pool.gets++;
      c?.release();
      return pending;
    },
    open: () => {
      opened = true;
      resolve(session);
    },
  };
  return pool;
}

describe('SessionConnector', () => {
  test('an open session is handed back synchronously, the same upstream object every time (nothing allocated per request)', async () => {
    const pool = fakePool();
    const c = new SessionConnector(pool);
    expect(c.ready(ep)).toBeUndefined();
    const opening = c.connect(ep, 500);
    pool.open();
    const up = await opening;
    expect(up).toEqual({ kind: 'h2', session: pool.session });
    expect(c.ready(ep)).toBe(up);
    expect(c.ready(ep)).toBe(c.ready(ep));
    expect(c.opening(ep)).toBe(true);
    expect(pool.gets).toBe(1);
  });
});

describe('TcpConnector (fake sockets, fake clock)', () => {
  function setup() {
    const clock = new FakeClock();
    const sockets: Socket[] = [];
    const dialled: string[] = [];
    const c = new TcpConnector({
      clock,
      dial: (host, port) => {
        dialled.push(`${host}:${port}`);
        const s = new Socket();
        sockets.push(s);
        return s;
      },
    });
    return { clock, sockets, dialled, c };
  }

  test('connects to the endpoint\'s own address and port, and never reuses a connection', async () => {
    const { sockets, dialled, c } = setup();
    expect(c.ready()).toBeUndefined();
    expect(c.opening()).toBe(false);
    const p = c.connect(ep, 1000);
    sockets[0].emit('connect');
    const up = await p;
    expect(up.kind).toBe('tcp');
    expect(up.socket).toBe(sockets[0]);
    expect(dialled).toEqual(['10.0.0.1:8080']);
    // An error after the hand-over, before the taker listens, must not crash the process.
    expect(() => up.socket.emit('error', new Error('late'))).not.toThrow();
    up.socket.destroy();
  });

  test('a connect that does not complete within the timeout fails with CONNECT_TIMEOUT, and the socket is destroyed', async () => {
    const { clock, sockets, c } = setup();
    const conn = slot();
    const p = c.connect(ep, 250, conn);
    clock.advance(249);
    expect(sockets[0].destroyed).toBe(false);
    clock.advance(1);
    await expect(p).rejects.toMatchObject({ code: 'CONNECT_TIMEOUT' });
    expect(sockets[0].destroyed).toBe(true);
    await new Promise((r) => sockets[0].once('close', r));
    expect(conn.released).toBe(1);
  });

  test('a refused connect is CONNECT_REFUSED (the error table code), with no timer left behind', async () => {
    const { clock, sockets, c } = setup();
    const p = c.connect(ep, 250);
    sockets[0].emit('error', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyError);
    expect((err as ProxyError).code).toBe('CONNECT_REFUSED');
    expect(clock.pending()).toBe(0);
  });

  test('the connection slot is held for the socket\'s life', async () => {
    const { sockets, c } = setup();
    const conn = slot();
    const p = c.connect(ep, 1000, conn);
    sockets[0].emit('connect');
    const up = await p;
    expect(conn.released).toBe(0);
    up.socket.destroy();
    await new Promise((r) => up.socket.once('close', r));
    expect(conn.released).toBe(1);
  });
});

describe('H1Connector', () => {
  test('always ready: one upstream per endpoint object, and a connection slot is given back (the pool holds its own)', async () => {
    const pool = new H1Pool();
    const c = new H1Connector(pool);
    const a = c.ready(ep);
    expect(a).toEqual({ kind: 'h1', pool, address: '10.0.0.1', port: 8080 });
    expect(c.ready(ep)).toBe(a);
    const conn = slot();
    expect(await c.connect(ep, 100, conn)).toBe(a);
    expect(conn.released).toBe(1);
    pool.destroy();
  });
});
