import type { HttpLayer, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { toProxyError } from '../errors/proxy-error.js';
import type { Logger } from '../../common/logger.js';

/**
 * Outermost layer: any error below becomes the one synthetic response shape, logged once
 * with its code. Not an async function: a request that succeeds costs the one promise of
 * its `then` (an async function's `await` made two, and its frame), an error the handler.
 */
export const errorsToResponse =
  (logger: Logger, direction: string): HttpLayer =>
  (inner) =>
  (req) => {
    let p: Promise<ProxyResponse>;
    try {
      p = inner(req);
    } catch (err) {
      return Promise.resolve(toResponse(logger, direction, req, err));
    }
    return p.then(undefined, (err: unknown) => toResponse(logger, direction, req, err));
  };

function toResponse(logger: Logger, direction: string, req: ProxyRequest, err: unknown): ProxyResponse {
  const e = toProxyError(err, 'INTERNAL');
  if (!req.signal.aborted) logger.warn('request failed', { direction, code: e.code, authority: req.authority, path: req.path, error: e.message });
  return errorResponse(e, req);
}
