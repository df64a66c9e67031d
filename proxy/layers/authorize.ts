import type { HttpLayer } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import type { PolicyTelemetry } from '../policy/policy-telemetry.js';

/** Response header naming why a request was refused (`deny-policy NS/NAME`, `no-allow-policy-matched`). */
export const AUTHZ_REASON_HEADER = 'wren-authz-reason';

/**
 * Inbound authorization of HTTP and gRPC requests against the workload's current
 * policy (read per request, so a policy pushed by the control plane applies to the next
 * request on a connection already open). Runs after the target port is known.
 *
 * A denial is the FORBIDDEN proxy error through the one error mapping
 * (proxy/errors/error-response.ts): HTTP 403 with `wren-proxy-error: forbidden`, or for
 * gRPC callers a trailers-only response with grpc-status 7 (PERMISSION_DENIED); plus the
 * `wren-authz-reason` header. The app never sees a denied request.
 */
export const authorize =
  (policy: () => CompiledInboundPolicy, telemetry: PolicyTelemetry): HttpLayer =>
  (inner) =>
  (req) => {
    const { authorizer } = policy();
    if (!authorizer.active) return inner(req);
    const port = req.targetPort ?? 0;
    const d = authorizer.authorize({ principal: req.source.identity, port, http: req, auth: req.requestAuth ?? null });
    telemetry.decision(d, { kind: 'http', principal: req.source.identity, port, method: req.method, path: req.path });
    if (d.allow) return inner(req);
    req.body?.resume();
    const res = errorResponse(new ProxyError('FORBIDDEN', d.reason), req);
    res.headers[AUTHZ_REASON_HEADER] = d.reason;
    return Promise.resolve(res);
  };
