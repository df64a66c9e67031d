import type { HttpService } from '../http/exchange.js';
import { stack } from '../http/exchange.js';
import { routeByAuthority } from '../layers/route-by-authority.js';
import { admission } from '../layers/admission.js';
import { retry } from '../layers/retry.js';
import { pickEndpoint } from '../layers/pick-endpoint.js';
import { openTunnel } from './open-tunnel.js';
import { outboundConnector } from './outbound-connector.js';
import type { OutboundStackDeps } from './stack.js';
import { tcpAccessLog } from '../access-log/tcp-access-log.js';

/**
 * The outbound opaque TCP pipeline: a connection (tcp-request.ts) takes the HTTP stack's
 * route → admission → retry → pick layers, so routing (pod IPs pinned), the cluster's
 * max_connections, retries of connect failures (with the retry budget), balancing,
 * outlier ejection, breakers and the connect timeout are the same code for both. Not
 * here: the HTTP-only layers (metrics per request: TCP has istio_tcp_*; header rewriting;
 * request and idle timeouts, which would cut a long-lived connection). The listener maps
 * a failure to its code (wren_proxy_errors_total) and closes the connection.
 */
export function outboundTcpStack(d: Pick<OutboundStackDeps, 'routes' | 'clusters' | 'peers' | 'clock' | 'logger' | 'accessLog'> & Partial<Pick<OutboundStackDeps, 'metrics'>>): HttpService {
  const svc = stack(
    [...(d.accessLog ? [tcpAccessLog(d.accessLog)] : []), routeByAuthority(d.routes), admission(d.clusters), retry(d.clock, d.logger), pickEndpoint({ clusters: d.clusters, clock: d.clock, connectorFor: outboundConnector(d.peers, d.clock) })],
    openTunnel(d.metrics?.local),
  );
  // Layers may throw synchronously (routing does); the listener gets every failure as a rejection.
  return async (req) => svc(req);
}
