import type { Agent } from 'node:http';
import type { HttpLayer, HttpService } from '../http/exchange.js';
import { stack } from '../http/exchange.js';
import { errorsToResponse } from '../layers/errors-to-response.js';
import { recordMetrics } from '../layers/record-metrics.js';
import { traceRequests } from '../layers/trace.js';
import type { MeshTracer } from '../tracing/mesh-tracer.js';
import { requestId } from '../layers/request-id.js';
import { forwardedFor } from '../layers/forwarded-for.js';
import { stripMeshHeaders } from '../layers/strip-mesh-headers.js';
import { routeByAuthority } from '../layers/route-by-authority.js';
import { routeRules } from '../layers/route-rules.js';
import { admission } from '../layers/admission.js';
import { fault } from '../layers/fault.js';
import { backendRequestTimeout, timeouts } from '../layers/timeouts.js';
import { retry, type RetryObserver } from '../layers/retry.js';
import { pickEndpoint } from '../layers/pick-endpoint.js';
import { forwardToEndpoint, forwardWatchesSignal, meshPoolsOf, type MeshPools } from './forward-to-endpoint.js';
import { accessLog } from '../layers/access-log.js';
import type { AccessLog } from '../access-log/access-log.js';
import { outboundConnector } from './outbound-connector.js';
import type { RouteTable } from './route-table.js';
import type { ClusterSet } from './cluster-set.js';
import type { PeerPool } from './peer-pool.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { Clock, Random } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';

export interface OutboundStackDeps {
  readonly routes: () => RouteTable;
  readonly clusters: () => ClusterSet;
  readonly peers: PeerPool;
  readonly agent: Agent;
  /** The HTTP/1.1 pools to peer sidecars (protocol.meshHttp1 h1 or mux; meshHttp2 mux); without one, HTTP/2 streams. */
  readonly mesh: MeshPools;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  /** Fault injection's draws (TrafficPolicy fault percentages), weighted backend picks and mirror sampling of HTTPRoute rules. */
  readonly random: Random;
  readonly logger: Logger;
  /** The access log (docs/observability.md); absent: none. */
  readonly accessLog?: AccessLog;
  /** CLIENT spans and trace-context propagation (docs/observability.md, Tracing); absent: none. */
  readonly tracer?: MeshTracer;
  /** Requests on connections to destinations outside the mesh (proxy/egress/egress-http.ts); absent: none. */
  readonly egress?: HttpLayer;
  /** Told about each retried request (the dashboard's "why" view, proxy/stats/recent-retries.ts). */
  readonly onRetried?: RetryObserver;
}

/**
 * The outbound HTTP pipeline, top (first to see a request) to bottom. The resilience
 * part (docs/resilience.md): admission (max requests, budget deposit) → timeouts (request
 * timeout, gRPC deadline, idle) → retry (decision, budget, backoff, replayable body,
 * per-try timeout) → pick-endpoint (one attempt: pick, connect through the connector with the
 * connect timeout, outcome). Opaque TCP takes route → admission → retry → pick too (tcp-stack.ts).
 */
export function outboundStack(d: OutboundStackDeps): HttpService {
  const via = meshPoolsOf(d.mesh);
  return stack(
    [
      // The access log on top: it sees the response the client gets, synthetic ones included.
      ...(d.accessLog ? [accessLog(d.accessLog, 'outbound')] : []),
      // Metrics above errors: a synthetic error response (503 UO, 404 NR...) is counted too.
      recordMetrics(d.metrics, 'outbound', d.clock),
      // Above errors too: a synthetic error response ends the span with its status and flag.
      ...(d.tracer ? [traceRequests(d.tracer, 'client', d.clock)] : []),
      errorsToResponse(d.logger, 'outbound'),
      stripMeshHeaders(),
      requestId(),
      forwardedFor(),
      // Above routing: a request to a destination outside the mesh never takes a mesh route.
      ...(d.egress ? [d.egress] : []),
      routeByAuthority(d.routes),
      // HTTPRoute / GRPCRoute: rule match, weighted backend, filters, re-target (docs/traffic-management.md).
      routeRules({ routes: d.routes, random: d.random, mirror: { clock: d.clock, random: d.random, count: (result) => d.metrics.routeMirrors.inc({ result }) } }),
      // After routing (the fault is the routed service port's), above admission and retry
      // (Envoy's fault filter sits before the router: no slot held, an abort never retried).
      fault({ clock: d.clock, random: d.random, injected: d.metrics.faultsInjected }),
      admission(d.clusters),
      timeouts(d.clock, d.logger),
      retry(d.clock, d.logger, d.onRetried),
      backendRequestTimeout(d.clock),
      pickEndpoint({ clusters: d.clusters, clock: d.clock, connectorFor: outboundConnector(d.peers, d.clock, via), watchesSignal: forwardWatchesSignal(d.mesh) }),
    ],
    forwardToEndpoint(d.peers, d.agent, d.mesh, d.metrics.local),
  );
}
