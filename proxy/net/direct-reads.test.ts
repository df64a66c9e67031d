import { createServer, connect, type Server, type Socket } from 'node:net';
import { setDirectReads, setSharedReads } from './direct-reads.js';

/** A connected pair on port 0: the server side (read through setDirectReads) and the client writing to it. */
async function pair(): Promise<{ server: Server; inner: Socket; outer: Socket }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const outer = connect((server.address() as import('node:net').AddressInfo).port, '127.0.0.1');
  await new Promise((r) => outer.once('connect', r));
  return { server, inner: await accepted, outer };
}

async function close(p: { server: Server; inner: Socket; outer: Socket }): Promise<void> {
  p.outer.destroy();
  p.inner.destroy();
  await new Promise((r) => p.server.close(r));
}

/** Resolves once `got()` holds `n` bytes (the test's timeout bounds it). */
async function until(got: () => number, n: number): Promise<void> {
  while (got() < n) await new Promise((r) => setImmediate(r));
}

test('a flowing socket hands each read to the reader directly, not as a data event', async () => {
  const p = await pair();
  const direct: Buffer[] = [];
  const events: Buffer[] = [];
  p.inner.on('data', (d: Buffer) => events.push(d));
  setDirectReads(p.inner, (d) => direct.push(d));
  p.outer.write('one');
  await until(() => Buffer.concat(direct).length, 3);
  p.outer.write('two');
  await until(() => Buffer.concat(direct).length, 6);
  expect(Buffer.concat(direct).toString()).toBe('onetwo');
  expect(events).toEqual([]);
  await close(p);
});

test('while paused the Readable buffers the reads; on resume they come as data events, in order, and direct reads follow', async () => {
  const p = await pair();
  const got: string[] = [];
  const viaEvent: string[] = [];
  const reader = (d: Buffer): void => void got.push(d.toString());
  p.inner.on('data', (d: Buffer) => {
    viaEvent.push(d.toString());
    reader(d);
  });
  setDirectReads(p.inner, reader);
  p.outer.write('a');
  await until(() => got.join('').length, 1);
  p.inner.pause();
  p.outer.write('b');
  p.outer.write('c');
  await until(() => p.inner.readableLength, 2);
  expect(got.join('')).toBe('a');
  p.inner.resume();
  await until(() => got.join('').length, 3);
  p.outer.write('d');
  await until(() => got.join('').length, 4);
  expect(got.join('')).toBe('abcd');
  // b and c waited in the Readable and came as events; a and d came directly.
  expect(viaEvent.join('')).toBe('bc');
  await close(p);
});

test("bytes put back with unshift are read before later reads, and the stream's end is node's 'end' event", async () => {
  const p = await pair();
  const got: string[] = [];
  const reader = (d: Buffer): void => void got.push(d.toString());
  p.inner.on('data', reader);
  setDirectReads(p.inner, reader);
  p.inner.pause();
  p.inner.unshift(Buffer.from('first-'));
  p.outer.write('second');
  await until(() => p.inner.readableLength, 12);
  p.inner.resume();
  await until(() => got.join('').length, 12);
  expect(got.join('')).toBe('first-second');
  const ended = new Promise<boolean>((r) => p.inner.once('end', () => r(true)));
  p.outer.end();
  expect(await ended).toBe(true);
  await close(p);
});

test('null hands the reads back to the data events', async () => {
  const p = await pair();
  const direct: Buffer[] = [];
  const events: Buffer[] = [];
  p.inner.on('data', (d: Buffer) => events.push(d));
  setDirectReads(p.inner, (d) => direct.push(d));
  setDirectReads(p.inner, null);
  expect(Object.hasOwn(p.inner, 'push')).toBe(false);
  p.outer.write('xyz');
  await until(() => Buffer.concat(events).length, 3);
  expect(Buffer.concat(events).toString()).toBe('xyz');
  expect(direct).toEqual([]);
  await close(p);
});

test('TLS: a reader that pauses in a direct read gets no more until it resumes (records of the same TCP read wait in the Readable), in order; one that destroys gets nothing more', async () => {
  const { testServerCert } = await import('../../test/helpers/test-ca.js');
  const { createServer: createTls, connect: tlsConnect } = await import('node:tls');
  const pki = testServerCert(['localhost']);
  for (const mode of ['pause', 'destroy'] as const) {
    const log: string[] = [];
    const done = new Promise<void>((resolve) => {
      const srv = createTls({ key: pki.key, cert: pki.cert }, (s) => {
        const reader = (d: Buffer): void => {
          log.push(`${s.readableFlowing === true ? 'flowing' : 'paused'}:${d.toString()}`);
          if (log.length !== 1) return;
          if (mode === 'destroy') return void s.destroy();
          s.pause();
          setTimeout(() => {
            log.push('resume');
            s.resume();
          }, 30);
        };
        s.on('data', reader);
        setDirectReads(s, reader);
        s.on('close', () => {
          srv.close();
          resolve();
        });
        if (mode === 'pause') setTimeout(() => s.destroy(), 150);
      });
      srv.listen(0, '127.0.0.1', () => {
        const c = tlsConnect({ port: (srv.address() as import('node:net').AddressInfo).port, host: '127.0.0.1', servername: 'localhost', ca: pki.ca }, () => {
          // Four TLS records, sent together: they arrive in one or a few TCP reads.
          for (const x of ['a', 'b', 'c', 'd']) c.write(x);
        });
        c.on('error', () => undefined);
        c.on('close', () => undefined);
      });
    });
    await done;
    const data = log.filter((l) => l !== 'resume');
    expect(data[0]).toMatch(/^flowing:a/);
    if (mode === 'destroy') {
      expect(log).toHaveLength(1);
    } else {
      // Everything after the pause came after the resume, all of it, in order.
      expect(log.indexOf('resume')).toBe(1);
      expect(data.map((l) => l.slice(l.indexOf(':') + 1)).join('')).toBe('abcd');
    }
  }
});

