import type { HttpLayer, HttpService, ProxyRequest, ProxyResponse } from '../http/exchange.js';
import { errorResponse } from '../errors/error-response.js';
import { setField, type Headers } from '../http/headers.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { CompiledInboundPolicy } from '../policy/compiled-policy.js';
import { withoutParam, type AuthnResult, type JwtAuthenticator } from '../policy/jwt-authenticator.js';
import type { PolicyTelemetry } from '../policy/policy-telemetry.js';

/** Response header naming why a token was refused (`expired`, `bad-audience`...), like `wren-authz-reason`. */
export const JWT_REASON_HEADER = 'wren-jwt-reason';

/** A header value we may write: visible ASCII, spaces and tabs (no CR/LF from a claim can split the request). */
const SAFE_VALUE = /^[\t\x20-\x7e]*$/;

/** A claim as a header value: strings, numbers and booleans; lists of them joined with ','; anything else is not copied. */
function claimText(claims: Readonly<Record<string, unknown>>, name: string): string | null {
  // Own claims only: a claim named `constructor` must not find Object.prototype's member.
  let v: unknown = Object.hasOwn(claims, name) ? claims[name] : undefined;
  if (v === undefined && name.includes('.')) {
    v = claims;
    for (const k of name.split('.')) v = v !== null && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, k) ? (v as Record<string, unknown>)[k] : undefined;
  }
  const one = (x: unknown): string | null => (typeof x === 'string' ? x : typeof x === 'number' || typeof x === 'boolean' ? String(x) : null);
  const s = Array.isArray(v) ? (v.every((x) => one(x) !== null) ? v.map(one).join(',') : null) : one(v);
  return s !== null && SAFE_VALUE.test(s) ? s : null;
}

function applyOk(jwt: JwtAuthenticator, req: ProxyRequest, res: Extract<AuthnResult, { kind: 'ok' }>): void {
  const { rule } = res.rule;
  req.requestAuth = res.auth;
  for (const c of rule.outputClaimToHeaders) {
    const v = claimText(res.auth.claims, c.claim);
    if (v !== null) setField(req.headers, c.header, v);
  }
  if (rule.outputPayloadToHeader) setField(req.headers, rule.outputPayloadToHeader, res.found.token.split('.')[1]);
  if (rule.forwardOriginalToken) return;
  // Every location any rule reads the token from, not only the one it was found in: the
  // same token may also be in the query string (extract() refused differing ones), where
  // the app and its access logs would see it.
  for (const r of jwt.rules) {
    for (const h of r.headers) delete req.headers[h.name];
    if (req.path.includes('?')) for (const p of r.params) (req as { path: string }).path = withoutParam(req.path, p);
  }
}

async function authenticate(jwt: JwtAuthenticator, req: ProxyRequest): Promise<AuthnResult> {
  // Claim headers are the proxy's to write: a caller's own copies never reach the app,
  // as header fields or as trailer fields.
  for (const h of jwt.outputHeaders) delete req.headers[h];
  if (jwt.outputHeaders.length > 0) withoutClaimTrailers(req, jwt.outputHeaders);
  return jwt.authenticate(req.headers, req.path);
}

/**
 * Drops `names` from the request's trailer section when it is read (it arrives after the
 * body, past authentication). A caller's claim header sent as a trailer went on to the app,
 * which may merge trailers into its view of the request (RFC 9110 section 6.5.1 lets a
 * recipient discard trailer fields; the mesh fields are dropped for the same reason,
 * http/headers.ts dropMeshFields). Read through `this`, as the request's own is: a later
 * layer's `{ ...req }` copy keeps both. A function per request, on workloads whose
 * RequestAuthentication writes claim headers only.
 */
function withoutClaimTrailers(req: ProxyRequest, names: readonly string[]): void {
  const own = req.trailers;
  (req as { trailers: ProxyRequest['trailers'] }).trailers = function (this: ProxyRequest): Headers | undefined {
    const t = own.call(this);
    if (t === undefined) return t;
    let out: Headers | undefined;
    for (const k in t) {
      if (names.includes(k)) continue;
      out ??= {};
      setField(out, k, t[k]);
    }
    return out;
  };
}

/**
 * Inbound end-user authentication (RequestAuthentication), right before `authorize`: a
 * request without a token goes on with no request principal; one with a valid token goes
 * on with `requestAuth` set (read by `requestPrincipals` and `request.auth.*`), its
 * claims copied to headers and the token removed unless `forwardOriginalToken`; one with
 * an invalid token is refused with JWT_INVALID through the one error mapping: 401 (gRPC:
 * UNAUTHENTICATED) with `www-authenticate: Bearer error="invalid_token"` (RFC 6750
 * section 3.1, what Envoy's jwt_authn sends) and `wren-jwt-reason`. Workloads that no
 * RequestAuthentication selects pay one property read per request.
 */
export const requestAuthn =
  (policy: () => CompiledInboundPolicy, telemetry: PolicyTelemetry): HttpLayer =>
  (inner) =>
  (req) => {
    const { jwt } = policy();
    // No async wrapper on this path: a workload without RequestAuthentication pays nothing.
    return jwt === null ? inner(req) : authenticated(jwt, req, inner, telemetry);
  };

async function authenticated(jwt: JwtAuthenticator, req: ProxyRequest, inner: HttpService, telemetry: PolicyTelemetry): Promise<ProxyResponse> {
  // A token in the query stays there when refused or forwarded: the access log must know
  // where this workload's rules read tokens from to redact them.
  if (req.path.includes('?')) req.tokenParams = jwt.tokenParams;
  const res = await authenticate(jwt, req);
  if (res.kind === 'none') return inner(req);
  if (res.kind === 'ok') {
    telemetry.jwtOk(res.rule.rule.issuer);
    applyOk(jwt, req, res);
    return inner(req);
  }
  telemetry.jwtDenial(res.reason, res.issuer, { kind: 'http', principal: req.source.identity, port: req.targetPort ?? 0, method: req.method, path: req.path });
  req.body?.resume();
  const out = errorResponse(new ProxyError('JWT_INVALID', res.reason), req);
  out.headers['www-authenticate'] = 'Bearer error="invalid_token"';
  out.headers[JWT_REASON_HEADER] = res.reason;
  return out;
}
