import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';

/**
 * Tells the app who called: Envoy's x-forwarded-client-cert format
 * (`By=<our SPIFFE ID>;URI=<peer SPIFFE ID>`), set only from the verified peer
 * certificate; whatever the caller sent in that header is replaced.
 */
export const clientIdentity =
  (self: () => string): HttpLayer =>
  (inner) =>
  (req) => {
    delete req.headers[MESH.clientCert];
    if (req.source.identity) req.headers[MESH.clientCert] = `By=${self()};URI=${req.source.identity}`;
    return inner(req);
  };
