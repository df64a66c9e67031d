import type { HttpLayer } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import type { PolicyTelemetry } from '../policy/policy-telemetry.js';

/**
 * The plaintext inbound stack's per-request mTLS check. The listener judges a plaintext
 * connection by its port's mode once, when it is accepted; a policy push that makes the
 * port STRICT must also stop the requests that come later on connections already open
 * (HTTP/1.1 keep-alive, h2c), as Linkerd re-authorizes every request. So each request
 * reads its port's mode from the current compiled policy (a Map lookup, as the authorize
 * layer reads its matchers) and, on a STRICT port, is refused through the one error table
 * (UNAUTHENTICATED: 403, gRPC 16, `wren-proxy-error: unauthenticated`) before it reaches
 * authorization, rate limits or the app. The refusal ends the connection
 * (ProxyResponse.closeConnection): every later request on it would be refused too, and
 * the client's retry on a new connection meets the listener's STRICT check.
 *
 * Runs after inboundTarget: the port is the connection's original destination (a
 * plaintext caller's mesh headers were dropped), the port the listener judged.
 */
export const strictMtls =
  (policy: () => CompiledInboundPolicy, telemetry: PolicyTelemetry): HttpLayer =>
  (inner) =>
  (req) => {
    const port = req.targetPort ?? 0;
    if (policy().modeFor(port) !== 'STRICT') return inner(req);
    telemetry.plaintextRefused('http', port, req.source.address, req.method, req.path);
    req.body?.resume();
    return Promise.resolve({ ...errorResponse(new ProxyError('UNAUTHENTICATED', `port ${port} requires mutual TLS (mTLS STRICT)`), req), closeConnection: true });
  };
