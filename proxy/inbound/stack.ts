import type { Agent } from 'node:http';
import type { HttpService } from '../http/exchange.js';
import { stack } from '../http/exchange.js';
import { errorsToResponse } from '../layers/errors-to-response.js';
import { recordMetrics } from '../layers/record-metrics.js';
import { requestId } from '../layers/request-id.js';
import { forwardedFor } from '../layers/forwarded-for.js';
import { inboundTarget } from '../layers/inbound-target.js';
import { clientIdentity } from '../layers/client-identity.js';
import { deliverToApp } from './deliver-to-app.js';
import type { PeerPool } from '../outbound/peer-pool.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';

export interface InboundStackDeps {
  readonly appAddress: string;
  readonly appSessions: PeerPool;
  readonly agent: Agent;
  readonly reservedPorts: ReadonlySet<number>;
  readonly selfIdentity: () => string;
  readonly metrics: ProxyMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** The inbound HTTP pipeline, top (first to see a request) to bottom. */
export function inboundStack(d: InboundStackDeps): HttpService {
  return stack(
    [
      errorsToResponse(d.logger, 'inbound'),
      recordMetrics(d.metrics, 'inbound', d.clock),
      inboundTarget(d.reservedPorts),
      requestId(),
      forwardedFor(),
      clientIdentity(d.selfIdentity),
    ],
    deliverToApp(d.appAddress, d.appSessions, d.agent),
  );
}
