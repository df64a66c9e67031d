import type { AuthzAction, AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource } from '../../contract/model.js';
import { field } from '../http/headers.js';
import { anyHeaderPattern, anyPattern, CLUSTER_LOCAL, namespaceOf, normalizePath, stripSpiffe, withTrustDomains } from './match.js';

/**
 * Istio AuthorizationPolicy evaluation (security/v1beta1/authorization_policy.proto),
 * compiled once per policy update into closures: the hot path never sees raw JSON.
 *
 * 1. If any DENY policy matches, deny.
 * 2. If no ALLOW policy applies to the workload, allow.
 * 3. If any ALLOW policy matches, allow; otherwise deny.
 * AUDIT policies never change the decision; their matches are reported.
 *
 * A policy matches when one of its rules does; a policy with no rules matches nothing
 * (so an ALLOW policy with no rules denies everything, a DENY policy with no rules
 * denies nothing) and an empty rule `{}` matches everything. Within a rule one `from`,
 * one `to` and every `when` must match; an empty list matches anything.
 *
 * TCP (CONNECT tunnels, plaintext opaque connections) has no method, path or headers.
 * As in Istio: an ALLOW rule using any HTTP-only field never matches TCP; a DENY or
 * AUDIT rule is applied with its HTTP-only fields left out (it matches more). The JWT
 * fields (`requestPrincipals`, `request.auth.*`) are HTTP-only, as in Istio.
 */

/** What a verified JWT says about the request (RequestAuthentication), for `requestPrincipals` and `request.auth.*`. */
export interface RequestAuth {
  /** `<iss>/<sub>`, Istio's request principal. */
  readonly principal: string;
  /** The `aud` claim as a list. */
  readonly audiences: readonly string[];
  /** The `azp` claim ('' when absent). */
  readonly presenter: string;
  readonly claims: Readonly<Record<string, unknown>>;
}

export interface AuthzRequest {
  /** Verified peer SPIFFE ID; '' for a plaintext caller. */
  readonly principal: string;
  /** The workload port the request is for (0 when unknown). */
  readonly port: number;
  /** null for TCP. Header names are lower-case. */
  readonly http: {
    readonly method: string;
    readonly path: string;
    readonly headers: Readonly<Record<string, string | readonly string[]>>;
    /** The request's authority (HTTP/1.1 Host, HTTP/2 :authority): what `request.headers[host]` reads. */
    readonly authority?: string;
    /** An upgrade request's protocols (HTTP/1.1 Upgrade, extended CONNECT's :protocol): what `request.headers[upgrade]` reads. */
    readonly upgrade?: string;
  } | null;
  /** The request's verified JWT; absent or null: none (then `requestPrincipals` see ''). */
  readonly auth?: RequestAuth | null;
}

export interface Decision {
  readonly allow: boolean;
  /** The policy action that decided ('NONE': no ALLOW or DENY policy applies). */
  readonly action: AuthzAction | 'NONE';
  /** `namespace/name` of the deciding policy, '' when none did. */
  readonly policy: string;
  /** Short, stable, safe to show a caller: `deny-policy NS/NAME`, `no-allow-policy-matched`, `allow-policy NS/NAME`, `no-allow-policies`, `no-policies`. */
  readonly reason: string;
  /** AUDIT policies that matched. */
  readonly audited: readonly string[];
  /** Index of the deciding policy's rule that matched (`rules[N]`); -1 when no rule did (no-allow-policy-matched, no policies). */
  readonly rule: number;
  /**
   * Istio's name for the matched rule, as its RBAC filter logs it (`shadow_effective_policy_id`,
   * response detail `rbac_access_denied_matched_policy[...]`): `ns[NS]-policy[NAME]-rule[N]`;
   * '' when no rule matched (Envoy says `none`).
   */
  readonly effectivePolicyId: string;
  /** For no-allow-policy-matched: the ALLOW policies that applied to the workload, none of whose rules matched; else empty. */
  readonly considered: readonly string[];
}

export interface Authorizer {
  /** False when no policy applies at all: callers may skip evaluation (and its telemetry). */
  readonly active: boolean;
  authorize(req: AuthzRequest): Decision;
}

interface Ctx {
  readonly principal: string;
  readonly namespace: string;
  readonly port: number;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | readonly string[]>> | null;
  readonly authority: string;
  /** '' when the request is no upgrade. */
  readonly upgrade: string;
  readonly auth: RequestAuth | null;
}

