/**
 * String matching for authorization rules, compiled once per policy update.
 *
 * Istio's forms (security/v1beta1/authorization_policy.proto, "Rule"): exact `abc`,
 * prefix `abc*`, suffix `*abc`, and `*`. contract/parse.ts has already rejected every
 * other use of `*`. What `*` means depends on the field, as in the Envoy config Istio
 * generates (pilot/pkg/security/authz/model/matcher): for a string field (principals,
 * namespaces, paths, methods, request principals, the `request.auth.*` values, ...) it is
 * the regex `.+`, any non-empty value (anyPattern); for a request header it is
 * `present_match`, the header is there, whatever its value, empty included
 * (anyHeaderPattern).
 */
export type StringMatcher = (value: string) => boolean;
/** A request header's matcher: undefined is a header the request does not have. */
export type HeaderMatcher = (value: string | undefined) => boolean;

const never: StringMatcher = () => false;

/** One matcher for a list of patterns (ORed). Exact patterns become one Set lookup. */
export function anyPattern(patterns: readonly string[]): StringMatcher {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let presence = false;
  for (const p of patterns) {
    if (p === '*') presence = true;
    else if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else if (p.startsWith('*')) suffixes.push(p.slice(1));
    else exact.add(p);
  }
  if (presence) return (v) => v !== '';
  if (exact.size === 0 && prefixes.length === 0 && suffixes.length === 0) return never;
  return (v) => {
    if (exact.has(v)) return true;
    for (const p of prefixes) if (v.startsWith(p)) return true;
    for (const s of suffixes) if (v.endsWith(s)) return true;
    return false;
  };
}

/**
 * One matcher for a list of patterns (ORed) on a request header, as Istio's
 * matcher.HeaderMatcher: `*` is Envoy's present_match (a header sent with an empty value
 * is there: a DENY on `x-debug: ["*"]` denies `x-debug:`, and `notValues: ["*"]` admits
 * only requests without the header), and every other pattern matches the value of a header
 * that is there; an absent header matches none (it is not an empty value).
 */
export function anyHeaderPattern(patterns: readonly string[]): HeaderMatcher {
  if (patterns.includes('*')) return (v) => v !== undefined;
  const m = anyPattern(patterns);
  return (v) => v !== undefined && m(v);
}

const SPIFFE = 'spiffe://';

/**
 * Principals are compared without the `spiffe://` scheme, so a policy may name a peer
 * the Istio way (`cluster.local/ns/demo/sa/web`) or as its full SPIFFE ID
 * (`spiffe://cluster.local/ns/demo/sa/web`) and both match the same certificate.
 */
export const stripSpiffe = (s: string): string => (s.startsWith(SPIFFE) ? s.slice(SPIFFE.length) : s);

/** The trust domain Istio reads as "this mesh's", whatever its own is (constants.DefaultClusterLocalDomain). */
export const CLUSTER_LOCAL = 'cluster.local';

/** Istio's trustdomain.stringMatch: either side may be the pattern (`*`, `abc*`, `*abc`). */
function trustDomainMatch(a: string, list: readonly string[]): boolean {
  const prefix = (s: string, p: string) => p.endsWith('*') && s.startsWith(p.slice(0, -1));
  return list.some((s) => a === s || s === '*' || prefix(a, s) || prefix(s, a) || suffix(a, s) || suffix(s, a));
}
const suffix = (s: string, p: string): boolean => p.startsWith('*') && s.endsWith(p.slice(1));

/**
 * The principal patterns of a policy (already without `spiffe://`) for a mesh whose trust
 * domains are `trustDomains` (the local one first, then its aliases): Istio's
 * `Bundle.ReplaceTrustDomainAliases` (pilot/pkg/security/trustdomain/bundle.go), which
 * istiod applies to `principals`, `notPrincipals` and the `source.principal` condition
 * (model.MigrateTrustDomain). A principal `TD/ns/NS/sa/SA` whose trust domain is
 * `cluster.local` or one of `trustDomains` stands for that service account in every one of
 * `trustDomains`: it becomes one pattern per trust domain (a trust-domain pattern like
 * `*-td` that matches one is kept as written for that one). Any other principal is kept
 * as written: one with a trust domain `*`, one not of that five-part shape (a prefix
 * `cluster.local/ns/shop/*`, a suffix `*sa/web`), one of a foreign trust domain.
 *
 * Wren adds one thing: a `cluster.local` principal also keeps its literal form when
 * `cluster.local` is not among `trustDomains` (Istio drops it there). It names no caller
 * that reaches the app (the inbound refuses a peer of another trust domain than its own,
 * inbound-listener.ts), and a DENY denies at least what it did.
 */
export function withTrustDomains(principals: readonly string[], trustDomains: readonly string[]): readonly string[] {
  const out: string[] = [];
  const add = (p: string) => (out.includes(p) ? undefined : out.push(p));
  for (const p of principals) {
    const parts = p.split('/');
    const td = parts[0];
    if (parts.length !== 5 || td === '*' || !(td === CLUSTER_LOCAL || trustDomainMatch(td, trustDomains))) {
      add(p);
      continue;
    }
    const rest = p.slice(td.length);
    for (const t of trustDomains) add(suffix(t, td) ? p : t + rest);
    if (td === CLUSTER_LOCAL) add(p);
  }
  return out;
}

/** The namespace of a SPIFFE ID `spiffe://td/ns/NS/sa/SA` ('' when it has none, or the peer is unauthenticated). */
export function namespaceOf(spiffeId: string): string {
  const m = /\/ns\/([^/]+)\/sa\//.exec(spiffeId);
  return m ? m[1] : '';
}

/**
 * The path rules match against: the query and fragment removed and dot segments
 * resolved (RFC 3986 section 5.2.4), so `/public/../admin` is judged as `/admin`, the
 * way the app will read it. Istio (Envoy normalize_path) does the same by default.
 */
export function normalizePath(raw: string): string {
  let end = raw.length;
  const q = raw.indexOf('?');
  if (q >= 0) end = q;
  const h = raw.indexOf('#');
  if (h >= 0 && h < end) end = h;
  const path = end === raw.length ? raw : raw.slice(0, end);
  if (!path.includes('.')) return path;
  const out: string[] = [];
  const segs = path.split('/');
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 1) out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  const joined = out.join('/');
  return joined.startsWith('/') || !path.startsWith('/') ? joined : '/' + joined;
}
