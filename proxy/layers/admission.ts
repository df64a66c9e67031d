import type { HttpLayer, ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import { attachState } from './request-state.js';

/**
 * Finds the routed service port's cluster and admits the request against its limits
 * (Envoy max_requests): over the limit the request fails at once with OVERFLOW (503,
 * `wren-proxy-error: overflow`, `wren_overflow_total`), never queued. Admission also
 * deposits into the retry budget. The slot is held until the response body ends.
 * An opaque TCP connection (origProto 'TCP') takes a connection slot instead (Envoy
 * max_connections), held until its tunnel (the response body) closes.
 */
export const admission =
  (clusters: () => ClusterSet): HttpLayer =>
  (inner) =>
  async (req) => {
    const route = req.route;
    if (!route) throw new ProxyError('NO_ROUTE');
    const cluster = clusters().get(route.service, route.port);
    if (!cluster) throw new ProxyError('NO_ENDPOINTS', `${route.service.name}.${route.service.namespace}:${route.port.port}`);
    // An opaque TCP connection is one of the cluster's connections for its whole life
    // (Envoy's TCP proxy: max_connections), not a request.
    const adm = req.origProto === 'TCP' ? cluster.admitConnection('connections') : cluster.admit('request');
    if (adm instanceof ProxyError) throw adm;
    attachState(req, cluster);
    let res: ProxyResponse;
    try {
      res = await inner(req);
    } catch (err) {
      adm.release();
      throw err;
    }
    if (!res.body) adm.release();
    else if (req.origProto === 'TCP') res.body.once('close', adm.release); // a half-closed tunnel is still open
    else {
      res.body.once('end', adm.release);
      res.body.once('close', adm.release);
    }
    return res;
  };
