/**
 * One shared queue of deferred steps, drained by one `process.nextTick` per turn. A body's
 * deferred steps (lean-body.ts) run on the tick queue as node's Readable runs them (after
 * the current code, before promise callbacks of the same tick pass), in the order they
 * were queued, but a turn that defers a hundred steps makes one tick object instead of a
 * hundred: node's `nextTick` builds an object with three computed symbol keys per call (its
 * async-context bookkeeping). The one difference: the steps run together, at the place of
 * the first among other ticks, so a `process.nextTick` queued between two steps runs after
 * both, not between them (lean-body.test.ts pins it; nothing in the proxy orders its own
 * ticks against a body's events).
 * No closure per step: a step is a module function and its argument.
 */
type Step<T> = (arg: T) => void;

let fns: Step<never>[] = [];
let args: unknown[] = [];
let scheduled = false;

export function deferred<T>(fn: Step<T>, arg: T): void {
  fns.push(fn as Step<never>);
  args.push(arg);
  if (!scheduled) {
    scheduled = true;
    process.nextTick(drain);
  }
}

function drain(): void {
  // Steps queued while draining run in this same pass, after those before them (a body's
  // 'close' after its 'end', as node's own ticks would order them). A step that throws
  // leaves the rest for a new tick, so nothing queued is lost, and the error goes on as
  // node's uncaught tick error would.
  let i = 0;
  try {
    for (; i < fns.length; i++) fns[i](args[i] as never);
  } finally {
    if (i < fns.length) {
      fns = fns.slice(i + 1);
      args = args.slice(i + 1);
      if (fns.length > 0) process.nextTick(drain);
      else scheduled = false;
    } else {
      fns.length = 0;
      args.length = 0;
      scheduled = false;
    }
  }
}
