import { execFileSync } from 'node:child_process';
import { deferred, deferredPending, enterTurn, inTurn, leaveTurn } from './deferred.js';

const tick = (): Promise<void> => new Promise<void>((r) => setImmediate(r));

/** Counts process.nextTick calls with `count` until the returned original is put back. */
function countTicks(count: () => void): typeof process.nextTick {
  const realNextTick = process.nextTick;
  process.nextTick = ((fn: () => void, ...a: unknown[]) => {
    count();
    return realNextTick(fn, ...a);
  }) as typeof process.nextTick;
  return realNextTick;
}

test('steps run after the current code, on the tick queue, in the order queued; one tick serves them all', async () => {
  const log: string[] = [];
  const seen: number[] = [];
  let ticks = 0;
  const realNextTick = countTicks(() => ticks++);
  try {
    for (let i = 0; i < 100; i++) deferred((n: number) => seen.push(n), i);
    deferred((s: string) => log.push(s), 'step');
    log.push('sync');
  } finally {
    process.nextTick = realNextTick;
  }
  await tick();
  expect(ticks).toBe(1);
  expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(log).toEqual(['sync', 'step']);
});

test('a step queued by a step runs in the same pass, after the others', async () => {
  const log: string[] = [];
  deferred(() => {
    log.push('a');
    deferred(() => log.push('c'), undefined);
  }, undefined);
  deferred(() => log.push('b'), undefined);
  await tick();
  expect(log).toEqual(['a', 'b', 'c']);
});

test('a step that throws loses none of the steps after it; its error is uncaught, as a throwing tick callback is', () => {
  // In a process of its own: jest takes uncaught errors for the test's failure.
  const script = `
    import { deferred } from ${JSON.stringify(new URL('./deferred.ts', import.meta.url).href)};
    const log = [];
    process.on('uncaughtException', (e) => log.push('uncaught ' + e.message));
    deferred(() => log.push('before'), undefined);
    deferred(() => { throw new Error('step failed'); }, undefined);
    deferred(() => log.push('after'), undefined);
    setTimeout(() => console.log(JSON.stringify(log)), 20);
  `;
  const out = execFileSync(process.execPath, ['--experimental-strip-types', '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual(['before', 'uncaught step failed', 'after']);
});

test('a drained step keeps no reference to its argument (the queue\'s entries are cleared, not left for the next turn to overwrite)', async () => {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let ref: WeakRef<object> | undefined;
  (() => {
    const body = { big: Buffer.alloc(1024) };
    ref = new WeakRef(body);
    deferred((b: { big: Buffer }) => void b.big.length, body);
  })();
  await tick();
  await tick();
  gc();
  expect(ref!.deref()).toBeUndefined();
});

test('inside a socket callback (enterTurn) steps take no tick: the outermost leaveTurn runs them, after the code that queued them', async () => {
  const log: string[] = [];
  let ticks = 0;
  const realNextTick = countTicks(() => ticks++);
  try {
    expect(deferredPending()).toBe(false);
    enterTurn();
    expect(deferredPending()).toBe(true);
    deferred((s: string) => log.push(s), 'outer step');
    enterTurn();
    deferred((s: string) => log.push(s), 'inner step');
    leaveTurn();
    log.push('after the inner callback');
    leaveTurn();
    log.push('after the outer callback');
    expect(deferredPending()).toBe(false);
  } finally {
    process.nextTick = realNextTick;
  }
  expect(ticks).toBe(0);
  expect(log).toEqual(['after the inner callback', 'outer step', 'inner step', 'after the outer callback']);
  // Outside a callback, a step takes its tick again.
  deferred((s: string) => log.push(s), 'later');
  expect(deferredPending()).toBe(true);
  await tick();
  expect(log.at(-1)).toBe('later');
});

test('a socket callback that throws still runs what it deferred (leaveTurn in finally), and the next one starts clean', () => {
  const log: string[] = [];
  const callback = (fail: boolean): void => {
    enterTurn();
    try {
      deferred((s: string) => log.push(s), fail ? 'deferred before the throw' : 'next');
      if (fail) throw new Error('boom');
    } finally {
      leaveTurn();
    }
  };
  expect(() => callback(true)).toThrow('boom');
  expect(log).toEqual(['deferred before the throw']);
  callback(false);
  expect(log).toEqual(['deferred before the throw', 'next']);
  expect(deferredPending()).toBe(false);
});

test('a step that throws as the outermost leaveTurn drains: the steps after it still run (on a tick), the depth is back to 0, and the next turn drains as it returns', () => {
  // In a process of its own: jest takes uncaught errors for the test's failure.
  const script = `
    import { deferred, deferredPending, enterTurn, leaveTurn } from ${JSON.stringify(new URL('./deferred.ts', import.meta.url).href)};
    const log = [];
    process.on('uncaughtException', (e) => log.push('uncaught ' + e.message));
    let thrown = '';
    enterTurn();
    try {
      deferred(() => log.push('first'), undefined);
      deferred(() => { throw new Error('step failed'); }, undefined);
      deferred(() => log.push('after the throw'), undefined);
    } finally {
      try { leaveTurn(); } catch (e) { thrown = e.message; }
    }
    log.push('thrown ' + thrown);
    setTimeout(() => {
      // A later turn: its steps run as it returns.
      enterTurn();
      try {
        deferred(() => log.push('next turn'), undefined);
      } finally {
        leaveTurn();
      }
      log.push('pending ' + deferredPending());
      console.log(JSON.stringify(log));
    }, 5);
  `;
  const out = execFileSync(process.execPath, ['--experimental-strip-types', '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual(['first', 'thrown step failed', 'after the throw', 'next turn', 'pending false']);
});

test("approxNow inside a turn is one reading until the turn's end, also for a callback that throws; the next turn reads the clock afresh", async () => {
  const { systemClock } = await import('./clock.js');
  const spin = (ms: number): void => {
    const t = performance.now();
    while (performance.now() - t < ms);
  };
  let first = 0;
  let second = 0;
  const callback = (): void => {
    enterTurn();
    try {
      first = systemClock.approxNow();
      spin(2);
      second = systemClock.approxNow();
      throw new Error('callback failed');
    } finally {
      leaveTurn();
    }
  };
  expect(callback).toThrow('callback failed');
  expect(second).toBe(first);
  expect(deferredPending()).toBe(false);
  spin(2);
  const outside = systemClock.approxNow();
  expect(outside).toBeGreaterThan(first);
  enterTurn();
  let inNext: number;
  try {
    inNext = systemClock.approxNow();
  } finally {
    leaveTurn();
  }
  expect(inNext).toBeGreaterThanOrEqual(outside);
  expect(deferredPending()).toBe(false);
});

test('inTurn calls the method on its object as a turn: what it defers runs as it returns, and after a throw too', () => {
  const log: string[] = [];
  let ticks = 0;
  const realNextTick = countTicks(() => ticks++);
  class Reader {
    constructor(readonly name: string) {}
    read(this: Reader, d: string): void {
      deferred((s: string) => log.push(s), `${this.name} step`);
      log.push(`${this.name} read ${d}`);
      if (d === 'bad') throw new Error('bad read');
    }
  }
  const r = new Reader('r');
  try {
    inTurn(r.read, r, 'ok');
    log.push('returned');
    expect(() => inTurn(r.read, r, 'bad')).toThrow('bad read');
    log.push('thrown');
    expect(deferredPending()).toBe(false);
  } finally {
    process.nextTick = realNextTick;
  }
  expect(ticks).toBe(0);
  expect(log).toEqual(['r read ok', 'r step', 'returned', 'r read bad', 'r step', 'thrown']);
});
