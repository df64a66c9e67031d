import type { HttpLayer } from '../http/exchange.js';
import { MESH } from '../http/headers.js';

/**
 * Tells the app who called: Envoy's x-forwarded-client-cert format
 * (`By=<our SPIFFE ID>;URI=<peer SPIFFE ID>`), set only from the verified peer
 * certificate; whatever the caller sent in that header is replaced.
 */
export const clientIdentity = (self: () => string): HttpLayer => {
  // The last value made, handed out again while our identity and the caller's repeat: one
  // string object per caller rather than a concatenation per request, which the HPACK
  // encoder (the field is indexed) would flatten and hash again for every request.
  let lastSelf = '';
  let lastPeer = '';
  let last = '';
  return (inner) => (req) => {
    const peer = req.source.identity;
    if (peer) {
      const me = self();
      if (peer !== lastPeer || me !== lastSelf) {
        lastPeer = peer;
        lastSelf = me;
        last = `By=${me};URI=${peer}`;
      }
      req.headers[MESH.clientCert] = last;
    } else if (req.headers[MESH.clientCert] !== undefined) delete req.headers[MESH.clientCert];
    return inner(req);
  };
};
