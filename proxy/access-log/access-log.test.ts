import { Writable } from 'node:stream';
import { AccessLog } from './access-log.js';
import { TelemetrySource } from '../telemetry/telemetry-settings.js';
import { FakeClock, seededRandom } from '../../common/clock.js';
import { Registry } from '../metrics/prom.js';
import type { AccessLogEntry } from './entry.js';

/**
 * A sink that takes one write at a time and holds its callback until release(), as a
 * listener worker's stdout does until the main thread asks for more: what comes behind a
 * held write waits in the stream (lost if the thread is terminated then).
 */
class HeldSink extends Writable {
  readonly taken: string[] = [];
  private held: (() => void)[] = [];
  override _write(chunk: Buffer, _e: BufferEncoding, done: () => void): void {
    this.taken.push(chunk.toString());
    this.held.push(done);
  }
  release(): void {
    const h = this.held;
    this.held = [];
    for (const d of h) d();
  }
}

const entry = (path: string): AccessLogEntry => ({ path }) as unknown as AccessLogEntry;
const tick = () => new Promise((r) => setImmediate(r));
const paths = (sink: HeldSink): string[] => sink.taken.join('').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { path: string }).path);

function setup(minBytes: number) {
  const clock = new FakeClock(0);
  const sink = new HeldSink();
  const registry = new Registry();
  const log = new AccessLog({ telemetry: new TelemetrySource({ tracing: { samplingPercent: undefined }, accessLog: { enabled: true, samplingPercent: undefined } }), random: seededRandom(1), clock, sink, registry, flush: { intervalMs: 60_000, minBytes } });
  return { clock, sink, log, registry };
}

test('close() writes what is buffered and resolves only once the sink has taken every write, the ones queued behind a held write included', async () => {
  const { sink, log } = setup(0);
  // minBytes 0: each line is a write; the first is held, the next two wait in the stream.
  for (const p of ['/a', '/b', '/c']) log.write(entry(p));
  expect(sink.taken).toHaveLength(1);
  let closed = false;
  void log.close().then(() => (closed = true));
  await tick();
  expect(closed).toBe(false);
  // Taken one write at a time: still not closed until the last has been taken.
  sink.release();
  await tick();
  expect(closed).toBe(false);
  while (!closed) {
    sink.release();
    await tick();
  }
  expect(paths(sink)).toEqual(['/a', '/b', '/c']);
});

test('close() with lines buffered for the interval writes them; a line that comes after the stop is written at once, with no timer', async () => {
  const { sink, log, clock, registry } = setup(1 << 20);
  log.write(entry('/buffered'));
  expect(sink.taken).toHaveLength(0);
  let closed = false;
  void log.close().then(() => (closed = true));
  expect(paths(sink)).toEqual(['/buffered']);
  while (!closed) {
    sink.release();
    await tick();
  }
  // A request cut as the listeners closed logs after the stop: nothing would flush it later.
  log.write(entry('/late'));
  expect(paths(sink)).toEqual(['/buffered', '/late']);
  expect(clock.pending()).toBe(0);
  const text = await registry.getSingleMetricAsString('wren_access_log_flushes_total');
  expect(text).toContain('wren_access_log_flushes_total{reason="shutdown"} 2');
});

test('close() with nothing written resolves at once and writes nothing', async () => {
  const { sink, log } = setup(0);
  await log.close();
  expect(sink.taken).toEqual([]);
});
