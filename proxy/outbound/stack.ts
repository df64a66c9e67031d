import type { Agent } from 'node:http';
import type { HttpService } from '../http/exchange.js';
import { stack } from '../http/exchange.js';
import { errorsToResponse } from '../layers/errors-to-response.js';
import { recordMetrics } from '../layers/record-metrics.js';
import { requestId } from '../layers/request-id.js';
import { forwardedFor } from '../layers/forwarded-for.js';
import { stripMeshHeaders } from '../layers/strip-mesh-headers.js';
import { routeByAuthority } from '../layers/route-by-authority.js';
import { pickEndpoint } from '../layers/pick-endpoint.js';
import { forwardToEndpoint } from './forward-to-endpoint.js';
import type { RouteTable } from './route-table.js';
import type { ClusterSet } from './cluster-set.js';
import type { PeerPool } from './peer-pool.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';

export interface OutboundStackDeps {
  readonly routes: () => RouteTable;
  readonly clusters: () => ClusterSet;
  readonly peers: PeerPool;
  readonly agent: Agent;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** The outbound HTTP pipeline, top (first to see a request) to bottom. */
export function outboundStack(d: OutboundStackDeps): HttpService {
  return stack(
    [
      errorsToResponse(d.logger, 'outbound'),
      recordMetrics(d.metrics, 'outbound', d.clock),
      stripMeshHeaders(),
      requestId(),
      forwardedFor(),
      routeByAuthority(d.routes),
      pickEndpoint(d.clusters, d.clock),
    ],
    forwardToEndpoint(d.peers, d.agent),
  );
}