type Pred = (c: Ctx) => boolean;
const always: Pred = () => true;

const all = (ps: Pred[]): Pred => (ps.length === 0 ? always : ps.length === 1 ? ps[0] : (c) => ps.every((p) => p(c)));
const some = (ps: Pred[]): Pred => (ps.length === 0 ? always : ps.length === 1 ? ps[0] : (c) => ps.some((p) => p(c)));

/**
 * `values` must match (when given) and `notValues` must not (when given), each with the
 * matcher `matcherOf` builds from its patterns (once, at compile time).
 */
function valuesCondition<V>(values: readonly string[], notValues: readonly string[], get: (c: Ctx) => V, matcherOf: (patterns: readonly string[]) => (v: V) => boolean): Pred | null {
  const ps: Pred[] = [];
  if (values.length > 0) {
    const m = matcherOf(values);
    ps.push((c) => m(get(c)));
  }
  if (notValues.length > 0) {
    const m = matcherOf(notValues);
    ps.push((c) => !m(get(c)));
  }
  return ps.length === 0 ? null : all(ps);
}

/** A single-valued field: Istio's patterns (`*`: any non-empty value). */
const positiveNegative = (values: readonly string[], notValues: readonly string[], get: (c: Ctx) => string): Pred | null => valuesCondition(values, notValues, get, anyPattern);

/** A request header condition: the header matcher (`*`: the header is present). */
const headerCondition = (values: readonly string[], notValues: readonly string[], get: (c: Ctx) => string | undefined): Pred | null => valuesCondition(values, notValues, get, anyHeaderPattern);

/** The multi-valued form (audiences, list claims): `values` match when any item does; `notValues` when none does. */
const anyItem = (patterns: readonly string[]): ((vs: readonly string[]) => boolean) => {
  const m = anyPattern(patterns);
  return (vs) => vs.some(m);
};
const positiveNegativeAny = (values: readonly string[], notValues: readonly string[], get: (c: Ctx) => readonly string[]): Pred | null => valuesCondition(values, notValues, get, anyItem);

const push = (ps: Pred[], p: Pred | null) => (p ? ps.push(p) : undefined);

/** A policy's principal patterns as matched: without `spiffe://`, and a `cluster.local` one for every trust domain of the mesh (withTrustDomains). */
type Principals = (patterns: readonly string[]) => readonly string[];

function compileSource(s: AuthzSource, http: boolean, principals: Principals): Pred {
  const ps: Pred[] = [];
  push(ps, positiveNegative(principals(s.principals), principals(s.notPrincipals), (c) => c.principal));
  push(ps, positiveNegative(s.namespaces, s.notNamespaces, (c) => c.namespace));
  if (s.unauthenticated !== undefined) {
    const want = s.unauthenticated;
    ps.push((c) => (c.principal === '') === want);
  }
  if (http) push(ps, positiveNegative(s.requestPrincipals, s.notRequestPrincipals, (c) => c.auth?.principal ?? ''));
  return all(ps);
}

function compileOperation(o: AuthzOperation, http: boolean): Pred {
  const ps: Pred[] = [];
  if (o.ports.length > 0) {
    const ports = new Set(o.ports.map(Number));
    ps.push((c) => ports.has(c.port));
  }
  if (o.notPorts.length > 0) {
    const ports = new Set(o.notPorts.map(Number));
    ps.push((c) => !ports.has(c.port));
  }
  if (http) {
    push(ps, positiveNegative(o.methods, o.notMethods, (c) => c.method));
    push(ps, positiveNegative(o.paths, o.notPaths, (c) => c.path));
  }
  return all(ps);
}

const HEADER_KEY = /^request\.headers\[(.+)\]$/;

/** The header's value (repeated fields joined with `,`, as Envoy's header matcher reads them); undefined when the request has none. */
function headerValue(c: Ctx, name: string): string | undefined {
  // Own fields only: `request.headers[constructor]` must not read Object.prototype's member.
  const v = c.headers ? field(c.headers, name) : undefined;
  return v === undefined || typeof v === 'string' ? v : v.join(',');
}

/**
 * What `request.headers[NAME]` reads. The listeners take the connection's own fields out
 * of the header map (RFC 9110 section 7.6.1: Connection and what it lists are for the
 * immediate connection; Host is the request's authority), so these three are read from
 * the request itself, as Envoy's filters see them: an upgrade request keeps `upgrade`
 * (an HTTP/2 extended CONNECT's :protocol, turned into an HTTP/1.1-style upgrade as Envoy
 * does) and `connection: upgrade`; any other request has neither (Envoy removes them
 * before its filters: absent, not empty); `host` is the authority. Without this a DENY on
 * `request.headers[upgrade]` never matched, and WebSockets went through it.
 */
