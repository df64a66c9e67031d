import { compileRouteRegex } from './route-regex.js';
import type {
  BackendTarget, GrpcMethodMatch, HeaderModifier, PathMatch, PathModifier, RouteBackend, RouteFilter, RouteMatch, RouteRule, ServiceRoute, ValueMatch,
} from './routes.js';
import { arr, fail, literal, map, num, obj, optional, str, type Parser } from '../common/schema.js';

/**
 * Strict validation of the compiled route model (contract/routes.ts), wherever it comes
 * from: `ServiceResource.routes_json` (serviceFromWire) or a service's `routes` in the
 * proxy's static config (parseService). The control plane has validated the Gateway API
 * objects already; this is the proxy's own guard, so a bad push is NACKed with the field
 * path instead of failing on the data path.
 *
 * Bounds are the Gateway API v1.6.1 CRD's (`maxItems`, `maxLength`) where it has them
 * (16 rules, 64 matches, 16 headers / query params / filters / backendRefs, 1024-char
 * paths); regexes must compile, are anchored (full match, as Envoy's safe_regex and
 * Istio's) and may not use lookaround or backreferences: those are outside RE2, the
 * syntax the spec points at, and they are what makes a regex run in exponential time.
 *
 * For hand-written static config the parser fills the defaults the control plane would:
 * `matches` absent or empty = one match-all (HTTPRoute: PathPrefix "/"), empty lists,
 * weight 1, timeouts 0 (not set).
 */
const MAX_ROUTES = 64;
const MAX_RULES = 16;
const MAX_MATCHES = 64;
const MAX_ITEMS = 16;
const MAX_VALUE = 4096;
const MAX_PATH = 1024;
const MAX_REGEX = 1024;

const bounded =
  <T>(p: Parser<readonly T[]>, max: number): Parser<readonly T[]> =>
  (raw, path) =>
    Array.isArray(raw) && raw.length > max ? fail(path, `at most ${max} items, got ${raw.length}`) : p(raw, path);

const list = <T>(item: Parser<T>, max: number): Parser<readonly T[]> => bounded(arr(item, { default: [] }), max);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** RFC 9110 field value: visible characters, spaces and tabs; no CR/LF (header injection). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/**
 * The Gateway API's PreciseHostname (a redirect's or rewrite's `hostname`): a lower-case
 * RFC 1123 DNS subdomain of at most 253 characters, no wildcard. It goes into the Location
 * header or the Host / `:authority` sent upstream as it is, so nothing else may get in: a
 * wildcard `*.` is no host to send a request or a client to.
 */
