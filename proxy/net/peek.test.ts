import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createH2Server, connect as connectH2 } from 'node:http2';
import { createServer as createTlsServer, connect as connectTls } from 'node:tls';
import { text } from 'node:stream/consumers';
import { FakeClock, systemClock } from '../../common/clock.js';
import { detectProtocolTaking } from './detect-protocol.js';
import { peek, peekTaking, putBack } from './peek.js';
import { setSharedReads } from './direct-reads.js';
import { testPki } from '../../test/helpers/pki.js';

/** A listening server on port 0 whose accepted sockets are handed to `onSocket` in the connection event (as the listeners do). */
async function listen(onSocket: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (s) => {
    accepted.push(s);
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

const accepted: Socket[] = [];

/** Closes the server and the sockets it accepted (allowHalfOpen keeps them open after the client's FIN). */
const closeServer = (s: Server): Promise<void> => {
  for (const a of accepted.splice(0)) a.destroy();
  return new Promise((r) => s.close(() => r()));
};

/** A client that connects and writes `parts` one write at a time, a turn apart. */
async function client(port: number, ...parts: string[]): Promise<Socket> {
  const c = connect(port, '127.0.0.1');
  await new Promise((r) => c.once('connect', r));
  for (const p of parts) {
    c.write(p);
    await new Promise((r) => setTimeout(r, 20));
  }
  return c;
}

const UNTIL = { decide: (b: Buffer) => (b.includes('\n') ? b.toString('latin1') : null), atEnd: () => 'end', atTimeout: () => 'timeout' };

test('peekTaking decides from reads split over several packets, hands over the bytes it read, and emits no data event', async () => {
  let taken: Promise<{ result: string; head: Buffer }> | undefined;
  const events: Buffer[] = [];
  const later: Buffer[] = [];
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => events.push(d));
    taken = peekTaking(s, 5000, systemClock, UNTIL).then((p) => {
      // The caller takes the socket as the HTTP/1.1 connection does: its reads from here on.
      expect(setSharedReads(s, (d) => later.push(Buffer.from(d)))).toBe(true);
      return { result: p.result, head: p.head };
    });
  });
  const c = await client(port, 'GET / ', 'HTTP/1.1\r', '\nHost: a\r\n', 'more');
  const p = await taken!;
  expect(p.result).toBe('GET / HTTP/1.1\r\nHost: a\r\n');
  expect(p.head.toString()).toBe('GET / HTTP/1.1\r\nHost: a\r\n');
  await new Promise((r) => setTimeout(r, 50));
  expect(Buffer.concat(later).toString()).toBe('more');
  expect(events).toEqual([]);
  c.destroy();
  await closeServer(server);
});

test('the bytes read are a copy: the shared read buffer is overwritten by later reads, the head is not', async () => {
  let head: Buffer | undefined;
  let other: Socket | undefined;
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    if (head === undefined && other === undefined) {
      other = s;
      void peekTaking(s, 5000, systemClock, UNTIL).then((p) => {
        head = p.head;
      });
    } else {
      // Another socket reading through the same shared buffer, after the first decided.
      setSharedReads(s, () => {});
      (s as { readableFlowing: boolean | null }).readableFlowing = true;
      s.resume();
    }
  });
  const a = await client(port, 'first line\n');
  while (head === undefined) await new Promise((r) => setTimeout(r, 5));
  const b = await client(port, 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n');
  await new Promise((r) => setTimeout(r, 50));
  expect(head.toString()).toBe('first line\n');
  a.destroy();
  b.destroy();
  await closeServer(server);
});

test('putBack gives the bytes to a data reader first, then what follows, in order', async () => {
  const got: Buffer[] = [];
  let done!: () => void;
  const ended = new Promise<void>((r) => (done = r));
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    void peekTaking(s, 5000, systemClock, UNTIL).then((p) => {
      putBack(s, p.head);
      // As a TCP splice takes it: a reader attached later, then resumed.
      setTimeout(() => {
        s.on('data', (d: Buffer) => got.push(Buffer.from(d)));
        s.on('end', done);
        s.resume();
      }, 30);
    });
  });
  const c = await client(port, 'opaque\n', 'more', ' and more');
  c.end();
  await ended;
  expect(Buffer.concat(got).toString()).toBe('opaque\nmore and more');
  await closeServer(server);
});

test('after putBack the TLS server reads the ClientHello from the start (the handle keeps reading)', async () => {
  const srv = testPki().issue('default', 'web');
  const tls = createTlsServer({ key: srv.keyPem, cert: srv.certChainPem }, (ts) => ts.end('hello over tls'));
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    void peekTaking(s, 5000, systemClock, { decide: (b) => (b.length > 0 ? b[0] : null), atEnd: () => -1, atTimeout: () => -2 }).then((p) => {
      expect(p.result).toBe(0x16);
      putBack(s, p.head);
      tls.emit('connection', s);
    });
  });
  const c = connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false });
  c.on('error', () => {});
  expect(await text(c)).toBe('hello over tls');
  c.destroy();
  await closeServer(server);
});

test("after putBack node's HTTP/2 server, which takes the socket's handle, serves the connection", async () => {
  const h2 = createH2Server();
  h2.on('stream', (st) => {
    st.respond({ ':status': 200 });
    st.end('h2 ok');
  });
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    void detectProtocolTaking(s, 5000, systemClock).then((p) => {
      expect(p.result).toBe('http2');
      putBack(s, p.head);
      h2.emit('connection', s);
    });
  });
  const session = connectH2(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  expect(await text(session.request({ ':path': '/' }))).toBe('h2 ok');
  session.close();
  await closeServer(server);
});

test('a client that says nothing is decided at the timeout, one that closes at its end', async () => {
  const clock = new FakeClock();
  const results: string[] = [];
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    void peekTaking(s, 1000, clock, UNTIL).then((p) => results.push(`${p.result}:${p.head.toString()}`));
  });
  const quiet = await client(port, 'no newline');
  await new Promise((r) => setTimeout(r, 30));
  expect(results).toEqual([]);
  clock.advance(1000);
  await new Promise((r) => setTimeout(r, 10));
  expect(results).toEqual(['timeout:no newline']);
  const leaving = await client(port, 'bye');
  leaving.end();
  await new Promise((r) => setTimeout(r, 50));
  expect(results).toEqual(['timeout:no newline', 'end:bye']);
  quiet.destroy();
  await closeServer(server);
});

test('a socket with bytes put back already (a second peek) takes the Readable path: nothing lost, nothing handed over twice', async () => {
  const seen: string[] = [];
  const { server, port } = await listen((s) => {
    s.on('error', () => {});
    void peek(s, 5000, systemClock, UNTIL).then(async (first) => {
      seen.push(first);
      const taking = peekTaking(s, 5000, systemClock, UNTIL);
      s.resume(); // peek leaves the socket paused; a second peek resumes it (as peekSni does)
      const second = await taking;
      // Put back by peek's own path: the head is empty and the socket holds the bytes.
      seen.push(`${second.result}|${second.head.length}|${s.readableLength}`);
      s.destroy();
    });
  });
  const c = await client(port, 'line one\n');
  await new Promise((r) => setTimeout(r, 50));
  expect(seen).toEqual(['line one\n', 'line one\n|0|9']);
  c.destroy();
  await closeServer(server);
});
