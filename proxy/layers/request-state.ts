import type { ProxyRequest } from '../http/exchange.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';
import type { Outcome } from '../resilience/classify.js';
import type { Upstream } from '../net/connector.js';
import type { Endpoint } from '../../contract/model.js';
import type { Clock, Timer } from '../../common/clock.js';

/**
 * The endpoint keys one request has tried, in order. Almost every request makes one
 * attempt: the first key is a field, and a Set is made only for a retry's second key
 * (a Set per request was 1.6 % of what an outbound sidecar allocated per request at
 * HTTP/1.1 saturation, V8's sampling heap profiler). What the pickers read of it is
 * PickContext.exclude's `size` and `has`.
 */
export class TriedKeys {
  private first: string | null = null;
  private more: Set<string> | null = null;

  get size(): number {
    return this.more !== null ? this.more.size : this.first !== null ? 1 : 0;
  }

  has(key: string): boolean {
    return this.more !== null ? this.more.has(key) : this.first === key;
  }

  /** As Set's: returns the set. */
  add(key: string): this {
    if (this.more !== null) this.more.add(key);
    else if (this.first === null) this.first = key;
    else if (this.first !== key) this.more = new Set([this.first, key]);
    return this;
  }

  /** The key tried last, or undefined before any attempt. */
  last(): string | undefined {
    if (this.more === null) return this.first ?? undefined;
    let k: string | undefined;
    for (const x of this.more) k = x;
    return k;
  }
}

/**
 * What the resilience layers (admission → timeouts → retry → pick-endpoint) share about
 * one downstream request. It rides on the request object under a symbol so it survives
 * the per-attempt copies (`{ ...req }` copies own symbol properties) without adding a
 * field to ProxyRequest. A class with every field set at construction: one object shape
 * for every request, where a literal given its optional fields later changed shape per
 * layer that set one.
 */
export class ResilienceState {
  /** Endpoint keys already tried by this request (retries go elsewhere). */
  readonly tried = new TriedKeys();
  /** Clock time by which the whole request must finish (request timeout or gRPC deadline). */
  deadlineAt: number | undefined = undefined;
  /** Which limit `deadlineAt` is (the timeouts layer's): what an attempt with less than 1 ms left fails with. */
  deadlineCode: 'REQUEST_TIMEOUT' | 'DEADLINE_EXCEEDED' = 'DEADLINE_EXCEEDED';
  /** Set by pick-endpoint when an attempt fails with an error: how it was classified. */
  outcome: Outcome | undefined = undefined;
  /** Whether the failed attempt's request (headers or body bytes) may have reached the upstream. */
  sent = false;
  /**
   * Attempts pick-endpoint has started for this request: the current one's number. An
   * attempt writes `outcome` and `sent` only while it is the current one. A try ended from
   * above (a per-try timeout's race, timeouts.ts backendRequest) settles below a turn
   * later (an HTTP/2 stream's close), and after a backoff of 0 (full jitter can draw it)
   * the next try has started by then: the old try's result landed on the new try's state.
   */
  tries = 0;
  /**
   * What pick-endpoint connected the current attempt to (its connector's upstream), for
   * the terminal service to send on; undefined when the terminal connects by itself.
   */
  upstream: Upstream | undefined = undefined;
  /**
   * The latest attempt's endpoint (attempts may be copies of the request, whose `req.endpoint`
   * stays on the copy): the metrics' destination_* labels and the access log's upstream host.
   */
  endpoint: Endpoint | undefined = undefined;
  /**
   * The current attempt's per-try timers (the retry layer's perTryTimeoutMs, an HTTPRoute
   * rule's `timeouts.backendRequest`), armed as the attempt starts and stopped while it
   * waits for a connection (waitsForConnection), then started again, from zero, once it has
   * one (connected). Envoy starts the per-try timeout when the request has its connection
   * (router/upstream_request.cc onPoolReady: setupPerTryTimeout), the connect timeout
   * bounding the wait before it, and GEP-1742 times `backendRequest` "from when the request
   * first starts being sent". Timed from the attempt's start, a try that waited out the
   * peer sidecar's TLS handshake on a loaded machine timed out without reaching the app, and
   * was retried as if the app had been slow (test/route-rule-retry.test.ts saw 2 tries of 3).
   * null while none is armed: the common request pays one comparison per wait.
   */
  private tryTimers: TryTimer[] | null = null;

  constructor(readonly cluster: ClusterHandle) {}

  /** A new attempt: the last one's timers are its own (cleared by their layers) and forgotten here. */
  newTry(): void {
    this.tryTimers = null;
  }

  /** A per-try timer of the current attempt (TryTimer), stopped while it waits for a connection. */
  addTryTimer(t: TryTimer): void {
    if (this.tryTimers === null) this.tryTimers = [t];
    else this.tryTimers.push(t);
  }

  /** The attempt waits for a connection (ConnectionWait, h1-pool-options.ts): its per-try timers stop. */
  waitsForConnection(): void {
    const ts = this.tryTimers;
    if (ts !== null) for (const t of ts) t.pause();
  }

  /**
   * The attempt has its connection: its per-try timers stopped meanwhile start again, from
   * zero (running ones go on). They stay the attempt's: a request the HTTP/1.1 pool sends
   * again after a refused mesh stream waits for another connection, and they stop again.
   */
  connected(): void {
    const ts = this.tryTimers;
    if (ts !== null) for (const t of ts) t.resume();
  }

  /** Whether a layer below must say when the attempt waits for a connection (forward-to-endpoint passes this state to the pool then). */
  get timesTry(): boolean {
    return this.tryTimers !== null;
  }
}

/**
 * A per-try timer: fires `fire` `ms` after it was armed, or after it was last resumed
 * (ResilienceState.connected) if it was paused (the attempt waited for a connection).
 */
export class TryTimer {
  private timer: Timer | null = null;
  private done = false;

  constructor(
    private readonly clock: Clock,
    private readonly ms: number,
    private readonly fire: () => void,
  ) {
    this.timer = clock.setTimeout(this.onTimer, ms);
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.done) return;
    this.done = true;
    this.fire();
  };

  pause(): void {
    if (this.timer === null) return;
    this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  resume(): void {
    if (this.timer === null && !this.done) this.timer = this.clock.setTimeout(this.onTimer, this.ms);
  }

  /** The attempt is over: the timer never fires. */
  clear(): void {
    this.done = true;
    this.pause();
  }
}

const STATE = Symbol('wren.resilience');
type WithState = { [STATE]?: ResilienceState };

export function attachState(req: ProxyRequest, cluster: ClusterHandle): ResilienceState {
  const s = new ResilienceState(cluster);
  (req as ProxyRequest & WithState)[STATE] = s;
  return s;
}

export function stateOf(req: ProxyRequest): ResilienceState | undefined {
  return (req as ProxyRequest & WithState)[STATE];
}
