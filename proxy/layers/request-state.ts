import type { ProxyRequest } from '../http/exchange.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';
import type { Outcome } from '../resilience/classify.js';
import type { Upstream } from '../net/connector.js';
import type { Endpoint } from '../../contract/model.js';

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
   * What pick-endpoint connected the current attempt to (its connector's upstream), for
   * the terminal service to send on; undefined when the terminal connects by itself.
   */
  upstream: Upstream | undefined = undefined;
  /**
   * The latest attempt's endpoint (attempts may be copies of the request, whose `req.endpoint`
   * stays on the copy): the metrics' destination_* labels and the access log's upstream host.
   */
  endpoint: Endpoint | undefined = undefined;

  constructor(readonly cluster: ClusterHandle) {}
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
