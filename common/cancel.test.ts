import { jest } from '@jest/globals';
import { Cancel, type CancelSignal } from './cancel.js';

test('abort runs every listener once, in the order they were added, with the reason set first', () => {
  const c = new Cancel();
  const seen: string[] = [];
  const a = () => seen.push(`a:${String(c.reason)}`);
  const b = () => seen.push('b');
  const d = () => seen.push('d');
  c.addEventListener('abort', a);
  c.addEventListener('abort', b);
  c.addEventListener('abort', a); // twice: once
  c.removeEventListener('abort', a);
  c.addEventListener('abort', d);
  c.addEventListener('abort', a); // after b and d now
  expect(c.aborted).toBe(false);
  c.abort('why');
  c.abort('again');
  expect(seen).toEqual(['b', 'd', 'a:why']);
  expect(c.aborted).toBe(true);
  expect(c.reason).toBe('why');
});

test('a listener removed before the abort never runs; one added after it never runs either', () => {
  const c = new Cancel();
  let n = 0;
  const l = () => n++;
  c.addEventListener('abort', l);
  c.removeEventListener('abort', l);
  c.abort();
  c.addEventListener('abort', l);
  expect(n).toBe(0);
});

test('without a reason, an AbortError as AbortSignal gives; signal is the object itself', () => {
  const c = new Cancel();
  expect(c.signal).toBe(c);
  c.abort();
  expect(c.reason).toBeInstanceOf(DOMException);
  expect((c.reason as DOMException).name).toBe('AbortError');
});

test('a listener that throws does not stop the others; its error is reported as uncaught on the next tick', () => {
  const c = new Cancel();
  let after = false;
  c.addEventListener('abort', () => {
    throw new Error('listener broke');
  });
  c.addEventListener('abort', () => (after = true));
  // The rethrow is scheduled with process.nextTick (jest would take a real uncaught exception as this test's failure).
  const scheduled: [(...args: unknown[]) => void, unknown[]][] = [];
  const spy = jest.spyOn(process, 'nextTick').mockImplementation(((fn: (...a: unknown[]) => void, ...args: unknown[]) => void scheduled.push([fn, args])) as typeof process.nextTick);
  try {
    c.abort();
  } finally {
    spy.mockRestore();
  }
  expect(after).toBe(true);
  expect(scheduled).toHaveLength(1);
  const [fn, args] = scheduled[0];
  expect(() => fn(...args)).toThrow('listener broke');
});

test('a node AbortSignal is a CancelSignal too (callers and tests may pass either)', () => {
  const ac = new AbortController();
  const s: CancelSignal = ac.signal;
  let ran = false;
  s.addEventListener('abort', () => (ran = true), { once: true });
  ac.abort();
  expect(ran).toBe(true);
});
