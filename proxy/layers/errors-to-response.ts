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

const MAX_LOGGED = 256;

function pathOnly(p: string): string {
  const q = p.indexOf('?');
  return q < 0 ? p : p.slice(0, q);
}

function cap(s: string, max = MAX_LOGGED): string {
  return s.length <= max ? s : `${s.slice(0, max)}…(${s.length} chars)`;
}

function toResponse(logger: Logger, direction: string, req: ProxyRequest, err: unknown): ProxyResponse {
  const e = toProxyError(err, 'INTERNAL');
  // The path without its query (which may carry a credential, ?access_token=...) and
  // capped, as every client-controlled string in a log line: an attacker's failing
  // requests must not write their whole head to the log.
  if (!req.signal.aborted) logger.warn('request failed', { direction, code: e.code, authority: cap(req.authority), path: cap(pathOnly(req.path)), error: cap(e.message, 512) });
  return errorResponse(e, req);
}
