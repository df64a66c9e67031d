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

// The queue is the first `count` entries; drained entries are cleared, not cut off with
// `length = 0`: an array's length is an accessor, and setting it was a call into V8's
// runtime on every drain (Runtime_StoreCallbackProperty, 0.2-0.5 % of a sidecar).
const fns: (Step<never> | undefined)[] = [];
const args: unknown[] = [];
let count = 0;
let scheduled = false;
/** Socket callbacks of the proxy's own running now (enterTurn): the outermost drains the queue as it returns. */
let depth = 0;

export function deferred<T>(fn: Step<T>, arg: T): void {
  fns[count] = fn as Step<never>;
  args[count] = arg;
  count++;
  if (!scheduled && depth === 0) {
    scheduled = true;
    process.nextTick(drain);
  }
}

/**
 * Whether a drain is queued, running or due at the end of the current socket callback: a
 * step deferred now rides on it, at no tick of its own (the clock's turn reading, clock.ts,
 * is kept only then).
 */
export function deferredPending(): boolean {
  return scheduled || depth > 0;
}

/**
 * A socket's data callback of the proxy's (the HTTP/1.1 server and pool connections, the
 * mesh multiplexer's TLS socket) starts: steps deferred until leaveTurn() need no tick, the
 * outermost leaveTurn() runs them. Each read was two or three ticks per request per sidecar
 * (a body's events, the multiplexer's look at a callback's frames): node's nextTick builds a
 * tick object per call, and the tick queue's loop runs once more. The steps still run after
 * the code that deferred them and before the promise callbacks of the same callback; they
 * run before ticks node queued during the callback (its stream's maybeReadMore), which
 * nothing orders a body's events against. Callers use inTurn(), which calls leaveTurn() in a
 * `finally`.
 */
export function enterTurn(): void {
  depth++;
}

/** The socket callback enterTurn() marked has returned (or thrown): the outermost runs what it deferred. */
export function leaveTurn(): void {
  if (--depth === 0 && count > 0 && !scheduled) {
    scheduled = true;
    drain();
  }
}

/**
 * `fn.call(self, arg)` as a turn: enterTurn(), then leaveTurn() in a `finally`. What the
 * proxy's socket callbacks and response hand-overs call, with a method and its object, so
 * a call makes no closure.
 */
export function inTurn<S, A>(fn: (this: S, arg: A) => void, self: S, arg: A): void {
  enterTurn();
  try {
    fn.call(self, arg);
  } finally {
    leaveTurn();
  }
}

function drain(): void {
  // Steps queued while draining run in this same pass, after those before them (a body's
  // 'close' after its 'end', as node's own ticks would order them). A step that throws
  // leaves the rest for a new tick, so nothing queued is lost, and the error goes on as
  // node's uncaught tick error would.
  let i = 0;
  try {
    for (; i < count; i++) {
      const fn = fns[i]!;
      const arg = args[i];
      fns[i] = undefined;
      args[i] = undefined;
      fn(arg as never);
    }
  } finally {
    if (i < count) {
      // Step i threw (and is cleared): the ones after it move to the front.
      const rest = count - i - 1;
      for (let j = 0; j < rest; j++) {
        fns[j] = fns[i + 1 + j];
        args[j] = args[i + 1 + j];
      }
      for (let j = rest; j < count; j++) {
        fns[j] = undefined;
        args[j] = undefined;
      }
      count = rest;
      if (count > 0) process.nextTick(drain);
      else scheduled = false;
    } else {
      count = 0;
      scheduled = false;
    }
  }
}
