/**
 * Typed proxy errors with stable codes. One table maps each code to the synthetic
 * HTTP status, the grpc-status a gRPC caller sees, the Envoy response flag (the
 * `response_flags` label of istio_requests_total, as Istio reports it: UO for a circuit
 * breaker overflow, UF for a connection failure, NR for no route...) and, derived from the
 * code, the `wren-proxy-error` header / `code` metric label, so every layer reports a
 * failure the same way.
 */
export const ERROR_TABLE = {
  // request could not be routed
  NO_ROUTE: { http: 404, grpc: 12 /* UNIMPLEMENTED */, flag: 'NR', msg: 'no service matches the request authority' },
  // HTTPRoute / GRPCRoute (docs/traffic-management.md): the service has routes on this port
  // and none of their rules matches: the spec's 404 ("When no rules matching a request have
  // been successfully attached ... a HTTP 404 status code MUST be returned"); Envoy's NR.
  ROUTE_NOT_MATCHED: { http: 404, grpc: 12 /* UNIMPLEMENTED */, flag: 'NR', msg: 'no route rule matches the request' },
  // The rule picked an invalid backendRef, a weight-0 one, or has none: HTTPRoute's 500,
  // GRPCRoute's UNAVAILABLE (the specs' backendRefs); Envoy's flag for a missing cluster, NC.
  ROUTE_BACKEND_INVALID: { http: 500, grpc: 14 /* UNAVAILABLE */, flag: 'NC', msg: 'the route rule has no valid backend for the request' },
  NO_ENDPOINTS: { http: 503, grpc: 14 /* UNAVAILABLE */, flag: 'UH', msg: 'the service has no ready endpoints' },
  // connecting to the peer
  CONNECT_REFUSED: { http: 502, grpc: 14, flag: 'UF', msg: 'connection refused by the endpoint' },
  CONNECT_TIMEOUT: { http: 504, grpc: 14, flag: 'UF', msg: 'connect timed out' },
  CONNECT_FAILED: { http: 502, grpc: 14, flag: 'UF', msg: 'could not connect to the endpoint' },
  TLS_HANDSHAKE: { http: 502, grpc: 14, flag: 'UF', msg: 'mTLS handshake with the peer failed' },
  PEER_IDENTITY: { http: 502, grpc: 14, flag: 'UF', msg: 'peer presented an unexpected identity' },
  // during the exchange
  UPSTREAM_RESET: { http: 502, grpc: 14, flag: 'UR', msg: 'the upstream reset the stream' },
  UPSTREAM_PROTOCOL: { http: 502, grpc: 13 /* INTERNAL */, flag: 'UPE', msg: 'the upstream sent an invalid response' },
  REQUEST_TIMEOUT: { http: 504, grpc: 4 /* DEADLINE_EXCEEDED */, flag: 'UT', msg: 'request timed out' },
  IDLE_TIMEOUT: { http: 504, grpc: 4, flag: 'SI', msg: 'stream was idle too long' },
  DEADLINE_EXCEEDED: { http: 504, grpc: 4, flag: 'UT', msg: 'gRPC deadline exceeded' },
  CLIENT_CANCELLED: { http: 499, grpc: 1 /* CANCELLED */, flag: 'DC', msg: 'the client cancelled the request' },
  // resilience
  OVERFLOW: { http: 503, grpc: 14, flag: 'UO', msg: 'circuit breaker overflow (a concurrency limit is reached)' },
  CIRCUIT_OPEN: { http: 503, grpc: 14, flag: 'UH', msg: 'every endpoint is behind an open circuit breaker' },
  RETRY_BUDGET: { http: 503, grpc: 14, flag: 'URX', msg: 'retry budget exhausted' },
  // Fault injection (TrafficPolicy `fault`, Envoy's fault filter: flag FI). The status is the
  // configured one (ProxyError's httpStatus / grpcStatus options); these are its defaults.
  FAULT_ABORT: { http: 503, grpc: 14, flag: 'FI', msg: 'request aborted by fault injection' },
  // Inbound local rate limit (RateLimitPolicy; Envoy's local_ratelimit: 429, flag RL; gRPC
  // RESOURCE_EXHAUSTED as Linkerd answers). The layer adds Retry-After (RFC 9110 section 10.2.3).
  RATE_LIMITED: { http: 429, grpc: 8 /* RESOURCE_EXHAUSTED */, flag: 'RL', msg: 'rate limit exceeded' },
  // bad input and policy
  BAD_REQUEST: { http: 400, grpc: 3 /* INVALID_ARGUMENT */, flag: 'DPE', msg: 'malformed request' },
  HEADERS_TIMEOUT: { http: 408, grpc: 4 /* DEADLINE_EXCEEDED */, flag: 'DPE', msg: 'request headers did not arrive in time' },
  HEADERS_TOO_LARGE: { http: 431, grpc: 8 /* RESOURCE_EXHAUSTED */, flag: 'DPE', msg: 'request headers exceed the limit' },
  // RFC 9112 section 6.1: a transfer coding the proxy does not implement (anything but chunked).
  NOT_IMPLEMENTED: { http: 501, grpc: 12 /* UNIMPLEMENTED */, flag: 'DPE', msg: 'the request uses a transfer coding the proxy does not implement' },
  // CONNECT from the app (forward-proxy use) is not carried: Envoy likewise refuses a CONNECT
  // it has no CONNECT route for (no route: NR). 403, not 405: a 405 must list the allowed
  // methods (Allow, RFC 9110 section 15.5.6), which the proxy does not know.
  CONNECT_NOT_SUPPORTED: { http: 403, grpc: 7 /* PERMISSION_DENIED */, flag: 'NR', msg: 'the mesh does not carry CONNECT tunnels from the app' },
  // Egress control, REGISTRY_ONLY (proxy/egress): no ExternalService declares the host and
  // port. 502 as Istio's BlackHoleCluster answers; flag NR ("no route configured"): the mesh
  // has no route that lets the request out. Not UH (what Envoy reports for the empty
  // BlackHoleCluster), which Wren keeps for a mesh service without ready endpoints so
  // that refusals by policy are not counted as outages.
  EGRESS_REFUSED: { http: 502, grpc: 14 /* UNAVAILABLE, Envoy's mapping of 502 */, flag: 'NR', msg: 'the destination is outside the mesh and no ExternalService allows it (egress mode REGISTRY_ONLY)' },
  FORBIDDEN: { http: 403, grpc: 7 /* PERMISSION_DENIED */, flag: 'RBAC', msg: 'denied by authorization policy' },
  // Plaintext on a port whose mTLS mode is STRICT (layers/strict-mtls.ts: a request on a
  // connection accepted while the port was PERMISSIVE). 403, not 401: a 401 must carry a
  // WWW-Authenticate challenge (RFC 9110 section 15.5.2) and no HTTP scheme asks for a
  // client certificate; Linkerd answers an unauthorized request 403 as well. gRPC callers
  // get UNAUTHENTICATED, what the status means there ("no valid authentication credentials").
  UNAUTHENTICATED: { http: 403, grpc: 16 /* UNAUTHENTICATED */, flag: 'RBAC', msg: 'a client certificate is required' },
  // RequestAuthentication: a token that fails verification. Envoy's jwt_authn answers 401
  // with `www-authenticate: Bearer ... error="invalid_token"` (RFC 6750 section 3.1) and
  // sets no response flag (its details say jwt_authn_access_denied), hence '-'.
  JWT_INVALID: { http: 401, grpc: 16 /* UNAUTHENTICATED */, flag: '-', msg: 'JWT verification failed' },
  DRAINING: { http: 503, grpc: 14, flag: 'LR', msg: 'the proxy is shutting down' },
  INTERNAL: { http: 500, grpc: 13, flag: 'LR', msg: 'internal proxy error' },
} as const;

