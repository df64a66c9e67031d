import { MuxTestPairs, tick, until } from './mux-test-pair.js';
import type { MuxStream } from './mux-stream.js';

/**
 * The virtual connection's direct paths (mux-stream.ts): reads handed to the reader's
 * function (setSink) instead of the Readable's push, and writes that can leave at once sent
 * without the Writable's bookkeeping. What they must keep: the order of bytes, whichever
 * path each took, and flow control.
 */
const pairs = new MuxTestPairs();
afterEach(() => pairs.destroyAll());
afterAll(() => pairs.close());


/** A served stream whose reader is a sink and a 'data' listener that both append to `got`, and a log of which path each read took. */
async function sinkPair(window?: number): Promise<{ client: MuxStream; served: () => MuxStream; got: string[]; paths: string[] }> {
  let served: MuxStream | null = null;
  const got: string[] = [];
  const paths: string[] = [];
  const p = await pairs.pair({
    window,
    onStream: (s) => {
      served = s;
      s.on('data', (d: Buffer) => (got.push(d.toString('latin1')), paths.push('data')));
      s.setSink((d) => (got.push(d.toString('latin1')), paths.push('sink')));
    },
  });
  const client = p.client.open()!;
  return { client, served: () => served!, got, paths };
}

test('a flowing reader gets each payload through its sink, not the Readable', async () => {
  const { client, got, paths } = await sinkPair();
  client.write('one');
  await until(() => got.length === 1);
  client.write('two');
  await until(() => got.length === 2);
  expect(got).toEqual(['one', 'two']);
  expect(paths).toEqual(['sink', 'sink']);
});

test('while paused, payloads wait in the Readable and come out first, before the sink gets more', async () => {
  const { client, served, got, paths } = await sinkPair();
  client.write('a');
  await until(() => got.length === 1);
  served().pause();
  client.write('b');
  await until(() => served().readableLength === 1);
  client.write('c');
  await until(() => served().readableLength === 2);
  expect(got).toEqual(['a']);
  served().resume();
  await until(() => got.join('') === 'abc');
  client.write('d');
  await until(() => got.join('') === 'abcd');
  // b and c were buffered while paused ('data'); d found the buffer empty again.
  expect(paths[0]).toBe('sink');
  expect(paths.slice(1, -1).every((x) => x === 'data')).toBe(true);
  expect(paths.at(-1)).toBe('sink');
});

test('a paused sink reader holds the window: the writer stops after it, and goes on once it reads', async () => {
  const { client, served, got } = await sinkPair(1024);
  client.write('x');
  await until(() => got.length === 1);
  served().pause();
  client.write(Buffer.alloc(4096, 'y'));
  await tick();
  await tick();
  // 1 KiB window: the rest of the 4 KiB waits at the writer (below its high-water mark, so write() said true), nothing reached the reader.
  expect(got.join('').length).toBe(1);
  expect(client.writableLength).toBeGreaterThan(0);
  served().resume();
  await until(() => got.join('').length === 4097);
  expect(client.writableLength).toBe(0);
});

test('direct writes and Writable-path writes keep their order', async () => {
  const { client, got } = await sinkPair(1024);
  client.write('1');
  client.cork();
  client.write('2'); // corked: the Writable's way
  expect(client.write('3')).toBe(true); // still corked: behind 2
  client.uncork();
  client.write(Buffer.alloc(2000, '4')); // over the 1 KiB window: the Writable's way, waits for a grant
  client.write('5'); // behind it, although it would fit
  await until(() => got.join('').length === 1 + 1 + 1 + 2000 + 1);
  const all = got.join('');
  expect(all.slice(0, 3)).toBe('123');
  expect(all.slice(3, 2003)).toBe('4'.repeat(2000));
  expect(all.at(-1)).toBe('5');
});

test('corked writes are gathered, not queued in the Writable, and leave at the uncork as one DATA frame', async () => {
  const { client, got, paths } = await sinkPair();
  client.cork();
  expect(client.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n', 'latin1')).toBe(true);
  expect(client.write(Buffer.from([0x00, 0xff, 0x80, 0x41, 0x0a]))).toBe(true); // bytes a latin1 string could not carry as UTF-8
  expect(client.write('\r\n', 'latin1')).toBe(true);
  expect(client.writableLength).toBe(0); // held by the stream, not the Writable's queue
  await tick();
  expect(got).toEqual([]); // nothing leaves before the uncork
  client.uncork();
  await until(() => got.length === 1);
  await tick();
  expect(got).toEqual(['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n\x00\xff\x80A\n\r\n']);
  expect(paths).toEqual(['sink']);
});

test('gathered writes keep their order with those that take the Writable\'s way (a callback, a long buffer) and with end() while corked', async () => {
  const { client, served, got } = await sinkPair();
  client.cork();
  client.write('a', 'latin1');
  client.write(Buffer.from('b'));
  const wrote = new Promise<void>((r) => client.write('c', () => r())); // a callback: the Writable's way, behind a and b
  client.write(Buffer.alloc(9000, 'd')); // too long to gather
  client.write('e', 'latin1');
  client.uncork();
  client.cork();
  client.write('f', 'latin1');
  client.end(); // uncorks: f, then the end
  await wrote;
  await until(() => served()?.readableEnded === true); // the peer read the end, after everything written
  expect(got.join('')).toBe(`abc${'d'.repeat(9000)}ef`);
});

test('gathered writes beyond the stream\'s window wait for a grant, in order', async () => {
  const { client, got } = await sinkPair(16);
  client.cork();
  client.write('x'.repeat(10), 'latin1');
  client.write(Buffer.from('y'.repeat(10)));
  client.uncork(); // 20 bytes against a 16-byte window: the Writable's way, sent as the reader grants
  client.write('z');
  await until(() => got.join('').length === 21);
  expect(got.join('')).toBe(`${'x'.repeat(10)}${'y'.repeat(10)}z`);
});

test('a write after end() fails as on any stream (not sent directly)', async () => {
  const { client, got } = await sinkPair();
  client.end('last');
  const err = await new Promise<Error>((r) => {
    client.once('error', r);
    client.write('late');
  });
  expect((err as NodeJS.ErrnoException).code).toBe('ERR_STREAM_WRITE_AFTER_END');
  await until(() => got.join('') === 'last');
  await tick();
  expect(got.join('')).toBe('last');
});

test('setSink(null) gives reads back to the Readable (an upgraded connection handed over)', async () => {
  const { client, served, got, paths } = await sinkPair();
  client.write('a');
  await until(() => got.length === 1);
  served().setSink(null);
  client.write('b');
  await until(() => got.length === 2);
  expect(paths).toEqual(['sink', 'data']);
});