const PRECISE_HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const preciseHostname: Parser<string> = (raw, path) => {
  const v = str({ pattern: PRECISE_HOSTNAME })(raw, path);
  return v.length > 253 ? fail(path, 'at most 253 characters') : v;
};
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
/** Lookbehind/lookahead and backreferences (numbered and named): not RE2, and the road to catastrophic backtracking. */
const NOT_RE2 = /\(\?<?[=!]|\\[1-9]|\\k</;

/** A regex that must compile as a full-match JS RegExp; returns the source unchanged. */
export const regexSource: Parser<string> = (raw, path) => {
  const s = str()(raw, path);
  if (s.length > MAX_REGEX) return fail(path, `regular expression longer than ${MAX_REGEX} characters`);
  if (NOT_RE2.test(s)) return fail(path, 'lookaround and backreferences are not supported (RE2 syntax)');
  try {
    anchored(s);
  } catch (e) {
    return fail(path, `invalid regular expression (RE2 syntax): ${(e as Error).message}`);
  }
  return s;
};

/** The one way a route regex is compiled (RE2 syntax, full match, linear-capable): the validator and the matcher agree. */
export const anchored = compileRouteRegex;

const headerName: Parser<string> = map(str({ pattern: HEADER_NAME }), (v) => v.toLowerCase());
/**
 * A header value, refused without quoting it: a filter's value or a match's may be a
 * credential (`Authorization: Bearer ...`, an API key), and a refusal is logged, listed on
 * the control plane's /debug/rejected and printed by `wren check`. The refusal names the
 * first character not allowed and where it is (a YAML block scalar's trailing newline is
 * the usual one), which is all a fix needs.
 */
const headerValue: Parser<string> = (raw, path) => {
  const v = str()(raw, path);
  if (!HEADER_VALUE.test(v)) {
    const at = [...v].findIndex((c) => !HEADER_VALUE.test(c));
    const c = [...v][at];
    const code = `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    return fail(path, `a header value takes visible characters, spaces and tabs (RFC 9110 section 5.5), got ${code} at character ${at + 1} of ${[...v].length} (the value is not shown: it may be a credential)`);
  }
  return v.length > MAX_VALUE ? fail(path, `longer than ${MAX_VALUE} characters`) : v;
};
/**
 * An absolute path a request-target can carry as written: RFC 9112 section 3.2.1
 * origin-form's absolute-path, segments of RFC 3986 section 3.3 pchar = unreserved /
 * pct-encoded / sub-delims / ":" / "@". A path match compares with such a path (the Gateway
 * API CRD's CEL rule checks the same characters there); a URLRewrite puts its path in the
 * request line and a RequestRedirect in the Location header (a URI-reference, RFC 9110
 * section 10.2.2), both as they are. The CRD bounds those only by length, so a control
 * character, DEL, a space or non-ASCII text got in and failed every request the rule took
 * (400 for the rewritten request line, blaming the client; 502 for the redirect's header) or
 * went upstream as raw bytes (`/café`); here it is refused, naming the field and the
 * character, and the control plane sets the route Accepted=False UnsupportedValue
 * (control-plane/translate/route-compile.ts, one validator). Non-ASCII text is written
 * percent-encoded (UTF-8): `/caf%C3%A9`.
 */
const ABS_PATH = /^\/(?:[-A-Za-z0-9._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;
const PCHAR = /^[-A-Za-z0-9._~!$&'()*+,;=:@/]$/;

/** Why `v` is not an ABS_PATH: its first character a request-target cannot carry, as a code point (never the raw character). */
function pathProblem(v: string): string {
  if (!v.startsWith('/')) return "expected an absolute path starting with '/'";
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c === '%' && /^%[0-9A-Fa-f]{2}/.test(v.slice(i, i + 3))) {
      i += 2;
      continue;
    }
    if (PCHAR.test(c)) continue;
    const cp = v.codePointAt(i)!;
    const shown = cp > 0x20 && cp < 0x7f ? `'${c}'` : `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    return `character ${i} (${shown}) cannot be carried by a request path: RFC 3986 path characters (unreserved, sub-delims, ':', '@', '/') and %HH escapes only`;
  }
  return 'not an absolute path';
}

const absPath: Parser<string> = (raw, path) => {
  const v = str()(raw, path);
  if (v.length > MAX_PATH) return fail(path, `longer than ${MAX_PATH} characters`);
  return ABS_PATH.test(v) ? v : fail(path, pathProblem(v));
};

const parsePathMatch: Parser<PathMatch> = (raw, path) => {
  const m = obj({ type: literal(['Exact', 'PathPrefix', 'RegularExpression'] as const, 'PathPrefix'), value: str({ default: '/' }) })(raw, path);
  const value = m.type === 'RegularExpression' ? regexSource(m.value, `${path}.value`) : absPath(m.value, `${path}.value`);
  return Object.freeze({ type: m.type, value });
};

const valueMatch = (name: Parser<string>): Parser<ValueMatch> => (raw, path) => {
  const m = obj({ type: literal(['Exact', 'RegularExpression'] as const, 'Exact'), name, value: str() })(raw, path);
  const value = m.type === 'RegularExpression' ? regexSource(m.value, `${path}.value`) : headerValue(m.value, `${path}.value`);
  return Object.freeze({ ...m, value });
};

const GRPC_NAME = /^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$/;
const parseGrpc: Parser<GrpcMethodMatch> = (raw, path) => {
  const m = obj({ type: literal(['Exact', 'RegularExpression'] as const, 'Exact'), service: str({ default: '' }), method: str({ default: '' }) })(raw, path);
  if (m.service === '' && m.method === '') return fail(path, 'one of service or method must be set');
  for (const k of ['service', 'method'] as const) {
    const v = m[k];
    if (v === '') continue;
    if (m.type === 'RegularExpression') regexSource(v, `${path}.${k}`);
    else if (!GRPC_NAME.test(v) || (k === 'method' && v.includes('.'))) fail(`${path}.${k}`, `not a valid gRPC ${k} name: ${JSON.stringify(v)}`);
  }
  return m;
};

/**
 * Headers a filter may not touch: the message framing and hop-by-hop fields (changing them
 * would desynchronise the proxy and its peer: request smuggling), Host (URLRewrite's
 * `hostname` is for that, as Envoy refuses Host in headers_to_add) and the mesh's own
 * headers, which the sidecars set and check.
 */
const UNMODIFIABLE = /^(host|content-length|transfer-encoding|connection|keep-alive|proxy-connection|upgrade|te|trailer|http2-settings|x-forwarded-client-cert|wren-.*)$/;
const modifiable: Parser<string> = map(headerName, (v, path) => (UNMODIFIABLE.test(v) ? fail(path, `${v} cannot be modified by a filter (framing, hop-by-hop, Host or mesh header)`) : v));
const headerValues = list(obj({ name: modifiable, value: headerValue }), MAX_ITEMS);
const parseHeaderModifier: Parser<HeaderModifier> = obj({ set: headerValues, add: headerValues, remove: list(modifiable, MAX_ITEMS) });
/**
 * ReplacePrefixMatch may be "": the spec's own table (HTTPPathModifier) rewrites /foo/bar
 * with prefix /foo and "" to /bar, and /foo to / (modifyPath in proxy/routing/filters.ts).
 */
const parsePathModifier: Parser<PathModifier> = (raw, path) => {
  const o = obj({ type: literal(['ReplaceFullPath', 'ReplacePrefixMatch'] as const), value: str() })(raw, path);
  const value = o.type === 'ReplacePrefixMatch' && o.value === '' ? '' : absPath(o.value, `${path}.value`);
  return Object.freeze({ type: o.type, value });
};
const parseTarget = { name: str({ pattern: DNS_LABEL }), namespace: str({ pattern: DNS_LABEL }), port: num({ int: true, min: 1, max: 65535 }) };
const parseBackendTarget: Parser<BackendTarget> = obj(parseTarget);

const FILTER_FIELDS = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
} as const;
type FilterType = keyof typeof FILTER_FIELDS;
/** GRPCRoute's filter types (GRPCRouteFilter): no redirect, no rewrite. */
const GRPC_FILTERS: readonly FilterType[] = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'];

