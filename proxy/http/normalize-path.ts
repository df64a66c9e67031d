/**
 * The request-target as the inbound judges it and hands it to the app: Istio's default
 * path normalization (meshConfig.pathNormalization BASE, Envoy's `normalize_path`, which
 * canonicalizes the way Chromium's URL library does) applied to the request itself, so
 * authorization matches exactly the path the app will act on:
 *
 * - `\` becomes `/` (WHATWG URL Standard, "path state": a backslash is a separator in
 *   http(s) URLs, and Node apps route on `new URL(req.url, base).pathname`);
 * - a percent-encoded unreserved character is decoded (RFC 3986 section 6.2.2.2:
 *   `%61dmin` is `admin`, `%2e%2e` is `..`); other escapes stay, `%2F` included (Istio's
 *   BASE keeps escaped slashes);
 * - dot segments are removed (RFC 3986 section 5.2.4), after the decoding, so
 *   `/public/%2e%2e/admin` is `/admin`.
 *
 * The query is left as it is. A request-target that is none of the forms a server
 * accepts (RFC 9112 section 3.2) has no path to judge and is refused: null.
 */
export function normalizeRequestTarget(method: string, target: string): string | null {
  if (target.charCodeAt(0) !== 0x2f /* / */) {
    // asterisk-form, for a server-wide OPTIONS only (RFC 9112 section 3.2.4).
    if (target === '*') return method === 'OPTIONS' ? target : null;
    // absolute-form (section 3.2.2): a server must accept it; the app gets its path.
    const abs = /^https?:\/\/[^/?#]*/i.exec(target);
    if (abs === null) return null;
    const rest = target.slice(abs[0].length);
    return normalizeRequestTarget(method, rest === '' || rest.charCodeAt(0) === 0x3f /* ? */ ? `/${rest}` : rest);
  }
  // A fragment is never part of a request-target (RFC 9112 section 3.2.1); Envoy refuses one.
  if (target.includes('#')) return null;
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  // The common case costs three scans and no allocation.
  if (!path.includes('%') && !path.includes('\\') && !path.includes('/.')) return target;
  const normalized = removeDotSegments(decodeUnreserved(path.replace(/\\/g, '/')));
  if (normalized === path) return target;
  return q < 0 ? normalized : normalized + target.slice(q);
}

const HEX = /^[0-9a-fA-F]{2}$/;

/** RFC 3986 section 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function unreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

function decodeUnreserved(p: string): string {
  if (!p.includes('%')) return p;
  let out = '';
  let from = 0;
  for (let i = p.indexOf('%'); i >= 0; i = p.indexOf('%', i + 1)) {
    const hex = p.slice(i + 1, i + 3);
    if (!HEX.test(hex)) continue;
    const c = parseInt(hex, 16);
    if (!unreserved(c)) continue;
    out += p.slice(from, i) + String.fromCharCode(c);
    from = i + 3;
    i += 2;
  }
  return from === 0 ? p : out + p.slice(from);
}

/** RFC 3986 section 5.2.4 for an absolute path: `.` and `..` segments resolved, never above the root. */
function removeDotSegments(p: string): string {
  const segs = p.split('/');
  const out: string[] = [];
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      // `/a/..` and `/a/.` end in a directory: `/`, `/a/`.
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}
