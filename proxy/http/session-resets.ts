import type { ClientHttp2Session } from 'node:http2';

const BUDGET = Symbol('wren.resetBudget');
interface Budget {
  left: number;
  readonly spent: () => void;
}
type Budgeted = ClientHttp2Session & { [BUDGET]?: Budget };

/**
 * Reset budget of an upstream session (issue 11, item 1). Every stream we forwarded and
 * that then closed with a reset (ours, relaying a caller's cancellation, or the
 * upstream's) costs one; when `budget` is spent, `spent` runs once, to retire the
 * session: new requests go to a new session, in-flight ones finish on this one.
 *
 * Why: HTTP/2 servers guard against rapid reset by counting resets per connection
 * (nghttp2, hence every Node app: a burst of 1000, then 33/s; beyond it GOAWAY
 * INTERNAL_ERROR and the connection is dropped with every stream in flight on it). The
 * inbound multiplexes all callers onto one session to the app, so one caller's
 * cancellations, relayed faithfully, would fail every other caller's requests. Retiring
 * the session well inside the app's limit keeps each connection under it; a session only
 * costs a new connection to the app, made once per `budget` resets.
 */
export function setResetBudget(session: ClientHttp2Session, budget: number, spent: () => void): void {
  if (budget > 0) (session as Budgeted)[BUDGET] = { left: budget, spent };
}

/** A stream forwarded on `session` closed with a reset (called by forwardH2). */
export function chargeReset(session: ClientHttp2Session): void {
  const b = (session as Budgeted)[BUDGET];
  if (b && --b.left === 0) b.spent();
}

const LIMIT = Symbol('wren.sessionLimit');
type Limited = ClientHttp2Session & { [LIMIT]?: (limit: 'interim-responses') => void };

/**
 * Counts a per-stream limit the upstream of `session` broke (wren_limit_exceeded_total): the
 * app session pool sets it, as the frame-level client's sessions have their onLimit.
 */
export function setLimitCounter(session: ClientHttp2Session, onLimit: (limit: 'interim-responses') => void): void {
  (session as Limited)[LIMIT] = onLimit;
}

/** A stream forwarded on `session` broke `limit` (called by forwardH2's call). */
export function countLimit(session: ClientHttp2Session, limit: 'interim-responses'): void {
  (session as Limited)[LIMIT]?.(limit);
}

const FROM_APP = Symbol('wren.fromApp');
type FromApp = ClientHttp2Session & { [FROM_APP]?: true };

/** The session reaches the local app (the app session pool marks it): its responses' trailers lose NOT_FROM_APP (headers.ts). */
export function markFromApp(session: ClientHttp2Session): void {
  (session as FromApp)[FROM_APP] = true;
}

/** Whether `session` reaches the local app (markFromApp). */
export function isFromApp(session: ClientHttp2Session): boolean {
  return (session as FromApp)[FROM_APP] === true;
}