const filterPayload: { readonly [K in FilterType]: Parser<unknown> } = {
  RequestHeaderModifier: parseHeaderModifier,
  ResponseHeaderModifier: parseHeaderModifier,
  RequestRedirect: obj({
    scheme: optional(literal(['http', 'https'] as const)),
    hostname: optional(preciseHostname),
    port: optional(num({ int: true, min: 1, max: 65535 })),
    path: optional(parsePathModifier),
    statusCode: map(num({ int: true, default: 302 }), (n, p) => ([301, 302, 303, 307, 308].includes(n) ? n : fail(p, `expected one of 301, 302, 303, 307, 308, got ${n}`))),
  }),
  URLRewrite: obj({ hostname: optional(preciseHostname), path: optional(parsePathModifier) }),
  RequestMirror: obj({ backend: parseBackendTarget, percent: num({ min: 0, max: 100, default: 100 }) }),
};

const parseFilter =
  (kind: ServiceRoute['kind']): Parser<RouteFilter> =>
  (raw, path) => {
    const r = raw as Record<string, unknown> | null;
    const type = literal(Object.keys(FILTER_FIELDS) as FilterType[])(r?.['type'], `${path}.type`);
    if (kind === 'GRPCRoute' && !GRPC_FILTERS.includes(type)) return fail(`${path}.type`, `${type} is not a GRPCRoute filter (expected one of ${GRPC_FILTERS.join(', ')})`);
    const field = FILTER_FIELDS[type];
    for (const k of Object.keys(r ?? {})) if (k !== 'type' && k !== field) fail(`${path}.${k}`, `unknown field for a ${type} filter (expected ${field})`);
    if (r?.[field] === undefined) return fail(`${path}.${field}`, `is required for a ${type} filter`);
    return Object.freeze({ type, [field]: filterPayload[type](r[field], `${path}.${field}`) }) as RouteFilter;
  };

