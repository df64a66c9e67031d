import type { HeaderModifier, PathModifier } from '../../contract/routes.js';
import { field, setField, type Headers } from '../http/headers.js';
import type { Redirect } from './port-routing.js';

/**
 * The Gateway API filters that rewrite a request or a response (HTTPRouteFilter), as pure
 * functions over the values the routing layer holds.
 */

/**
 * HTTPHeaderFilter on a header map, in place: `remove` first, then `set` (replaces), then
 * `add` (appends to an existing value, comma-joined as RFC 9110 section 5.3 allows), the
 * order Envoy applies its headers_to_remove / headers_to_add in. Two fields do not use the
 * list syntax: Set-Cookie stays one field line per cookie (RFC 9110 section 5.3, RFC 6265
 * section 3: never folded), and Cookie pairs join with "; " (RFC 6265 section 5.4).
 */
export function modifyHeaders(h: Headers, m: HeaderModifier): void {
  for (let i = 0; i < m.remove.length; i++) delete h[m.remove[i]];
  for (let i = 0; i < m.set.length; i++) setField(h, m.set[i].name.toLowerCase(), m.set[i].value);
  for (let i = 0; i < m.add.length; i++) {
    const name = m.add[i].name.toLowerCase();
    const v = m.add[i].value;
    // Own fields only, set as own fields: `constructor` and `__proto__` are names like any other.
    const old = field(h, name);
    if (old === undefined) setField(h, name, v);
    else if (name === 'set-cookie') h[name] = typeof old === 'string' ? [old, v] : [...old, v];
    else if (name === 'cookie') h[name] = `${typeof old === 'string' ? old : old.join('; ')}; ${v}`;
    else h[name] = `${typeof old === 'string' ? old : old.join(',')},${v}`;
  }
}

/**
 * HTTPPathModifier on a path (its query string kept). ReplacePrefixMatch replaces the
 * matched prefix, whole segments, a trailing '/' of either side ignored: the spec's table
 * (/foo/bar with prefix /foo and /xyz -> /xyz/bar; /foo with "" -> /; /foo/ with /xyz -> /xyz/).
 * `prefix` is the matched PathPrefix without its trailing '/'.
 */
export function modifyPath(path: string, m: PathModifier, prefix: string): string {
  const q = path.indexOf('?');
  const query = q < 0 ? '' : path.slice(q);
  if (m.type === 'ReplaceFullPath') return m.value + query;
  const bare = q < 0 ? path : path.slice(0, q);
  const rest = bare.slice(prefix.length);
  const v = m.value.replace(/\/+$/, '');
  return (rest === '' ? v || '/' : v + rest) + query;
}

/**
 * The Location of a RequestRedirect (HTTPRequestRedirectFilter). The port, when not set:
 * the scheme's well-known one if the filter sets a scheme, else the port the request was
 * addressed to (the "listener port": the Service port for a mesh route); it is left out
 * for http on 80 and https on 443, as the spec says implementations SHOULD.
 */
export function redirectLocation(r: Redirect, req: { readonly scheme: string; readonly authority: string; readonly path: string }, servicePort: number, prefix: string): string {
  const scheme = r.scheme ?? (req.scheme === 'https' ? 'https' : 'http');
  const host = r.hostname ?? hostOf(req.authority);
  const port = r.port ?? (r.scheme !== undefined ? (r.scheme === 'https' ? 443 : 80) : servicePort);
  const defaultPort = (scheme === 'http' && port === 80) || (scheme === 'https' && port === 443);
  const path = r.path ? modifyPath(req.path, r.path, prefix) : req.path;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}${defaultPort ? '' : `:${port}`}${path}`;
}

/** The host part of an authority (`web:8080` -> `web`, `[fd00::1]:80` -> `fd00::1`). */
export function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(1, end);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}
