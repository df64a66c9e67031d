import type { HttpLayer, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { AuthzRequest } from '../policy/authorizer.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import type { OpenTunnels } from '../policy/open-tunnels.js';
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
 *
 * An upgrade (WebSocket, extended CONNECT) the app switches has no next request to judge:
 * it is handed to `tunnels` with the request it was authorized with, and judged again by
 * every later policy (policy/open-tunnels.ts). Only upgrades: a plain request pays one
 * field check. `plaintext`: the plaintext stack's (its tunnels also end when their port
 * becomes STRICT).
 */
export const authorize =
  (policy: () => CompiledInboundPolicy, telemetry: PolicyTelemetry, tunnels?: OpenTunnels, plaintext = false): HttpLayer =>
  (inner) =>
  (req) => {
    const current = policy();
    const { authorizer } = current;
    if (authorizer.active) {
      const port = req.targetPort ?? 0;
      const d = authorizer.authorize({ principal: req.source.identity, port, http: req, auth: req.requestAuth ?? null });
      telemetry.decision(d, { kind: 'http', principal: req.source.identity, port, method: req.method, path: req.path });
      if (!d.allow) {
        req.body?.resume();
        return Promise.resolve(forbidden(d.reason, req));
      }
    }
    if (req.upgrade === undefined || tunnels === undefined) return inner(req);
    const authz = upgradeAuthz(req);
    return inner(req).then((res) => {
      const v = tunnels.switched(res, authz, current, plaintext, req.source.address);
      // Not closeConnection: on a peer's HTTP/2 session that would GOAWAY every caller on it; an HTTP/1.1 upgrade answered other than 101 ends its connection anyway.
      if (v === null) return res;
      return v.why === 'authorization' ? forbidden(v.decision.reason, req) : errorResponse(new ProxyError('UNAUTHENTICATED', `port ${authz.port} requires mutual TLS (mTLS STRICT)`), req);
    });
  };

/** 403 FORBIDDEN through the one error mapping, naming why. */
function forbidden(reason: string, req: ProxyRequest): ProxyResponse {
  const res = errorResponse(new ProxyError('FORBIDDEN', reason), req);
  res.headers[AUTHZ_REASON_HEADER] = reason;
  return res;
}

/**
 * What an upgrade was authorized with, as the authorizer reads it (the same fields as
 * above), kept without the request itself (its body, signal, route) while the tunnel is open.
 */
function upgradeAuthz(req: ProxyRequest): AuthzRequest {
  return {
    principal: req.source.identity,
    port: req.targetPort ?? 0,
    http: { method: req.method, path: req.path, headers: req.headers, authority: req.authority, upgrade: req.upgrade },
    auth: req.requestAuth ?? null,
  };
}