/** The spec's CEL rules on a filter list: each type at most once, RequestMirror excepted; not redirect and rewrite together. */
function checkFilters(filters: readonly RouteFilter[], path: string): void {
  const seen = new Set<string>();
  filters.forEach((f, i) => {
    if (f.type !== 'RequestMirror' && seen.has(f.type)) fail(`${path}[${i}].type`, `${f.type} may appear only once`);
    seen.add(f.type);
  });
  if (seen.has('RequestRedirect') && seen.has('URLRewrite')) fail(path, 'RequestRedirect and URLRewrite cannot be used together');
}

const filters = (kind: ServiceRoute['kind']): Parser<readonly RouteFilter[]> =>
  map(list(parseFilter(kind), MAX_ITEMS), (fs, path) => {
    checkFilters(fs, path);
    return fs;
  });

/**
 * A backend the control plane could not resolve (`invalid` set: another kind such as a
 * ServiceImport, which needs no port, a missing Service, a ref not permitted) is still a
 * valid part of the route: its share of requests gets the spec's 500. So its name is any
 * object name (up to 253 characters) and its port may be 0; a resolved one is a Service port.
 */
const parseBackend = (kind: ServiceRoute['kind']): Parser<RouteBackend> => {
  const common = { weight: num({ int: true, min: 0, max: 1_000_000, default: 1 }), filters: filters(kind), invalid: str({ default: '' }) };
  const resolved = obj({ ...parseTarget, ...common });
  const unresolved = obj({
    name: str({ pattern: /^[^\s/]{1,253}$/ }), namespace: str({ pattern: DNS_LABEL }), port: num({ int: true, min: 0, max: 65535 }), ...common,
  });
  return (raw, path) => {
    const invalid = (raw as Record<string, unknown> | null)?.['invalid'];
    return typeof invalid === 'string' && invalid !== '' ? unresolved(raw, path) : resolved(raw, path);
  };
};