export type ErrorCode = keyof typeof ERROR_TABLE;

export class ProxyError extends Error {
  readonly httpStatus: number;
  readonly grpcStatus: number;
  /**
   * UPSTREAM_RESET by the upstream's own RST_STREAM: its HTTP/2 error code (RFC 9113
   * section 7), carried to the caller's sidecar (across the mesh multiplexer as a RESET
   * code, proxy/mux/frame.ts) so the caller gets what the code means (grpcStatusOfReset,
   * h2ResetCodeFor) rather than a lost upstream. Undefined for a lost connection.
   */
  readonly resetCode: number | undefined;
  /**
   * `httpStatus` / `grpcStatus` replace the table's statuses for a code whose status is
   * configured (FAULT_ABORT: the TrafficPolicy's abort status); every other code uses the
   * table's, except an upstream's reset with a `resetCode`, whose gRPC status is the one
   * gRPC gives that code (grpcStatusOfReset).
   */
  constructor(
    readonly code: ErrorCode,
    detail?: string,
    options?: { cause?: unknown; httpStatus?: number; grpcStatus?: number; resetCode?: number },
  ) {
    super(detail ? `${ERROR_TABLE[code].msg}: ${detail}` : ERROR_TABLE[code].msg, options);
    this.name = 'ProxyError';
    this.resetCode = options?.resetCode;
    this.httpStatus = options?.httpStatus ?? ERROR_TABLE[code].http;
    this.grpcStatus = options?.grpcStatus ?? (this.resetCode !== undefined && code === 'UPSTREAM_RESET' ? grpcStatusOfReset(this.resetCode) : ERROR_TABLE[code].grpc);
  }

  /** Header and metric label value: lower-case, dash-separated (`connect-refused`). */
  get label(): string {
    return this.code.toLowerCase().replace(/_/g, '-');
  }
}

