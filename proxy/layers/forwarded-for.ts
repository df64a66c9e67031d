import type { HttpLayer } from '../http/exchange.js';

/** Appends the client address to `x-forwarded-for` (RFC 7239 predecessor, de-facto format). */
export const forwardedFor = (): HttpLayer => (inner) => (req) => {
  const a = req.source.address;
  const addr = a.startsWith('::ffff:') ? a.slice(7) : a;
  if (addr) {
    const prev = req.headers['x-forwarded-for'];
    const list = Array.isArray(prev) ? prev.join(', ') : prev;
    req.headers['x-forwarded-for'] = list ? `${list}, ${addr}` : addr;
  }
  return inner(req);
};
