import type { HttpLayer, ProxyResponse } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { ClusterSet } from '../outbound/cluster-set.js';
import { attachState } from './request-state.js';
import type { Admission } from '../resilience/concurrency-limits.js';
import { LeanBody, type BodyDone } from '../http/lean-body.js';

/**
 * Finds the routed service port's cluster and admits the request against its limits
 * (Envoy max_requests): over the limit the request fails at once with OVERFLOW (503,
 * `wren-proxy-error: overflow`, `wren_overflow_total`), never queued. Admission also
 * deposits into the retry budget. The slot is held until the response body ends.
 * An opaque TCP connection (origProto 'TCP') takes a connection slot instead (Envoy
 * max_connections), held until its tunnel (the response body) closes, and deposits too.
 */
export const admission =
  (clusters: () => ClusterSet): HttpLayer =>
  (inner) =>
  (req) => {
    const route = req.route;
    if (!route) return Promise.reject(new ProxyError('NO_ROUTE'));
    const cluster = clusters().get(route.service, route.port);
    if (!cluster) return Promise.reject(new ProxyError('NO_ENDPOINTS', `${route.service.name}.${route.service.namespace}:${route.port.port}`));
    // An opaque TCP connection is one of the cluster's connections for its whole life
    // (Envoy's TCP proxy: max_connections), not a request.
    const adm = cluster.admit(req.origProto === 'TCP' ? 'tunnel' : 'request');
    if (adm instanceof ProxyError) return Promise.reject(adm);
    attachState(req, cluster);
    let p: Promise<ProxyResponse>;
    try {
      p = inner(req);
    } catch (err) {
      adm.release();
      return Promise.reject(err);
    }
    // Not an async function: one promise (this `then`) per request; the slot is the handlers' context.
    const held = new Held(adm, req.origProto === 'TCP');
    return p.then(held.onResponse, held.onError);
  };

/** A request's admission slot until its response body ends (a tunnel's: until it closes). */
class Held implements BodyDone {
  constructor(
    private readonly adm: Admission,
    private readonly tunnel: boolean,
  ) {}

  readonly onError = (err: unknown): never => {
    this.adm.release();
    throw err;
  };

  readonly onResponse = (res: ProxyResponse): ProxyResponse => {
    const body = res.body as HeldBody | null;
    if (!body) this.adm.release();
    else {
      // A half-closed tunnel is still open: its slot goes at 'close' only.
      if (!this.tunnel && body instanceof LeanBody) {
        body.whenDone(this);
        return res;
      }
      // One shared listener per event (no closure per request), the slot on the body.
      body[SLOT] = this.adm;
      // on, not once: each event fires at most once and releaseSlot releases once (no once() wrapper per request).
      if (!this.tunnel) body.on('end', releaseSlot);
      body.on('close', releaseSlot);
    }
    return res;
  };

  /** LeanBody.whenDone: the response body ended or closed; once. */
  bodyDone(): void {
    this.adm.release();
  }
}

const SLOT = Symbol('wren.admission');
type HeldBody = NonNullable<ProxyResponse['body']> & { [SLOT]?: Admission };

function releaseSlot(this: HeldBody): void {
  const a = this[SLOT];
  if (!a) return;
  this[SLOT] = undefined;
  a.release();
}