function headerReader(name: string): (c: Ctx) => string | undefined {
  if (name === 'upgrade') return (c) => (c.upgrade === '' ? undefined : c.upgrade);
  if (name === 'connection') return (c) => (c.upgrade === '' ? undefined : 'upgrade');
  if (name === 'host') return (c) => (c.authority === '' ? undefined : c.authority);
  return (c) => headerValue(c, name);
}

const CLAIM_KEY = /^request\.auth\.claims((?:\[[^[\]]+\])+)$/;
const EMPTY: readonly string[] = Object.freeze([]);

/** A claim by its path (`[a][b]`: claim b of the object claim a); strings and lists of strings only, as Istio. */
function claimValues(auth: RequestAuth | null, path: readonly string[]): readonly string[] {
  let v: unknown = auth?.claims;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return EMPTY;
    v = (v as Record<string, unknown>)[k];
  }
  return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : EMPTY;
}

function compileAuthCondition(w: AuthzCondition): Pred | null {
  const claim = CLAIM_KEY.exec(w.key);
  if (claim) {
    const path = claim[1].slice(1, -1).split('][');
    return positiveNegativeAny(w.values, w.notValues, (c) => claimValues(c.auth, path));
  }
  if (w.key === 'request.auth.audiences') return positiveNegativeAny(w.values, w.notValues, (c) => c.auth?.audiences ?? EMPTY);
  if (w.key === 'request.auth.principal') return positiveNegative(w.values, w.notValues, (c) => c.auth?.principal ?? '');
  return positiveNegative(w.values, w.notValues, (c) => c.auth?.presenter ?? '');
}

function compileCondition(w: AuthzCondition, principals: Principals): Pred {
  if (w.key.startsWith(AUTH_PREFIX)) return compileAuthCondition(w) ?? always;
  const h = HEADER_KEY.exec(w.key);
  if (h) {
    const name = h[1].toLowerCase();
    return headerCondition(w.values, w.notValues, headerReader(name)) ?? always;
  }
  if (w.key === 'source.principal') return positiveNegative(principals(w.values), principals(w.notValues), (c) => c.principal) ?? always;
  const get: (c: Ctx) => string = w.key === 'source.namespace' ? (c) => c.namespace : (c) => String(c.port);
  return positiveNegative(w.values, w.notValues, get) ?? always;
}

const opUsesHttp = (o: AuthzOperation) => o.methods.length + o.notMethods.length + o.paths.length + o.notPaths.length > 0;
const AUTH_PREFIX = 'request.auth.';
const condUsesHttp = (w: AuthzCondition) => HEADER_KEY.test(w.key) || w.key.startsWith(AUTH_PREFIX);
const sourceUsesHttp = (s: AuthzSource) => s.requestPrincipals.length + s.notRequestPrincipals.length > 0;
export const ruleUsesHttp = (r: AuthzRule): boolean =>
  r.to.some((t) => opUsesHttp(t.operation)) || r.when.some(condUsesHttp) || r.from.some((f) => sourceUsesHttp(f.source));

/** null: the rule can never match (an ALLOW rule with HTTP-only fields, for TCP). */
function compileRule(r: AuthzRule, http: boolean, action: AuthzAction, principals: Principals): Pred | null {
  if (!http && action === 'ALLOW' && ruleUsesHttp(r)) return null;
  const from = some(r.from.map((f) => compileSource(f.source, http, principals)));
  const to = some(r.to.map((t) => compileOperation(t.operation, http)));
  const when = all(r.when.filter((w) => http || !condUsesHttp(w)).map((w) => compileCondition(w, principals)));
  return all([from, to, when].filter((p) => p !== always));
}

/** Which rule of the policy matches: its index in `rules` (the first that does, as Envoy's RBAC engine reports one), or -1. */
type RuleIndex = (c: Ctx) => number;
const noRule: RuleIndex = () => -1;

function compilePolicy(p: AuthzPolicy, http: boolean, principals: Principals): RuleIndex {
  const preds: Pred[] = [];
  const index: number[] = [];
  p.rules.forEach((r, i) => {
    const pred = compileRule(r, http, p.action, principals);
    if (pred === null) return;
    preds.push(pred);
    index.push(i);
  });
  if (preds.length === 0) return noRule;
  if (preds.length === 1) {
    const [only] = preds;
    const at = index[0];
    return (c) => (only(c) ? at : -1);
  }
  return (c) => {
    for (let i = 0; i < preds.length; i++) if (preds[i](c)) return index[i];
    return -1;
  };
}

