/**
 * How the CLI honours a server's "not now": an admin port (the control plane's, a
 * proxy's) or the Kubernetes API server in front of it (API Priority and Fairness answers
 * 429) that answers 429 Too Many Requests or 503 Service Unavailable with a Retry-After
 * header (RFC 9110 section 10.2.3; RFC 6585 section 4) is asked again once that time has
 * passed, within bounds: each wait at most maxWaitMs, all of them together at most
 * maxTotalWaitMs, at most maxAttempts requests. A 503 without Retry-After is an answer,
 * not a request to wait (the control plane's /ready says "not ready" so), and is returned
 * as it is. When the bounds are reached the command gets a RetryAfterExhausted error that
 * says what the server asked and how long the CLI waited.
 */
import { setTimeout as sleepReal } from 'node:timers/promises';
import { systemClock } from '../common/clock.js';
import { retryAfterMs } from '../common/http-retry-after.js';
import { printable } from '../common/printable.js';

export interface RetryAfterPolicy {
  /** Requests in all, the first included. */
  readonly maxAttempts: number;
  /** Longest single wait; a server asking for more is given up on at once. */
  readonly maxWaitMs: number;
  /** Longest wait of all the retries together. */
  readonly maxTotalWaitMs: number;
}

/**
 * 4 requests over at most 30 s, no wait longer than 10 s: the control plane's render
 * budget refuses a page for 4 × its render time (docs/operations.md, Render budget), so a
 * page that took 2 s to render is refused for 8 s, once; an interactive command that waits
 * longer than half a minute is better told the server is overloaded.
 */
export const DEFAULT_RETRY_AFTER: RetryAfterPolicy = Object.freeze({ maxAttempts: 4, maxWaitMs: 10_000, maxTotalWaitMs: 30_000 });

export interface Answer {
  readonly status: number;
  readonly body: string;
  /** The Retry-After header as sent; undefined when there was none. */
  readonly retryAfter?: string;
}

/**
 * The wait a Retry-After value asks for, in ms, or undefined when it is no delay-seconds and
 * none of RFC 9110's three HTTP-date forms: common/http-retry-after.ts, which the dashboard
 * loads too, so the CLI and the page read a header alike.
 */
export { retryAfterMs };

export class RetryAfterExhausted extends Error {
  override readonly name = 'RetryAfterExhausted';
  constructor(
    message: string,
    readonly last: Answer,
  ) {
    super(message);
  }
}

export interface RetryAfterDeps {
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
  /** Told before each wait (the commands print nothing: their output is the answer). */
  readonly onWait?: (ms: number, answer: Answer) => void;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;

/**
 * `get()` again while it answers 429/503 with a usable Retry-After, within `policy`.
 * `what` names the request in the error ("127.0.1.254:15014/api/stat").
 */
export async function honourRetryAfter<A extends Answer>(what: string, get: () => Promise<A>, policy: RetryAfterPolicy = DEFAULT_RETRY_AFTER, deps: RetryAfterDeps = {}): Promise<A> {
  const sleep = deps.sleep ?? ((ms: number) => sleepReal(ms));
  const now = deps.now ?? (() => systemClock.wallNow());
  let waited = 0;
  for (let attempt = 1; ; attempt++) {
    const a = await get();
    if (a.status !== 429 && a.status !== 503) return a;
    const ms = retryAfterMs(a.retryAfter, now());
    if (ms === undefined) return a;
    // The header is the server's text, echoed to a terminal: escaped (common/printable.ts).
    const said = `HTTP ${a.status} with Retry-After: ${printable(a.retryAfter!.trim())}`;
    if (ms > policy.maxWaitMs)
      throw new RetryAfterExhausted(`${what}: ${said}, longer than the ${seconds(policy.maxWaitMs)} the CLI waits at once: the server is overloaded, try again later`, a);
    if (attempt >= policy.maxAttempts || waited + ms > policy.maxTotalWaitMs)
      throw new RetryAfterExhausted(`${what}: still ${said} after ${attempt} attempt(s) and ${seconds(waited)} of waiting (at most ${policy.maxAttempts} attempts, ${seconds(policy.maxTotalWaitMs)}): the server is overloaded, try again later`, a);
    deps.onWait?.(ms, a);
    await sleep(ms);
    waited += ms;
  }
}
