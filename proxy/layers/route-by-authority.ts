import type { HttpLayer } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { RouteTable } from '../outbound/route-table.js';

/**
 * Outbound routing (RouteTable.forRequest): an endpoint's own address (a pod IP) or an
 * upstream listener's service decides first; else the Host / :authority names the
 * service (`web`, `web.ns`, `web.ns.svc.cluster.local`, with or without a port), and the
 * fallback is the redirected connection's original destination (ClusterIP:port).
 */
export const routeByAuthority =
  (routes: () => RouteTable): HttpLayer =>
  (inner) =>
  (req) => {
    const route = routes().forRequest(req.authority, req.origDst);
    if (!route) throw new ProxyError('NO_ROUTE', req.origDst?.upstream ?? (req.authority || '(no authority)'));
    req.route = route;
    return inner(req);
  };
