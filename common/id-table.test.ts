import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { IdTable } from './id-table.js';
import { seededRandom } from './clock.js';

const run = promisify(execFile);

test('get, set, delete and size agree with a Map under random traffic, through growth and wrap-around', () => {
  // Seeded, so a failure repeats.
  const random = seededRandom(0x2545f491);
  const rnd = (n: number): number => Math.floor(random() * n);
  const t = new IdTable<string>();
  const m = new Map<number, string>();
  // Ids as a connection's (consecutive odd numbers) mixed with scattered ones that collide.
  let next = 1;
  for (let step = 0; step < 20_000; step++) {
    const op = rnd(10);
    if (op < 4) {
      const id = rnd(3) === 0 ? 1 + 2 * rnd(1 << 20) : (next += 2);
      t.set(id, `v${step}`);
      m.set(id, `v${step}`);
    } else if (op < 8 && m.size > 0) {
      const keys = [...m.keys()];
      const id = keys[rnd(keys.length)];
      expect(t.delete(id)).toBe(true);
      m.delete(id);
    } else {
      const id = 1 + rnd(next + 8);
      expect(t.get(id)).toBe(m.get(id));
      expect(t.delete(id)).toBe(m.delete(id));
    }
    expect(t.size).toBe(m.size);
  }
  for (const [id, v] of m) expect(t.get(id)).toBe(v);
  expect(t.values().sort()).toEqual([...m.values()].sort());
});

test('a run that wraps past the end of the slots survives deletions in any order', () => {
  const t = new IdTable<number>();
  // Home slots 14, 15, 15, 15 (of 16): the run wraps to slots 0 and 1.
  const ids = [29, 31, 63, 95, 127];
  for (const id of ids) t.set(id, id);
  for (const order of [[31, 63, 29, 127, 95], [95, 29, 127, 31, 63]]) {
    for (const id of ids) t.set(id, id);
    const left = new Set(ids);
    for (const id of order) {
      expect(t.delete(id)).toBe(true);
      left.delete(id);
      for (const other of ids) expect(t.get(other)).toBe(left.has(other) ? other : undefined);
    }
    expect(t.size).toBe(0);
  }
});

test('set replaces a value; the largest stream id is taken, ids outside 1..2^31-1 are refused', () => {
  const t = new IdTable<string>();
  t.set(7, 'a');
  t.set(7, 'b');
  expect(t.size).toBe(1);
  expect(t.get(7)).toBe('b');
  t.set(0x7fffffff, 'max');
  expect(t.get(0x7fffffff)).toBe('max');
  for (const bad of [0, -1, 2 ** 31, 1.5, NaN]) expect(() => t.set(bad, 'x')).toThrow(RangeError);
  expect(t.delete(9)).toBe(false);
  t.clear();
  expect(t.size).toBe(0);
  expect(t.get(7)).toBeUndefined();
});

test('values() is a copy: deleting while going through it visits every value once', () => {
  const t = new IdTable<number>();
  for (let id = 1; id < 200; id += 2) t.set(id, id);
  let seen = 0;
  for (const v of t.values()) {
    t.delete(v);
    seen++;
  }
  expect(seen).toBe(100);
  expect(t.size).toBe(0);
});

/**
 * Why the table exists: a long-lived table (old generation) with values coming and going,
 * 16 at a time, as a connection's streams do. After 320 of them, nothing in flight, two
 * scavenges: what they promoted is what the table kept reachable for them. A Map keeps
 * every value (its rehashed tables chain from the old one); measured beside it, printed.
 *
 * Measured in a fresh `node --expose-gc` (the module loaded with its types transformed): in
 * the jest worker the eight full collections walked everything the worker had loaded for the
 * files before this one (a major GC of ~800 MB takes ~2 s on a loaded 2-CPU machine), 17 s
 * of the 30 s timeout in CI for a measurement of a few kilobytes.
 */
test('values deleted from a long-lived table are not kept for the young generation\'s collector', async () => {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    const { IdTable } = await import(${JSON.stringify(new URL('./id-table.ts', import.meta.url).href)});
    const gc = globalThis.gc;
    const oldSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
    const value = (id) => ({ id, parts: new Array(32).fill(id), more: { id } });
    const promoted = (table) => {
      let id = 1;
      for (let i = 0; i < 2000; i++, id += 2) {
        table.set(id, value(id));
        if (id > 32) table.delete(id - 32);
      }
      const out = [];
      for (let round = 0; round < 4; round++) {
        gc({ type: 'major', execution: 'sync' });
        for (let i = 0; i < 320; i++, id += 2) {
          table.set(id, value(id));
          if (id > 32) table.delete(id - 32);
        }
        const before = oldSpace();
        gc({ type: 'minor', execution: 'sync' });
        gc({ type: 'minor', execution: 'sync' });
        out.push(oldSpace() - before);
      }
      return out.sort((a, b) => a - b)[1];
    };
    const map = promoted(new Map());
    const table = promoted(new IdTable());
    process.stdout.write(JSON.stringify({ map, table }));
  `;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--experimental-transform-types', '--no-warnings', '--input-type=module', '-e', script]);
  const { map, table } = JSON.parse(stdout) as { map: number; table: number };
  process.stdout.write(`promoted per 320 values: Map ${(map / 1024).toFixed(1)} KB, IdTable ${(table / 1024).toFixed(1)} KB\n`);
  // A value is ~200 bytes; the 16 still in the table are live and may be promoted.
  expect(table).toBeLessThan(16 * 1024);
});
