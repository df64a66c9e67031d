import { FLAG_FIN, FrameType, frameHeader } from './frame.js';
import { MuxTestPairs, tick, until } from './mux-test-pair.js';
import type { MuxStream } from './mux-stream.js';

/**
 * Attacks on the virtual connection's direct paths (mux-stream.ts setSink and write()):
 * whichever path a payload takes, a stream must behave as one stream.
 */
const pairs = new MuxTestPairs();
afterEach(() => pairs.destroyAll());
afterAll(() => pairs.close());


/** A raw DATA frame, as a peer that ignores the rules writes it. */
const data = (id: number, text: string, flags = 0): Buffer => Buffer.concat([frameHeader(FrameType.Data, flags, id, text.length), Buffer.from(text, 'latin1')]);

test('DATA after the FIN never reaches a sink reader: the stream is reset, as on the Readable path', async () => {
  const got: string[] = [];
  let served: MuxStream | null = null;
  const { raw } = await pairs.pair({
    onStream: (s) => {
      served = s;
      s.on('data', (d: Buffer) => got.push(`data:${d.toString('latin1')}`));
      s.setSink((d) => got.push(`sink:${d.toString('latin1')}`));
    },
  });
  raw.write(data(1, 'req', FLAG_FIN));
  await until(() => got.length === 1);
  raw.write(data(1, 'smuggled'));
  await until(() => served!.destroyed);
  await tick();
  expect(got).toEqual(['sink:req']);
});

test('a reader that pauses inside its sink at random keeps every byte in order, and the windows keep the writer going', async () => {
  let seed = 7;
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  const got: Buffer[] = [];
  let served: MuxStream | null = null;
  const take = (d: Buffer): void => {
    got.push(Buffer.from(d));
    const s = served!;
    // Pauses inside the callback about one read in three, resumed a turn or two later.
    if (rand(3) === 0) {
      s.pause();
      const again = () => s.resume();
      if (rand(2) === 0) setImmediate(again);
      else setTimeout(again, 1);
    }
  };
  const p = await pairs.pair({
    window: 4096,
    connWindow: 16384,
    onStream: (s) => {
      served = s;
      s.on('data', take);
      s.setSink(take);
    },
  });
  const client = p.client.open()!;
  const sent: Buffer[] = [];
  let n = 0;
  for (let i = 0; i < 300; i++) {
    const b = Buffer.alloc(1 + rand(3000));
    for (let j = 0; j < b.length; j++) b[j] = (n++ * 31) & 0xff;
    sent.push(b);
    // Every way a caller writes: direct when it can, else the Writable's queue (corked, with a callback, as latin1 text).
    const how = rand(5);
    if (how === 0) {
      client.cork();
      client.write(b);
      process.nextTick(() => client.uncork());
    } else if (how === 1) client.write(b, () => undefined);
    else if (how === 2) client.write(b.toString('latin1'), 'latin1');
    else client.write(b);
    if (rand(4) === 0) await tick();
  }
  const all = Buffer.concat(sent);
  for (let i = 0; i < 2000 && Buffer.concat(got).length < all.length; i++) await new Promise((r) => setTimeout(r, 1));
  expect(Buffer.concat(got).equals(all)).toBe(true);
  expect(client.writableLength).toBe(0);
});

test('the inactivity timer is refreshed by direct writes and by reads handed to the sink', async () => {
  let served: MuxStream | null = null;
  const p = await pairs.pair({
    onStream: (s) => {
      served = s;
      s.on('data', () => undefined);
      s.setSink(() => undefined);
    },
  });
  const client = p.client.open()!;
  client.on('data', () => undefined);
  client.setSink(() => undefined);
  client.write('x');
  await until(() => served !== null);
  const fired: string[] = [];
  // The timeout is ten times the gap between bytes: a loaded machine (CI ran this beside 2,000
  // other tests) stretched a 50 ms sleep past a 150 ms timeout once.
  client.setTimeout(500, () => fired.push('client'));
  served!.setTimeout(500, () => fired.push('served'));
  // 1.2 s of traffic, more than twice the timeout, a byte every 50 ms: the client's writes are direct, the served stream's reads go to its sink.
  for (let i = 0; i < 24; i++) {
    client.write('y');
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(fired).toEqual([]);
  // Then silence: both fire.
  await new Promise((r) => setTimeout(r, 1000));
  expect(fired.sort()).toEqual(['client', 'served']);
});

test("write() says false once the queue passes the high-water mark, 'drain' follows, and direct writes resume after it", async () => {
  const got: Buffer[] = [];
  let served: MuxStream | null = null;
  const p = await pairs.pair({
    window: 8192,
    onStream: (s) => {
      served = s;
      s.on('data', (d: Buffer) => got.push(Buffer.from(d)));
      s.setSink((d) => got.push(Buffer.from(d)));
    },
  });
  const client = p.client.open()!;
  client.write('a');
  await until(() => served !== null);
  served!.pause();
  // 8 KiB window, the reader paused: writes queue in the Writable until write() says false.
  let writes = 0;
  const chunk = Buffer.alloc(4096, 'b');
  while (client.write(chunk)) writes++;
  writes++;
  expect(client.writableNeedDrain).toBe(true);
  expect(client.writableLength).toBeGreaterThanOrEqual(client.writableHighWaterMark);
  const drained = new Promise<void>((r) => client.once('drain', r));
  served!.resume();
  await drained;
  expect(client.writableNeedDrain).toBe(false);
  client.write('c');
  const total = 1 + writes * 4096 + 1;
  await until(() => Buffer.concat(got).length === total);
  const all = Buffer.concat(got).toString('latin1');
  expect(all).toBe('a' + 'b'.repeat(writes * 4096) + 'c');
});

test('sinks that destroy, end, write or pause inside the callback leak no connection window', async () => {
  let n = 0;
  let got = 0;
  const p = await pairs.pair({
    window: 4096,
    connWindow: 16384,
    onStream: (s) => {
      const idx = n++;
      const kind = idx % 4;
      const last = idx === 40;
      s.on('data', (d: Buffer) => (got += last ? d.length : 0));
      s.setSink((d) => {
        if (last) return void (got += d.length);
        if (kind === 0) s.destroy();
        else if (kind === 1) s.end('bye');
        else if (kind === 2) s.write(Buffer.alloc(100));
        else if (kind === 3) {
          s.pause();
          setTimeout(() => s.destroy(), 5);
        }
      });
    },
  });
  // 40 streams, each sending more than its reader takes, in frames that arrive together.
  for (let i = 0; i < 40; i++) {
    const c = p.client.open()!;
    c.on('data', () => undefined);
    for (let j = 0; j < 3; j++) c.write(Buffer.alloc(1000, j));
    await tick();
  }
  await new Promise((r) => setTimeout(r, 50));
  // Then a well-behaved stream sends 4x the connection window: only window given back lets it through.
  const c = p.client.open()!;
  c.write(Buffer.alloc(64 * 1024, 'z'));
  for (let i = 0; i < 500 && got < 64 * 1024; i++) await new Promise((r) => setTimeout(r, 2));
  expect(got).toBe(64 * 1024);
});
