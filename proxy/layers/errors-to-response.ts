import type { HttpLayer } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { toProxyError } from '../errors/proxy-error.js';
import type { Logger } from '../../common/logger.js';

/** Outermost layer: any error below becomes the one synthetic response shape, logged once with its code. */
export const errorsToResponse =
  (logger: Logger, direction: string): HttpLayer =>
  (inner) =>
  async (req) => {
    try {
      return await inner(req);
    } catch (err) {
      const e = toProxyError(err, 'INTERNAL');
      // The path without its query (which may carry a credential, ?access_token=...) and
      // capped, as every client-controlled string in a log line: an attacker's failing
      // requests must not write their whole head to the log.
      if (!req.signal.aborted) logger.warn('request failed', { direction, code: e.code, authority: cap(req.authority), path: cap(pathOnly(req.path)), error: cap(e.message, 512) });
      return errorResponse(e, req);
    }
  };

const MAX_LOGGED = 256;

function pathOnly(p: string): string {
  const q = p.indexOf('?');
  return q < 0 ? p : p.slice(0, q);
}

function cap(s: string, max = MAX_LOGGED): string {
  return s.length <= max ? s : `${s.slice(0, max)}…(${s.length} chars)`;
}
