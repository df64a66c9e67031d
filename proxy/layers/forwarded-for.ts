import type { HttpLayer } from '../http/exchange.js';

/**
 * Appends the client address to `x-forwarded-for` (RFC 7239 predecessor, de-facto format).
 * The last address and list made are kept and handed out again while they repeat (a
 * connection's requests, a peer sidecar's): one string object rather than a new
 * concatenation per request, which the HPACK encoder's table look-up (x-forwarded-for is
 * indexed) and the serialiser's line cache would flatten and hash or compare again each time.
 */
export const forwardedFor = (): HttpLayer => {
  let lastSource = '';
  let lastAddr = '';
  let lastList = '';
  let lastListAddr = '';
  let lastJoined = '';
  return (inner) => (req) => {
    const a = req.source.address;
    if (a !== lastSource) {
      lastSource = a;
      lastAddr = a.startsWith('::ffff:') ? a.slice(7) : a;
    }
    const addr = lastAddr;
    if (addr) {
      const prev = req.headers['x-forwarded-for'];
      const list = Array.isArray(prev) ? prev.join(', ') : prev;
      if (!list) req.headers['x-forwarded-for'] = addr;
      else {
        if (list !== lastList || addr !== lastListAddr) {
          lastList = list;
          lastListAddr = addr;
          lastJoined = `${list}, ${addr}`;
        }
        req.headers['x-forwarded-for'] = lastJoined;
      }
    }
    return inner(req);
  };
};
