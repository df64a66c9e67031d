import type { AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource } from './model.js';
import { arr, bool, fail, literal, map, obj, optional, str, type Parser } from '../common/schema.js';

/**
 * AuthorizationPolicy parsers (Istio security/v1beta1/authorization_policy.proto), from the
 * resource's spelling and the model's. Shared by the proxy's static config and the control
 * plane's translation (control-plane/translate/policy-objects.ts), so both refuse the same
 * mistakes with the same field paths. PeerAuthentication and the per-workload inbound
 * policy that carries these are in parse.ts.
 */

const required =
  <T>(p: Parser<T>): Parser<T> =>
  (raw, path) =>
    raw === undefined || raw === null ? fail(path, 'is required') : p(raw, path);

/**
 * Istio's string match forms (authorization_policy.proto, "Rule"): exact `abc`, prefix
 * `abc*`, suffix `*abc`, presence `*`. A `*` anywhere else is rejected, as Istio does.
 */
export const MATCH_FORM = /^(\*|\*?[^*]+|[^*]+\*)$/;
const matchPattern: Parser<string> = map(str(), (v, path) =>
  MATCH_FORM.test(v) ? v : fail(path, `only exact "x", prefix "x*", suffix "*x" and presence "*" matches are supported, got ${JSON.stringify(v)}`),
);
const patterns = arr(matchPattern, { default: [] });
/**
 * A condition's values as matchPattern reads them, but a refused one is not quoted: a
 * `request.headers[x-api-key]` or `request.auth.claims[...]` value is often a static key,
 * and the reason is shown on the control plane's /debug/rejected and /debug/view, in
 * `wren check` and in logs. The misplaced `*` (the first one not leading) is named by its
 * position, as parse-routes.ts names a bad header value's character.
 */
