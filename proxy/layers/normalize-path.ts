import type { HttpLayer } from '../http/exchange.js';
import { ProxyError } from '../errors/proxy-error.js';
import { normalizeRequestTarget } from '../http/normalize-path.js';

/**
 * Inbound, above authorization: the request's path normalized the way Istio does by
 * default (proxy/http/normalize-path.ts), and the request sent on with that path, so the
 * policy judges the path the app acts on (`/public/%2e%2e/admin` is `/admin` for both).
 * A request-target in none of RFC 9112's forms gets 400.
 */
export const normalizePath = (): HttpLayer => (inner) => (req) => {
  // A CONNECT's target is an authority, not a path (RFC 9110 section 9.3.6); an extended
  // CONNECT (RFC 8441, WebSocket over HTTP/2) has a :path and is normalized like any request.
  if (req.method === 'CONNECT' && req.path.charCodeAt(0) !== 0x2f) return inner(req);
  const p = normalizeRequestTarget(req.method, req.path);
  if (p === null) throw new ProxyError('BAD_REQUEST', 'the request-target is none of RFC 9112 section 3.2 forms');
  if (p !== req.path) req.path = p;
  return inner(req);
};