const matchParser = (kind: ServiceRoute['kind']): Parser<RouteMatch> => (raw, path) => {
  const m = obj({
    path: optional(parsePathMatch),
    method: optional(literal(METHODS)),
    grpc: optional(parseGrpc),
    headers: list(valueMatch(headerName), MAX_ITEMS),
    queryParams: list(valueMatch(str({ pattern: /^[^\s&=#]{1,256}$/ })), MAX_ITEMS),
  })(raw, path);
  if (kind === 'GRPCRoute') {
    for (const k of ['path', 'method'] as const) if (m[k] !== undefined) fail(`${path}.${k}`, 'not a GRPCRoute match field');
    if (m.queryParams.length > 0) fail(`${path}.queryParams`, 'not a GRPCRoute match field');
  } else if (m.grpc !== undefined) fail(`${path}.grpc`, 'only a GRPCRoute matches on gRPC methods');
  const out: Record<string, unknown> = { headers: m.headers, queryParams: m.queryParams };
  if (m.path) out['path'] = m.path;
  if (m.method) out['method'] = m.method;
  if (m.grpc) out['grpc'] = m.grpc;
  return Object.freeze(out) as unknown as RouteMatch;
};

const MATCH_ALL_HTTP: RouteMatch = Object.freeze({ path: Object.freeze({ type: 'PathPrefix', value: '/' }), headers: [], queryParams: [] });
const MATCH_ALL_GRPC: RouteMatch = Object.freeze({ headers: [], queryParams: [] });

const parseRule = (kind: ServiceRoute['kind']): Parser<RouteRule> => (raw, path) => {
  const r = obj({
    // SectionName: a DNS subdomain (RFC 1123) of up to 253 characters, as the CRD allows.
    name: map(str({ default: '', pattern: /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/ }), (v, p) => (v.length > 253 ? fail(p, 'at most 253 characters') : v)),
    matches: list(matchParser(kind), MAX_MATCHES),
    filters: filters(kind),
    backends: list(parseBackend(kind), MAX_ITEMS),
    timeouts: obj({ requestMs: num({ min: 0, default: 0 }), backendRequestMs: num({ min: 0, default: 0 }) }),
    retry: optional(
      obj({
        attempts: num({ int: true, min: 0, max: 10, default: 1 }),
        codes: list(num({ int: true, min: 400, max: 599 }), MAX_ITEMS),
        backoffMs: num({ min: 0, default: 0 }),
      }),
    ),
  })(raw, path);
  const matches = r.matches.length > 0 ? r.matches : [kind === 'GRPCRoute' ? MATCH_ALL_GRPC : MATCH_ALL_HTTP];
  const { requestMs, backendRequestMs } = r.timeouts;
  if (requestMs > 0 && backendRequestMs > requestMs) fail(`${path}.timeouts.backendRequestMs`, `must not exceed timeouts.requestMs (${requestMs})`);
  const prefixOnly = matches.every((m) => (m.path?.type ?? 'PathPrefix') === 'PathPrefix');
  r.filters.forEach((f, i) => {
    const pm = f.type === 'RequestRedirect' ? f.requestRedirect.path : f.type === 'URLRewrite' ? f.urlRewrite.path : undefined;
    if (pm?.type === 'ReplacePrefixMatch' && !prefixOnly) fail(`${path}.filters[${i}]`, 'ReplacePrefixMatch needs every match of the rule to be a PathPrefix match');
    if (f.type === 'RequestRedirect' && r.backends.length > 0) fail(`${path}.filters[${i}]`, 'RequestRedirect cannot be used together with backends');
  });
  const out: Record<string, unknown> = { name: r.name, matches: Object.freeze(matches), filters: r.filters, backends: r.backends, timeouts: r.timeouts };
  if (r.retry) out['retry'] = r.retry;
  return Object.freeze(out) as unknown as RouteRule;
};

export const parseServiceRoute: Parser<ServiceRoute> = (raw, path) => {
  const kind = literal(['HTTPRoute', 'GRPCRoute'] as const, 'HTTPRoute')((raw as Record<string, unknown> | null)?.['kind'], `${path}.kind`);
  return obj({
    kind: () => kind,
    name: str({ pattern: /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/ }),
    namespace: str({ pattern: DNS_LABEL, default: 'default' }),
    ports: list(num({ int: true, min: 1, max: 65535 }), MAX_ITEMS),
    rules: bounded(arr(parseRule(kind), { min: 1 }), MAX_RULES),
  })(raw, path);
};

/** A service's routes (a list, in tie-break order). */
export const parseServiceRoutes: Parser<readonly ServiceRoute[]> = list(parseServiceRoute, MAX_ROUTES);

/** `routes_json` from the wire ('' or absent: none); throws ConfigError naming `path`. */
export function routesFromJson(json: string | undefined, path: string): readonly ServiceRoute[] | undefined {
  if (!json) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    return fail(path, `invalid JSON (${(e as Error).message})`);
  }
  return parseServiceRoutes(raw, path);
}