const conditionPattern: Parser<string> = map(str(), (v, path) => {
  if (MATCH_FORM.test(v)) return v;
  const chars = [...v];
  const star = chars.indexOf('*', 1);
  if (star < 0) return fail(path, 'an empty value matches nothing: use "*" for presence');
  return fail(path, `only exact "x", prefix "x*", suffix "*x" and presence "*" matches are supported, got a value (not shown: it may be a credential) with "*" at character ${star + 1} of ${chars.length}`);
});
const conditionPatterns = arr(conditionPattern, { default: [] });
/** A port number 1-65535 written as a string without leading zeros (Istio's `ports: ["8080"]`, portLevelMtls keys). */
export const PORT_STRING = /^([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$/;
const portString: Parser<string> = map(str(), (v, path) => (PORT_STRING.test(v) ? v : fail(path, `expected a port number 1-65535, got ${JSON.stringify(v)}`)));

/**
 * Condition keys Wren implements (Istio's conditions page): headers, the peer, the port,
 * and what a verified JWT says (`request.auth.*`; `request.auth.claims[a][b]` is the
 * nested claim b of claim a). A claim name is anything without brackets.
 */
export const CONDITION_KEY =
  /^(request\.headers\[[!#$%&'*+.^_`|~0-9A-Za-z-]+\]|source\.principal|source\.namespace|destination\.port|request\.auth\.(principal|audiences|presenter)|request\.auth\.claims(\[[^[\]]+\])+)$/;

/**
 * `destination.port` is compared with the workload port as a string: a value that is no
 * port number (`"http"`, `"80*"`, `"080"`) never matches. Istio refuses them
 * (security.ValidateAttribute: "bad port"), and so does the CRD; the parser reads them as
 * what they are, a value that matches nothing, and authzNeverMatching reports them.
 */
const parseCondition: Parser<AuthzCondition> = map(
  obj({ key: str({ pattern: CONDITION_KEY }), values: conditionPatterns, notValues: conditionPatterns }),
  (c, path) => (c.values.length === 0 && c.notValues.length === 0 ? fail(`${path}.values`, 'values or notValues must be set') : c),
);

/**
 * HTTP methods as a request carries them: a token (RFC 9110 section 9.1) in upper case.
 * Methods are case-sensitive and the codecs refuse a request whose method has a lower-case
 * letter (docs/http1-codec.md, `lowercase-method`), so `get` (or `get*`) can never match.
 * Istio accepts any string. The CRD refuses other forms at `kubectl apply`; the parser
 * accepts them as values that match nothing, as the release before did (an object stored
 * before the CRD changed keeps its meaning), and authzNeverMatching reports them.
 */
const METHOD_CHARS = "[!#$%&'+.^_`|~0-9A-Z-]+";
const METHOD_FORM = new RegExp(`^(\\*|\\*?${METHOD_CHARS}|${METHOD_CHARS}\\*)$`);

/**
 * Request paths as the authorizer sees them start with `/` (a request-target in no other
 * form gets 400; absolute-form is reduced to its path) and carry no query or fragment
 * (normalizePath removes them). So an exact or prefix path without the leading `/`, or
 * any path with `?` or `#`, can never match (`admin`, `/admin?x=1`). Suffix (`*.php`) and
 * presence (`*`) forms need no `/`. As for methods: the CRD refuses the other forms, the
 * parser reads them as values that match nothing and authzNeverMatching reports them.
 */
const PATH_FORM = /^(\*|\*[^*?#]+|\/[^*?#]*\*?)$/;

/**
 * A list that is absent (matches anything) or holds at least one item. Istio refuses an
 * explicit empty `from` / `to` ("`from` must not be empty"): written out, it is a mistake
 * (a template that rendered nothing), and Wren would read it as "anything".
 */
const absentOrNonEmpty = <T>(item: Parser<T>, what: string): Parser<readonly T[]> => {
  const list = arr(item);
  return (raw, path) => {
    if (raw === undefined) return Object.freeze([]) as readonly T[];
    const out = list(raw, path);
    return out.length > 0 ? out : fail(path, `must not be empty (leave it out to match any ${what})`);
  };
};

const SOURCE_LISTS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals'] as const;
const OPERATION_LISTS = ['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

/**
 * An Istio field Wren does not implement (`source.ipBlocks`, `operation.hosts`, `targetRefs`...).
 * Absent or empty is Istio's "not set" and accepted; anything else is refused with its path.
 * The CRD says the same (`maxItems: 0` / `maxProperties: 0`), so what `kubectl apply` takes
 * is what the control plane enforces: a Helm value that renders `hosts: []` must not leave
 * the whole policy unenforced. Declared rather than left out of the CRD: an undeclared
 * field is pruned, and an ALLOW whose restriction was pruned allows more.
 */
export function unsupportedField(kind: 'list' | 'object', hint: string): Parser<undefined> {
  return (raw, path) => {
    if (raw === undefined) return undefined;
    const isList = Array.isArray(raw);
    const isObject = raw !== null && typeof raw === 'object' && !isList;
    if (kind === 'list' ? !isList : !isObject) return fail(path, `expected ${kind === 'list' ? 'a list' : 'an object'}, got ${raw === null ? 'null' : typeof raw}`);
    const empty = isList ? (raw as unknown[]).length === 0 : Object.keys(raw as object).length === 0;
    return empty ? undefined : fail(path, `is not supported by Wren (${hint}); only an empty ${kind}, Istio's "not set", is accepted`);
  };
}

/** The parsed object without the unsupported fields (always undefined): the model has no room for them. */
function without<T extends object, K extends string>(keys: readonly K[]): (o: T) => Omit<T, K> {
  return (o) => Object.freeze(Object.fromEntries(Object.entries(o).filter(([k]) => !(keys as readonly string[]).includes(k)))) as Omit<T, K>;
}

const UNSUPPORTED_SOURCE = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts'] as const;
const UNSUPPORTED_OPERATION = ['hosts', 'notHosts'] as const;
const unsupportedSource = Object.fromEntries(UNSUPPORTED_SOURCE.map((k) => [k, unsupportedField('list', 'match callers by principals or namespaces')])) as Record<
  (typeof UNSUPPORTED_SOURCE)[number],
  Parser<undefined>
>;
const unsupportedOperation = Object.fromEntries(UNSUPPORTED_OPERATION.map((k) => [k, unsupportedField('list', 'the inbound sidecar serves one workload: match ports or paths')])) as Record<
  (typeof UNSUPPORTED_OPERATION)[number],
  Parser<undefined>
>;

const sourceShape: Parser<AuthzSource> = map(
  obj({
    principals: patterns, notPrincipals: patterns, namespaces: patterns, notNamespaces: patterns, unauthenticated: optional(bool()),
    requestPrincipals: patterns, notRequestPrincipals: patterns, ...unsupportedSource,
  }),
  without(UNSUPPORTED_SOURCE),
);
const operationShape: Parser<AuthzOperation> = map(
  obj({
    ports: arr(portString, { default: [] }), notPorts: arr(portString, { default: [] }), methods: patterns, notMethods: patterns,
    paths: patterns, notPaths: patterns, ...unsupportedOperation,
  }),
  without(UNSUPPORTED_OPERATION),
);

/**
 * A `source` or `operation` that restricts nothing would match every caller or request.
 * Istio refuses it ("`from.source` must not be empty", "`to.operation` must not be
 * empty"), and so does the resource form: it is what the API server leaves of a source
 * whose only field was misspelt (`principal:` for `principals:`; unknown fields are pruned
 * for clients without strict field validation), and read as "everyone" it would turn an
 * ALLOW for one caller into an ALLOW for all (test/crd-pruning-authz.test.ts).
 */
const nonEmptySource: Parser<AuthzSource> = map(sourceShape, (s, path) =>
  SOURCE_LISTS.some((k) => s[k].length > 0) || s.unauthenticated !== undefined
    ? s
    : fail(path, `must not be empty: set one of ${SOURCE_LISTS.join(', ')} or unauthenticated (an empty source would match every caller)`),
);
const nonEmptyOperation: Parser<AuthzOperation> = map(operationShape, (o, path) =>
  OPERATION_LISTS.some((k) => o[k].length > 0) ? o : fail(path, `must not be empty: set one of ${OPERATION_LISTS.join(', ')} (an empty operation would match every request)`),
);

/**
 * A rule in the model's spelling: the proxy's static `policy:` and the discovery stream's
 * `inbound_policy`, the resolved form the authorizer compiles. A value that can never match
 * (authzNeverMatching) is accepted and matches nothing; an empty source, operation or list
 * means "any", as the authorizer reads it.
 */
export const parseAuthzRule: Parser<AuthzRule> = obj({
  from: arr(obj({ source: required(sourceShape) }), { default: [] }),
  to: arr(obj({ operation: required(operationShape) }), { default: [] }),
  when: arr(parseCondition, { default: [] }),
});

/**
 * A rule as an AuthorizationPolicy resource writes it (the CRD form the control plane
 * reads): parseAuthzRule's checks and Istio's ValidateAuthorizationPolicy's on top, each
 * with its field path: `from` and `to`, when written, are not empty lists, and no `source`
 * or `operation` is empty. manifests/crds/authorizationpolicy.yaml says the same, so the
 * API server refuses them at `kubectl apply`.
 */
export const parseAuthzRuleResource: Parser<AuthzRule> = obj({
  from: absentOrNonEmpty(obj({ source: required(nonEmptySource) }), 'source'),
  to: absentOrNonEmpty(obj({ operation: required(nonEmptyOperation) }), 'operation'),
  when: arr(parseCondition, { default: [] }),
});

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT'] as const;

/** An authorization action; CUSTOM (external authorizers) gets a clear error. */
export const parseAuthzAction: Parser<AuthzPolicy['action']> = (raw, path) =>
  raw === 'CUSTOM' ? fail(path, 'CUSTOM (external authorization) is not supported; use ALLOW, DENY or AUDIT') : literal(AUTHZ_ACTIONS, 'ALLOW')(raw, path);

/**
 * What in a policy can never match, as `path: problem` lines (warnings, not errors). Each
 * has a meaning the authorizer enforces, the one the release before gave it: a DENY
 * without rules denies nothing, and a method with a lower-case letter, a path without its
 * leading `/` (or with `?` / `#`) or a destination.port value that is no port number
 * matches no request. The CRD refuses them at `kubectl apply` (Istio refuses a DENY without
 * rules and a bad port too); an object stored before, or written to the directory source,
 * is read as it was and the control plane reports it (log line, `wren check`), since
 * refusing it would enforce it fail-closed: a DENY of every request for what denied
 * nothing.
 */
export function authzNeverMatching(p: { readonly action: AuthzPolicy['action']; readonly rules: readonly AuthzRule[] }, path: string): string[] {
  const at = (k: string) => (path ? `${path}.${k}` : k);
  const out: string[] = [];
  if (p.action === 'DENY' && p.rules.length === 0) out.push(`${at('rules')}: a DENY policy without rules denies nothing (rules: [{}] denies every request)`);
  p.rules.forEach((r, i) => {
    r.to.forEach((t, j) => {
      for (const f of ['methods', 'notMethods'] as const)
        t.operation[f].forEach((v, k) => METHOD_FORM.test(v) || out.push(`${at(`rules[${i}].to[${j}].operation.${f}[${k}]`)}: ${JSON.stringify(v)} never matches: an HTTP method is matched exactly and is upper case (GET, not get)`));
      for (const f of ['paths', 'notPaths'] as const)
        t.operation[f].forEach((v, k) => PATH_FORM.test(v) || out.push(`${at(`rules[${i}].to[${j}].operation.${f}[${k}]`)}: ${JSON.stringify(v)} never matches: the request path starts with "/" and has no query or fragment`));
    });
    r.when.forEach((c, j) => {
      if (c.key !== 'destination.port') return;
      for (const f of ['values', 'notValues'] as const)
        c[f].forEach((v, k) => PORT_STRING.test(v) || out.push(`${at(`rules[${i}].when[${j}].${f}[${k}]`)}: ${JSON.stringify(v)} never matches: a destination.port value is a port number 1-65535 (no match forms)`));
    });
  });
  return out;
}

/** A policy in the model's spelling (parseAuthzRule): a DENY without rules denies nothing, as in the resource form (authzNeverMatching reports it). */
export const parseAuthzPolicy: Parser<AuthzPolicy> = obj({
  name: str({ pattern: /^\S+$/ }),
  action: parseAuthzAction,
  rules: arr(parseAuthzRule, { default: [] }),
});
