import type { HttpLayer } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { RouteTable } from '../outbound/route-table.js';

/**
 * Outbound routing: the Host / :authority names the service (`web`, `web.ns`,
 * `web.ns.svc.cluster.local`, with or without a port); a fallback is the original
 * destination of a redirected connection (ClusterIP:port).
 */
export const routeByAuthority =
  (routes: () => RouteTable): HttpLayer =>
  (inner) =>
  (req) => {
    const table = routes();
    let route = table.byAuthority(req.authority);
    if (!route && req.origDst) route = table.byAddress(req.origDst.address, req.origDst.port);
    if (!route) throw new ProxyError('NO_ROUTE', req.authority || '(no authority)');
    req.route = route;
    return inner(req);
  };
