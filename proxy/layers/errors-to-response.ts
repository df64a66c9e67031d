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
      if (!req.signal.aborted) logger.warn('request failed', { direction, code: e.code, authority: req.authority, path: req.path, error: e.message });
      return errorResponse(e, req);
    }
  };
