import type { HttpLayer } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';
import type { Counter } from '../metrics/prom.js';

/**
 * Inbound local rate limiting (RateLimitPolicy, docs/resilience.md): after authorization
 * (a caller the workload refuses takes no token) and before the app. A request over a
 * limit is the RATE_LIMITED error through the one error table: HTTP 429, or for gRPC
 * callers grpc-status 8 (RESOURCE_EXHAUSTED) in a trailers-only response; response flag
 * RL; plus `Retry-After` with the whole seconds until the refusing bucket has a token
 * (RFC 9110 section 10.2.3 / RFC 6585 section 4). Counted in
 * wren_rate_limited_total{scope}. No policy: one property read per request.
 */
export const rateLimit =
  (limiter: RateLimiter, refused: Counter<'scope'>): HttpLayer =>
  (inner) =>
  (req) => {
    if (!limiter.active) return inner(req);
    const v = limiter.check(req.targetPort ?? 0, req.source.identity, req.method, req.path);
    if (v === null) return inner(req);
    refused.inc({ scope: v.scope });
    req.body?.resume();
    const res = errorResponse(new ProxyError('RATE_LIMITED', `${v.scope} limit of ${v.policy}`), req);
    res.headers['retry-after'] = String(v.retryAfterSec);
    return Promise.resolve(res);
  };