interface Compiled {
  readonly name: string;
  readonly http: RuleIndex;
  readonly tcp: RuleIndex;
  /** One decision per rule (frozen once, indexed by the matched rule): the hot path allocates nothing. */
  readonly decisions: readonly Decision[];
}

const NONE: readonly string[] = Object.freeze([]);
const decision = (allow: boolean, action: Decision['action'], policy: string, reason: string, rule = -1, considered = NONE): Decision =>
  Object.freeze({ allow, action, policy, reason, audited: NONE, rule, effectivePolicyId: rule >= 0 ? effectivePolicyId(policy, rule) : '', considered });
const NO_POLICIES = decision(true, 'NONE', '', 'no-policies');
const NO_ALLOW_POLICIES = decision(true, 'NONE', '', 'no-allow-policies');

/** `ns[NS]-policy[NAME]-rule[N]`: the policy id Istio gives each rule in Envoy's RBAC config (pilot/pkg/security/authz/builder). */
export function effectivePolicyId(policy: string, rule: number): string {
  const slash = policy.indexOf('/');
  return `ns[${slash >= 0 ? policy.slice(0, slash) : ''}]-policy[${slash >= 0 ? policy.slice(slash + 1) : policy}]-rule[${rule}]`;
}

export interface AuthorizerOptions {
  /**
   * The mesh's trust domain (the proxy's `identity.trustDomain`; default `cluster.local`):
   * a principal written with trust domain `cluster.local` names that service account in
   * it, as in Istio (withTrustDomains). Wren has no trust-domain aliases.
   */
  readonly trustDomain?: string;
}

export function compileAuthorizer(policies: readonly AuthzPolicy[], options: AuthorizerOptions = {}): Authorizer {
  const trustDomains = [options.trustDomain ?? CLUSTER_LOCAL];
  const principals: Principals = (patterns) => (patterns.length === 0 ? patterns : withTrustDomains(patterns.map(stripSpiffe), trustDomains));
  const of = (action: AuthzAction): Compiled[] =>
    policies
      .filter((p) => p.action === action)
      .map((p) => ({
        name: p.name,
        http: compilePolicy(p, true, principals),
        tcp: compilePolicy(p, false, principals),
        decisions: Object.freeze(p.rules.map((_, i) => decision(action !== 'DENY', action, p.name, `${action === 'DENY' ? 'deny' : 'allow'}-policy ${p.name}`, i))),
      }));
  const denies = of('DENY');
  const allows = of('ALLOW');
  const audits = of('AUDIT');
  // Default deny: every ALLOW policy was considered and none of its rules matched (ztunnel: "allow policies exist, but none allowed").
  const NO_ALLOW_MATCHED = decision(false, 'ALLOW', '', 'no-allow-policy-matched', -1, Object.freeze(allows.map((a) => a.name)));
  return {
    active: policies.length > 0,
    authorize(req: AuthzRequest): Decision {
      if (policies.length === 0) return NO_POLICIES;
      const c: Ctx = {
        principal: stripSpiffe(req.principal),
        namespace: namespaceOf(req.principal),
        port: req.port,
        method: req.http?.method ?? '',
        path: req.http ? normalizePath(req.http.path) : '',
        headers: req.http?.headers ?? null,
        authority: req.http?.authority ?? '',
        upgrade: req.http?.upgrade ?? '',
        auth: req.http ? (req.auth ?? null) : null,
      };
      const http = !!req.http;
      let audited: string[] | null = null;
      for (const a of audits) if ((http ? a.http(c) : a.tcp(c)) >= 0) (audited ??= []).push(a.name);
      const d = first(denies, c, http) ?? (allows.length === 0 ? NO_ALLOW_POLICIES : (first(allows, c, http) ?? NO_ALLOW_MATCHED));
      return audited ? { ...d, audited } : d;
    },
  };
}

/** The decision of the first policy with a matching rule (for that rule), or null. */
function first(policies: readonly Compiled[], c: Ctx, http: boolean): Decision | null {
  for (const p of policies) {
    const i = http ? p.http(c) : p.tcp(c);
    if (i >= 0) return p.decisions[i];
  }
  return null;
}
