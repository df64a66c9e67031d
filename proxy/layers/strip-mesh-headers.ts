import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';

/**
 * Apps must not be able to forge mesh headers: the caller-identity header in particular
 * is only ever set by the inbound sidecar after verifying the peer's certificate.
 */
export const stripMeshHeaders = (): HttpLayer => (inner) => (req) => {
  for (const h of Object.values(MESH)) delete req.headers[h];
  return inner(req);
};
