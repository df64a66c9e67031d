import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';

/**
 * Plaintext inbound requests (PERMISSIVE ports) come from callers outside the mesh:
 * every mesh header they sent is dropped, so the target port comes only from the
 * connection's original destination (a caller cannot reach a STRICT port through a
 * PERMISSIVE one) and the client-certificate header cannot be forged. The protocol the
 * caller spoke is recorded the way a peer sidecar would, so the app gets the same.
 */
export const plaintextRequest = (): HttpLayer => (inner) => (req) => {
  for (const h of Object.values(MESH)) delete req.headers[h];
  if (req.origProto === 'HTTP/1.1') req.headers[MESH.origProto] = 'HTTP/1.1';
  return inner(req);
};