describe('setSharedReads: an accepted TCP socket reads into the buffer the thread shares', () => {
  test('each read is a view of one buffer, shared between sockets, handed to the reader directly; the end is still node\'s', async () => {
    const a = await pair();
    const b = await pair();
    const views: Buffer[] = [];
    const copies: string[] = [];
    const events: Buffer[] = [];
    for (const p of [a, b]) {
      p.inner.on('data', (d: Buffer) => events.push(d));
      expect(
        setSharedReads(p.inner, (d) => {
          views.push(d);
          copies.push(`${p === a ? 'a' : 'b'}:${d.toString()}`);
        }),
      ).toBe(true);
    }
    a.outer.write('one');
    await until(() => copies.length, 1);
    b.outer.write('two!');
    await until(() => copies.length, 2);
    a.outer.write('three');
    await until(() => copies.length, 3);
    expect(copies).toEqual(['a:one', 'b:two!', 'a:three']);
    expect(events).toEqual([]);
    // One memory for all three reads: the second overwrote the first's bytes.
    expect(new Set(views.map((v) => v.buffer)).size).toBe(1);
    expect(views[0].toString()).not.toBe('one');
    const ended = new Promise<boolean>((r) => a.inner.once('end', () => r(true)));
    a.outer.end();
    expect(await ended).toBe(true);
    await close(a);
    await close(b);
  });

  test('paused, the socket stops reading (the bytes wait in the kernel, not in the shared buffer); bytes put back with unshift meanwhile come first, as a data event of their own, then the reads, in order', async () => {
    const a = await pair();
    const b = await pair();
    const got: string[] = [];
    const fromEvents: string[] = [];
    a.inner.on('data', (d: Buffer) => {
      fromEvents.push(d.toString());
      got.push(d.toString());
    });
    expect(setSharedReads(a.inner, (d) => void got.push(d.toString()))).toBe(true);
    let other = 0;
    expect(setSharedReads(b.inner, (d) => void (other += d.length))).toBe(true);
    b.inner.resume();
    a.outer.write('first');
    await until(() => got.join('').length, 5);
    a.inner.pause();
    a.outer.write('third');
    const held = Buffer.from('second');
    a.inner.unshift(held);
    // Another socket's reads land in the shared buffer while a's wait.
    b.outer.write('x'.repeat(5000));
    await until(() => other, 5000);
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(['first']);
    expect(a.inner.readableLength).toBe(6);
    a.inner.resume();
    await until(() => got.join('').length, 16);
    expect(got).toEqual(['first', 'second', 'third']);
    expect(fromEvents).toEqual(['second']);
    await close(a);
    await close(b);
  });

  test('reads that come while nothing reads the socket yet are kept by the Readable as copies of their own', async () => {
    const a = await pair();
    const b = await pair();
    expect(setSharedReads(a.inner, () => undefined)).toBe(true);
    let other = 0;
    expect(setSharedReads(b.inner, (d) => void (other += d.length))).toBe(true);
    b.inner.resume();
    // No data listener on a and never resumed: its reads go to the Readable.
    a.outer.write('kept-1');
    await until(() => a.inner.readableLength, 6);
    b.outer.write('y'.repeat(3000));
    await until(() => other, 3000);
    a.outer.write('kept-2');
    await until(() => a.inner.readableLength, 12);
    expect((a.inner.read() as Buffer).toString()).toBe('kept-1kept-2');
    await close(a);
    await close(b);
  });

  test('null hands the reads back to the data events, each a buffer of its own', async () => {
    const p = await pair();
    const events: Buffer[] = [];
    p.inner.on('data', (d: Buffer) => events.push(d));
    expect(setSharedReads(p.inner, () => undefined)).toBe(true);
    setDirectReads(p.inner, null);
    p.outer.write('abc');
    await until(() => events.length, 1);
    p.outer.write('defg');
    await until(() => events.length, 2);
    expect(events.map((d) => d.toString())).toEqual(['abc', 'defg']);
    await close(p);
  });

  test("a TLS socket's decrypted reads are views of the shared buffer too, whole and in order", async () => {
    const { testServerCert } = await import('../../test/helpers/test-ca.js');
    const { createServer: createTls, connect: tlsConnect } = await import('node:tls');
    const pki = testServerCert(['localhost']);
    const views: Buffer[] = [];
    let text = '';
    const srv = createTls({ key: pki.key, cert: pki.cert }, (s) => {
      expect(
        setSharedReads(s, (d) => {
          views.push(d);
          text += d.toString();
        }),
      ).toBe(true);
      s.on('data', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const c = tlsConnect({ port: (srv.address() as import('node:net').AddressInfo).port, host: '127.0.0.1', servername: 'localhost', ca: pki.ca });
    c.on('error', () => undefined);
    await new Promise((r) => c.once('secureConnect', r));
    const sent = Array.from({ length: 20 }, (_, i) => `record-${i};`).join('');
    for (let i = 0; i < 20; i++) {
      c.write(`record-${i};`);
      if (i % 5 === 4) await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => text.length, sent.length);
    expect(text).toBe(sent);
    expect(new Set(views.map((v) => v.buffer)).size).toBe(1);
    c.destroy();
    await new Promise((r) => srv.close(r));
  });

  test('a socket-like stream is not set up (false): its reads stay as they were', async () => {
    const { PassThrough } = await import('node:stream');
    expect(setSharedReads(new PassThrough() as unknown as Socket, () => undefined)).toBe(false);
  });
});
