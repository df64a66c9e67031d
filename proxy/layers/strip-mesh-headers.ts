import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';

const NAMES: ReadonlySet<string> = new Set(Object.values(MESH));

/**
 * Apps must not be able to forge mesh headers: the caller-identity header in particular
 * is only ever set by the inbound sidecar after verifying the peer's certificate, and
 * `wren-health-check` only by this sidecar's health checker (a request carrying it would
 * otherwise be kept out of the peer's request metrics).
 */
export const stripMeshHeaders = (): HttpLayer => (inner) => (req) => {
  const h = req.headers;
  // The request's own names against the set, not each mesh name against the request: a
  // request has a few fields, and a look-up of a name in a map of varying shape is a
  // megamorphic load (85 ns a request for the nine names, 27 ns this way: Node 24).
  for (const k in h) if (NAMES.has(k)) delete h[k];
  return inner(req);
};
