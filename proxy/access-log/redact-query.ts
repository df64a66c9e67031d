/**
 * Query parameters whose values are credentials: `access_token` (RFC 6750 section 2.3,
 * the location Envoy's jwt_authn and Wren's RequestAuthentication read by default),
 * the OAuth 2.0 token and secret parameters, and the signed-URL keys the OpenTelemetry
 * HTTP conventions say to redact in `url.full` (AWSAccessKeyId, Signature, sig,
 * X-Goog-Signature). Names compare as the app's URL decoder reads them.
 */
const SECRET_PARAMS: ReadonlySet<string> = new Set([
  'access_token', 'id_token', 'refresh_token', 'client_secret',
  'AWSAccessKeyId', 'Signature', 'sig', 'X-Goog-Signature',
]);

const REDACTED = 'REDACTED';
const SEPARATORS = /([&;])/;

function decodedName(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The request path as it may be written to an access log line or a span: the value of
 * every credential parameter replaced by `REDACTED` (OpenTelemetry's placeholder), the
 * rest untouched, and so is every name in `alsoSecret` (the inbound's RequestAuthentication
 * `fromParams`). A path without a query string is returned as is (no allocation).
 */
export function redactQuery(path: string, alsoSecret?: ReadonlySet<string>): string {
  const q = path.indexOf('?');
  if (q < 0) return path;
  // Parameters separated by `&`, or by `;` as the W3C's HTML 4 note suggested and some
  // servers still read (Tomcat and Jetty's older parsers, Python's cgi before 3.10): a
  // `?a=1;access_token=x` carries a token to such an app. The separators are kept
  // (even indices are parameters).
  const parts = path.slice(q + 1).split(SEPARATORS);
  let changed = false;
  for (let i = 0; i < parts.length; i += 2) {
    const p = parts[i];
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    const name = decodedName(p.slice(0, eq));
    if (!SECRET_PARAMS.has(name) && alsoSecret?.has(name) !== true) continue;
    parts[i] = `${p.slice(0, eq + 1)}${REDACTED}`;
    changed = true;
  }
  return changed ? `${path.slice(0, q + 1)}${parts.join('')}` : path;
}

/**
 * An authority without its userinfo (`user:password@`, which RFC 9110 section 4.2.4
 * deprecates and RFC 9113 section 8.3.1 forbids in :authority, but a client may still
 * send): `REDACTED:REDACTED@host`, OpenTelemetry's form for url.full.
 */
export function redactAuthority(authority: string): string {
  const at = authority.lastIndexOf('@');
  return at < 0 ? authority : `${REDACTED}:${REDACTED}${authority.slice(at)}`;
}
