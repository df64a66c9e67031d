import { linkedAbort } from './linked-abort.js';

test('aborts with the parent, with its reason', () => {
  const parent = new AbortController();
  const ac = linkedAbort(parent.signal);
  expect(ac.signal.aborted).toBe(false);
  parent.abort(new Error('client gone'));
  expect(ac.signal.aborted).toBe(true);
  expect((ac.signal.reason as Error).message).toBe('client gone');
});

test('aborts on its own without touching the parent', () => {
  const parent = new AbortController();
  const ac = linkedAbort(parent.signal);
  ac.abort(new Error('timeout'));
  expect(ac.signal.aborted).toBe(true);
  expect(parent.signal.aborted).toBe(false);
  // The parent aborting later does not replace the first reason.
  parent.abort(new Error('late'));
  expect((ac.signal.reason as Error).message).toBe('timeout');
});

test('a parent already aborted: the link starts aborted', () => {
  const parent = new AbortController();
  parent.abort(new Error('before'));
  const ac = linkedAbort(parent.signal);
  expect(ac.signal.aborted).toBe(true);
  expect((ac.signal.reason as Error).message).toBe('before');
});
