import { deferred, deferredPending } from './deferred.js';

/**
 * Time and randomness are injected everywhere logic depends on them, so tests drive
 * fake time and seeded randomness (no Date.now() in logic modules; lint enforces it).
 */
export interface Clock {
  /** Milliseconds, monotonic enough for intervals (performance.now based in production). */
  now(): number;
  /**
   * now() as read once per turn of the event loop's callbacks (Envoy's
   * `Dispatcher::approximateMonotonicTime()`): in a turn that has deferred work queued (a
   * body's events, the multiplexer's look at the frames a callback wrote), the first call
   * reads the clock and the later ones, until that work runs, get the same reading; in any
   * other turn it is now(). For
   * times stamped many times per request where the microseconds of one turn make no
   * difference: idle and activity marks, an attempt's round-trip time for peak-EWMA, the
   * retry budget's slot. Never to time work done within one turn (it could measure 0), nor
   * for the latencies reported to users (record-metrics reads now()). A fake clock gives
   * its now().
   */
  approxNow(): number;
  /**
   * Milliseconds since the epoch by the wall clock: for times other processes and machines
   * stamp or read (certificate validity, a JWT's exp, timestamps shown to people). now() is
   * monotonic time anchored at process start, which falls behind the wall clock when the
   * system clock is stepped forward (an NTP or hypervisor sync) during a long process's
   * life, as Envoy keeps a monotonic and a system time apart. A fake clock gives its now().
   */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(t: Timer): void;
}

export interface Timer {
  unref?(): unknown;
}

export type Random = () => number;

/** The longest delay Node's setTimeout holds (a signed 32-bit ms count, 24.8 days); past it Node fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A configured delay for Node's own setTimeout where a LongTimer does not fit (a timer that is
 * refresh()ed, or armed with an argument to spare a closure per stream): at most 24.8 days, as
 * Node truncates a socket's and an HTTP/2 stream's setTimeout, instead of the 1 ms Node's
 * setTimeout makes of a longer one. A timer that re-arms for what is left (mux-stream.ts) still
 * keeps the whole delay.
 */
export function nodeTimerMs(ms: number): number {
  return ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms;
}

/**
 * A timer longer than Node can arm: a chain of maximal ones, re-armed until the whole
 * delay has passed. Durations come from config and clients (a 720h idle timeout, a
 * 30-day gRPC deadline, a 90-day certificate renewed at 70 %), and Node would otherwise
 * turn each into a 1 ms timer: a request failed at once, a refresh in a tight loop.
 * Infinity never fires.
 */
class LongTimer implements Timer {
  handle: ReturnType<typeof setTimeout>;
  private unrefd = false;

  constructor(
    private readonly fn: () => void,
    private remaining: number,
  ) {
    this.handle = this.arm();
  }

  private arm(): ReturnType<typeof setTimeout> {
    const step = Math.min(this.remaining, MAX_TIMER_MS);
    this.remaining -= step;
    const h = setTimeout(() => {
      if (this.remaining > 0) this.handle = this.arm();
      else this.fn();
    }, step);
    if (this.unrefd) h.unref();
    return h;
  }

  unref(): this {
    this.unrefd = true;
    this.handle.unref();
    return this;
  }
}

// Read once: \`performance\` is a lazy global accessor and \`timeOrigin\` a getter, and now()
// runs several times per request (56 ns a call read each time, 42 ns read once: Node 24).
const perf = performance;
const origin = perf.timeOrigin;

/**
 * The current turn's reading for approxNow(), -1 once the turn's deferred steps ran. It is
 * kept only in a turn whose deferred queue (deferred.ts) is to be drained anyway (a body's
 * events, the multiplexer's look at a callback's frames), and cleared by a step of that
 * drain: a reading of its own would cost a tick in a turn that defers nothing (test/request-cost.test.ts counted
 * three more per HTTP/2 request), more than the clock reads it saves. Outside such a turn
 * approxNow() is now(). A sidecar read the clock 11 times per request on the outbound and
 * 6 on the inbound, each a call into node and a clock_gettime (1.5 and 1 % of the two
 * sidecars at HTTP/1.1 saturation, docs/benchmarks.md "Issue 12, 2026-12-05 tenth session").
 */
let turnTime = -1;

function forgetTurnTime(): void {
  turnTime = -1;
}

export const systemClock: Clock = {
  now: () => origin + perf.now(),
  approxNow: () => {
    if (turnTime >= 0) return turnTime;
    const t = origin + perf.now();
    if (deferredPending()) {
      turnTime = t;
      deferred(forgetTurnTime, undefined);
    }
    return t;
  },
  wallNow: () => Date.now(),
  setTimeout: (fn, ms) => (ms > MAX_TIMER_MS ? new LongTimer(fn, ms) : setTimeout(fn, ms)),
  clearTimeout: (t) => clearTimeout(t instanceof LongTimer ? t.handle : (t as ReturnType<typeof setTimeout>)),
};

export const systemRandom: Random = Math.random;

/** Deterministic PRNG (mulberry32) for tests and reproducible benchmarks. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fake clock: timers fire only when the test advances time. */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  approxNow(): number {
    return this.t;
  }

  /** Fake time is the only time: the wall clock is now(). */
  wallNow(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return { id, unref: () => undefined } as Timer;
  }

  clearTimeout(t: Timer): void {
    this.timers.delete((t as { id: number }).id);
  }

  /** Advance time, firing due timers in order (timers set while firing also run if due). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }

  pending(): number {
    return this.timers.size;
  }
}
