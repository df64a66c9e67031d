import type { ProxyRequest } from '../http/exchange.js';
import type { ClusterHandle } from '../outbound/cluster-set.js';
import type { Outcome } from '../resilience/classify.js';
import type { Upstream } from '../net/connector.js';
import type { Endpoint } from '../../contract/model.js';

/**
 * What the resilience layers (admission → timeouts → retry → pick-endpoint) share about
 * one downstream request. It rides on the request object under a symbol so it survives
 * the per-attempt copies (`{ ...req }` copies own symbol properties) without adding a
 * field to ProxyRequest.
 */
export interface ResilienceState {
  readonly cluster: ClusterHandle;
  /** Endpoint keys already tried by this request (retries go elsewhere). */
  readonly tried: Set<string>;
  /** Clock time by which the whole request must finish (request timeout or gRPC deadline). */
  deadlineAt?: number;
  /** Set by pick-endpoint when an attempt fails with an error: how it was classified. */
  outcome?: Outcome;
  /** Whether the failed attempt's request (headers or body bytes) may have reached the upstream. */
  sent: boolean;
  /**
   * What pick-endpoint connected the current attempt to (its connector's upstream), for
   * the terminal service to send on; undefined when the terminal connects by itself.
   */
  upstream?: Upstream;
  /**
   * The latest attempt's endpoint (attempts may be copies of the request, whose `req.endpoint`
   * stays on the copy): the metrics' destination_* labels and the access log's upstream host.
   */
  endpoint?: Endpoint;
}

const STATE = Symbol('wren.resilience');
type WithState = { [STATE]?: ResilienceState };

export function attachState(req: ProxyRequest, cluster: ClusterHandle): ResilienceState {
  const s: ResilienceState = { cluster, tried: new Set(), sent: false };
  (req as ProxyRequest & WithState)[STATE] = s;
  return s;
}

export function stateOf(req: ProxyRequest): ResilienceState | undefined {
  return (req as ProxyRequest & WithState)[STATE];
}
