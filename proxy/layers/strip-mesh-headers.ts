import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';

const NAMES: readonly string[] = Object.values(MESH);

/**
 * Apps must not be able to forge mesh headers: the caller-identity header in particular
 * is only ever set by the inbound sidecar after verifying the peer's certificate, and
 * `wren-health-check` only by this sidecar's health checker (a request carrying it would
 * otherwise be kept out of the peer's request metrics).
 */
export const stripMeshHeaders = (): HttpLayer => (inner) => (req) => {
  const h = req.headers;
  for (const n of NAMES) if (h[n] !== undefined) delete h[n];
  return inner(req);
};