/**
 * The gRPC status of a call its server reset with `code` (an HTTP/2 error code), as gRPC's
 * PROTOCOL-HTTP2.md ("Errors") maps RST_STREAM for a client: REFUSED_STREAM is UNAVAILABLE
 * (nothing was processed), CANCEL is CANCELLED, ENHANCE_YOUR_CALM RESOURCE_EXHAUSTED,
 * INADEQUATE_SECURITY PERMISSION_DENIED, every other code (NO_ERROR before the end
 * included) INTERNAL. A caller behind the mesh sees what it would have seen calling the
 * app directly, as Linkerd passes an upstream's reset code on (linkerd2-proxy#281).
 */
export function grpcStatusOfReset(code: number): number {
  switch (code) {
    case 0x7: return 14; // REFUSED_STREAM -> UNAVAILABLE
    case 0x8: return 1; // CANCEL -> CANCELLED
    case 0xb: return 8; // ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED
    case 0xc: return 7; // INADEQUATE_SECURITY -> PERMISSION_DENIED
    default: return 13; // INTERNAL
  }
}

/**
 * The RST_STREAM code that ends a caller's (non-gRPC) HTTP/2 stream whose response failed
 * after its head with `e`: the upstream's own code where it means the same to the caller
 * (CANCEL, ENHANCE_YOUR_CALM, INADEQUATE_SECURITY: passed on, as Linkerd does), else
 * INTERNAL_ERROR. Not NO_ERROR (a client could take the cut response for complete,
 * envoyproxy/envoy#36200) nor REFUSED_STREAM (the response had started: the request was
 * processed, and the caller must not take it as safe to retry, RFC 9113 section 8.7).
 */
export function h2ResetCodeFor(e: ProxyError): number {
  const c = e.resetCode;
  return c === 0x8 || c === 0xb || c === 0xc ? c : 0x2;
}

/** The label of CLIENT_CANCELLED: a response the client left before it was sent (metrics' response_code 0, the access log's DC). */
export const CLIENT_CANCELLED_LABEL = 'client-cancelled';

const FLAG_BY_LABEL: ReadonlyMap<string, string> = new Map(
  Object.entries(ERROR_TABLE).map(([code, e]) => [code.toLowerCase().replace(/_/g, '-'), e.flag]),
);

/** The Envoy response flag of a `wren-proxy-error` label ('-' for none, as Envoy writes it). */
export function responseFlag(label: string | undefined): string {
  return label === undefined ? '-' : (FLAG_BY_LABEL.get(label) ?? '-');
}

const X509_VERIFY_CODES = /^(UNABLE_TO_|INVALID_CA$|INVALID_PURPOSE$|HOSTNAME_MISMATCH$|PATH_LENGTH_EXCEEDED$)/;

/** Maps a Node socket/TLS/http2 error to a ProxyError (already-typed errors pass through). */
export function toProxyError(err: unknown, fallback: ErrorCode = 'UPSTREAM_RESET'): ProxyError {
  if (err instanceof ProxyError) return err;
  const e = err as NodeJS.ErrnoException & { code?: string };
  const detail = e?.message;
  switch (e?.code) {
    case 'ECONNREFUSED':
      return new ProxyError('CONNECT_REFUSED', detail, { cause: err });
    case 'ETIMEDOUT':
      return new ProxyError('CONNECT_TIMEOUT', detail, { cause: err });
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new ProxyError('CONNECT_FAILED', detail, { cause: err });
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ERR_HTTP2_STREAM_ERROR':
    case 'ERR_HTTP2_SESSION_ERROR':
    case 'ERR_HTTP2_GOAWAY_SESSION':
    case 'ERR_STREAM_PREMATURE_CLOSE':
      // `resetCode`: the upstream's RST_STREAM code, where the error's maker knew it (a
      // mesh multiplexer RESET that carries one, node:http2's stream error: http/h2-call.ts).
      return new ProxyError('UPSTREAM_RESET', detail, { cause: err, resetCode: resetCodeOf(e) });
    case 'ERR_HTTP2_ERROR':
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_HEADER_TOKEN':
      return new ProxyError('UPSTREAM_PROTOCOL', detail, { cause: err });
    default:
      // OpenSSL's X509 verify errors as node names them (UNABLE_TO_VERIFY_LEAF_SIGNATURE,
      // HOSTNAME_MISMATCH...): a server certificate that does not verify (TLS origination).
      if (typeof e?.code === 'string' && (e.code.startsWith('ERR_TLS') || e.code.startsWith('ERR_SSL') || e.code.includes('CERT') || X509_VERIFY_CODES.test(e.code)))
        return new ProxyError('TLS_HANDSHAKE', detail, { cause: err });
      return new ProxyError(fallback, detail, { cause: err });
  }
}

/**
 * The upstream's RST_STREAM code an error carries (ProxyError.resetCode, or the `resetCode`
 * of a raw error whose maker knew it: a mesh multiplexer RESET, node:http2's stream error).
 */
export function resetCodeOf(err: unknown): number | undefined {
  const c = (err as { resetCode?: unknown } | null | undefined)?.resetCode;
  return typeof c === 'number' ? c : undefined;
}

export const PROXY_ERROR_HEADER = 'wren-proxy-error';
