import type { CryptoKey, JWTPayload, JWTVerifyGetKey, JWTVerifyResult } from 'jose';
import type { Clock } from '../../common/clock.js';
import { field } from '../http/headers.js';
import type { JwtRule } from '../../contract/model.js';
import type { RequestAuth } from './authorizer.js';
import type { JwksRegistry, JwksSource } from './jwks-source.js';
import { joseIfLoaded, loadJose } from './jose-module.js';

/**
 * End-user authentication with JWTs, as Istio's RequestAuthentication (Envoy jwt_authn
 * with `allow_missing`): a request without a token passes with no request principal; a
 * request with a token is verified against the rule of its issuer and refused (401) when
 * anything is wrong with it. Compiled once per policy update.
 *
 * Token locations: a rule's fromHeaders (a value that does not contain the prefix,
 * compared case-sensitively, holds no token and is skipped, as Envoy's extractor does:
 * tokenIn) and fromParams; a rule with neither reads `Authorization: Bearer <token>` and
 * `?access_token=` (Envoy's JwtProvider defaults). More than one distinct token in a
 * request is refused: which one would the principal be? So is a repeated token header
 * with a token in any of its values: the app might read another one.
 *
 * Verification (jose, imported when the first rule is compiled: jose-module.ts): the
 * signature with a key of the issuer's JWKS chosen by `kid`
 * and by the algorithm's key type (RSA for RS/PS, EC of the right curve for ES, OKP for
 * EdDSA; RFC 7518 section 3.1), only from the asymmetric algorithms below: never `none`,
 * never HMAC, so a public key can never be used as an HMAC secret (RFC 8725 section 2.1);
 * `iss` equal to the rule's issuer; `aud` one of its audiences (when it lists any); `exp`
 * and `nbf` (when present) against the injected clock's wall time (`wallNow()`, never the
 * monotonic now()) with `clockSkewSec` of tolerance (Envoy's default clock_skew_seconds is 60).
 *
 * Verified tokens are cached (Envoy's jwt_authn does the same: JwtCacheConfig, default
 * 100 tokens), because a signature check costs hundreds of microseconds (RS256, ES256 and
 * EdDSA measured with jose at 0.3-0.9 ms on the shared test machine), more than the rest
 * of the request path. A hit still checks exp and nbf against the wall clock (as a fresh
 * verification does); the cache lives in the compiled policy, so a policy update starts it
 * afresh. Failures are not cached.
 */
export const ALLOWED_ALGORITHMS = Object.freeze(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']);

const DEFAULT_CLOCK_SKEW_SEC = 60;

export type JwtDenyReason =
  | 'malformed'
  | 'multiple-tokens'
  | 'unknown-issuer'
  | 'alg-not-allowed'
  | 'unknown-kid'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-audience'
  | 'bad-claims'
  | 'jwks-unavailable';

export type AuthnResult =
  | { readonly kind: 'none' }
  | { readonly kind: 'ok'; readonly auth: RequestAuth; readonly rule: CompiledRule; readonly found: FoundToken }
  | { readonly kind: 'denied'; readonly reason: JwtDenyReason; readonly issuer: string };

export interface CompiledRule {
  readonly rule: JwtRule;
  readonly keys: JwksSource;
  readonly headers: readonly { readonly name: string; readonly prefix: string }[];
  readonly params: readonly string[];
}

/** Where a token was found: a header name, or a query parameter. */
export interface FoundToken {
  readonly token: string;
  readonly header: string | null;
  readonly param: string | null;
}

interface CacheEntry {
  readonly ok: Extract<AuthnResult, { kind: 'ok' }>;
  /** Seconds since the epoch; undefined when the token has no such claim. */
  readonly exp: number | undefined;
  readonly nbf: number | undefined;
}

type JwtVerify = typeof import('jose').jwtVerify;

const NONE: AuthnResult = Object.freeze({ kind: 'none' });
const DEFAULT_HEADERS = Object.freeze([Object.freeze({ name: 'authorization', prefix: 'Bearer ' })]);
const DEFAULT_PARAMS = Object.freeze(['access_token']);
/** The compact JWS form: three base64url parts. */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

const denied = (reason: JwtDenyReason, issuer = ''): AuthnResult => ({ kind: 'denied', reason, issuer });

function reasonOf(e: unknown): JwtDenyReason {
  const err = e as { code?: string; claim?: string };
  switch (err?.code) {
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return err.claim === 'nbf' ? 'not-yet-valid' : err.claim === 'aud' ? 'bad-audience' : err.claim === 'iss' ? 'unknown-issuer' : 'bad-claims';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return 'alg-not-allowed';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'unknown-kid';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'bad-signature';
    default:
      return 'malformed';
  }
}

/** A query parameter's name as the app's URL decoder will read it (`access%5Ftoken` is `access_token`). */
function paramName(kv: string): string {
  const eq = kv.indexOf('=');
  const raw = eq < 0 ? kv : kv.slice(0, eq);
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

function paramValue(kv: string): string {
  const eq = kv.indexOf('=');
  if (eq < 0) return '';
  try {
    return decodeURIComponent(kv.slice(eq + 1));
  } catch {
    return kv.slice(eq + 1);
  }
}

/**
 * The value of query parameter `name` (null: absent), matched on the decoded name. A name
 * repeated with differing values is MULTIPLE: the proxy would verify one and the app might
 * read the other (frameworks differ on first or last).
 */
function queryParam(path: string, name: string): string | null | typeof MULTIPLE {
  const q = path.indexOf('?');
  if (q < 0) return null;
  let found: string | null = null;
  for (const kv of path.slice(q + 1).split('&')) {
    if (paramName(kv) !== name) continue;
    const v = paramValue(kv);
    if (found !== null && found !== v) return MULTIPLE;
    found = v;
  }
  return found;
}
const MULTIPLE = Symbol('multiple');

/** The path without query parameter `name`, every occurrence, matched on the decoded name (the token is not forwarded). */
export function withoutParam(path: string, name: string): string {
  const q = path.indexOf('?');
  if (q < 0) return path;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((kv) => paramName(kv) !== name);
  return kept.length === 0 ? path.slice(0, q) : `${path.slice(0, q)}?${kept.join('&')}`;
}

/** RFC 4648 section 5 base64url, and the dot: the characters of a compact JWS. */
const isJwtChar = (c: number): boolean =>
  (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d /* - */ || c === 0x5f /* _ */ || c === 0x2e; /* . */

/**
 * The token in one value of a token header, or null when the value has none: Envoy's
 * jwt_authn extractor (extractor.cc, `ExtractorImpl::extract` and `extractJWT`). With a
 * prefix, the value must contain it, compared case-sensitively (`bearer x` and
 * `Basic x` do not contain `Bearer `): a value without it is not a token and is skipped, so
 * the request goes on without a request principal, as one without any token does. The
 * token starts at the first base64url character after the prefix and runs to the end of
 * the value (verification then refuses anything that is not exactly a compact JWS); with
 * none there, the whole value, which is no JWS either. Without a prefix, the whole value.
 */
function tokenIn(value: string, prefix: string): string | null {
  if (prefix === '') return value;
  const at = value.indexOf(prefix);
  if (at < 0) return null;
  for (let i = at + prefix.length; i < value.length; i++) if (isJwtChar(value.charCodeAt(i))) return value.slice(i);
  return value;
}

const strings = (v: unknown): readonly string[] =>
  typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];

function toAuth(p: JWTPayload): RequestAuth {
  const iss = p.iss ?? '';
  const sub = p.sub ?? '';
  return Object.freeze({ principal: `${iss}/${sub}`, audiences: strings(p.aud), presenter: typeof p.azp === 'string' ? p.azp : '', claims: p });
}

export class JwtAuthenticator {
  readonly rules: readonly CompiledRule[];
  /** Every header a rule writes claims or the payload into: a caller's own copies are always dropped. */
  readonly outputHeaders: readonly string[];
  /** Every query parameter a rule reads a token from: credentials, redacted wherever the path is logged (access-log/redact-query.ts). */
  readonly tokenParams: ReadonlySet<string>;
  /** Verified tokens by location and token, least recently used first. */
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    rules: readonly JwtRule[],
    registry: JwksRegistry,
    private readonly clock: Clock,
    private readonly clockSkewSec: number = DEFAULT_CLOCK_SKEW_SEC,
    private readonly cacheSize = 100,
    /** A token dropped from the full cache: counted, as every limit is when it fires (a cache too small for the callers re-verifies every request). */
    private readonly onCacheEvict?: () => void,
  ) {
    this.rules = rules.map((rule) => {
      const implicit = rule.fromHeaders.length === 0 && rule.fromParams.length === 0;
      return Object.freeze({
        rule,
        keys: registry.sourceFor(rule),
        headers: implicit ? DEFAULT_HEADERS : rule.fromHeaders,
        params: implicit ? DEFAULT_PARAMS : rule.fromParams,
      });
    });
    const out = new Set<string>();
    for (const r of rules) {
      for (const c of r.outputClaimToHeaders) out.add(c.header);
      if (r.outputPayloadToHeader) out.add(r.outputPayloadToHeader);
    }
    this.outputHeaders = [...out];
    this.tokenParams = new Set(this.rules.flatMap((r) => r.params));
    // Start loading the verifier now, off the request path; a request that comes first waits for it (verifyFound).
    loadJose().catch(() => undefined);
  }

  /** The token a request carries (null: none), or why it carries an unusable one. */
  private extract(headers: Readonly<Record<string, string | readonly string[]>>, path: string): FoundToken | JwtDenyReason | null {
    let found: FoundToken | null = null;
    const hasQuery = path.includes('?');
    for (const r of this.rules) {
      for (const h of r.headers) {
        // Own fields only: a location named `constructor` must not find Object.prototype's member.
        const v = field(headers, h.name);
        if (v === undefined) continue;
        let token: string | null = null;
        if (typeof v === 'string') token = tokenIn(v, h.prefix);
        else {
          // A repeated header with a token in it: the proxy would verify one value and the
          // app might read another (an unverified `bearer ...` the prefix skipped).
          for (const one of v) if (tokenIn(one, h.prefix) !== null) return 'multiple-tokens';
        }
        if (token === null) continue;
        if (found && found.token !== token) return 'multiple-tokens';
        found ??= { token, header: h.name, param: null };
      }
      if (!hasQuery) continue;
      for (const p of r.params) {
        const token = queryParam(path, p);
        if (token === null) continue;
        if (token === MULTIPLE) return 'multiple-tokens';
        if (found && found.token !== token) return 'multiple-tokens';
        found ??= { token, header: null, param: p };
      }
    }
    return found;
  }

  async authenticate(headers: Readonly<Record<string, string | readonly string[]>>, path: string): Promise<AuthnResult> {
    const found = this.extract(headers, path);
    if (found === null) return NONE;
    if (typeof found === 'string') return denied(found);
    const key = this.cacheSize > 0 ? `${found.header ?? `?${found.param}`} ${found.token}` : '';
    if (key) {
      const hit = this.cache.get(key);
      if (hit) {
        // The wall clock, as verifyFound's currentDate: exp and nbf are times since the epoch, and
        // now() (monotonic, anchored at start) falls behind it when the system clock is stepped
        // ahead (a suspended VM, an NTP step), which kept an expired token passing from here.
        const now = this.clock.wallNow() / 1000;
        this.cache.delete(key);
        if ((hit.exp === undefined || now <= hit.exp + this.clockSkewSec) && (hit.nbf === undefined || now >= hit.nbf - this.clockSkewSec)) {
          this.cache.set(key, hit);
          return hit.ok;
        }
      }
    }
    const res = await this.verifyFound(found);
    if (key && res.kind === 'ok') {
      if (this.cache.size >= this.cacheSize) {
        this.cache.delete(this.cache.keys().next().value as string);
        this.onCacheEvict?.();
      }
      this.cache.set(key, { ok: res, exp: res.auth.claims.exp as number | undefined, nbf: res.auth.claims.nbf as number | undefined });
    }
    return res;
  }

  private async verifyFound(found: FoundToken): Promise<AuthnResult> {
    if (!COMPACT.test(found.token)) return denied('malformed');
    // Fail closed: no token is accepted before jose is loaded (a failed import throws: the request fails, 500).
    const jose = joseIfLoaded() ?? (await loadJose());
    let iss: string;
    try {
      iss = jose.decodeJwt(found.token).iss ?? '';
    } catch {
      return denied('malformed');
    }
    // Only rules of the token's issuer that read the location it came from (Envoy: the provider whose locations yielded it).
    let firstFailure: JwtDenyReason | null = null;
    for (const r of this.rules) {
      if (r.rule.issuer !== iss) continue;
      if (found.header !== null ? !r.headers.some((h) => h.name === found.header) : !r.params.includes(found.param as string)) continue;
      const res = await this.verifyWith(jose.jwtVerify, r, found.token);
      if (typeof res !== 'string') return { kind: 'ok', auth: toAuth(res.payload), rule: r, found };
      firstFailure ??= res;
    }
    return denied(firstFailure ?? 'unknown-issuer', firstFailure ? iss : '');
  }

  private async verifyWith(jwtVerify: JwtVerify, r: CompiledRule, token: string): Promise<JWTVerifyResult | JwtDenyReason> {
    const keys = await r.keys.current();
    if (keys === null) return 'jwks-unavailable';
    const first = await this.tryVerify(jwtVerify, token, keys, r.rule);
    if (first !== 'unknown-kid' || !r.keys.refreshable) return first;
    // The issuer may have rotated its keys since the last fetch: one early refetch, rate-limited.
    if (!(await r.keys.refetchForUnknownKid())) return first;
    const again = await r.keys.current();
    return again === null ? first : this.tryVerify(jwtVerify, token, again, r.rule);
  }

  private async tryVerify(jwtVerify: JwtVerify, token: string, keys: JWTVerifyGetKey, rule: JwtRule): Promise<JWTVerifyResult | JwtDenyReason> {
    const options = {
      issuer: rule.issuer,
      audience: rule.audiences.length > 0 ? [...rule.audiences] : undefined,
      algorithms: ALLOWED_ALGORITHMS as string[],
      clockTolerance: this.clockSkewSec,
      currentDate: new Date(this.clock.wallNow()),
    };
    try {
      return await jwtVerify(token, keys, options);
    } catch (e) {
      // No kid and several keys of the right type: try each (Envoy tries every key of the set).
      if ((e as { code?: string }).code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') {
        let last: JwtDenyReason = 'bad-signature';
        for await (const key of e as AsyncIterable<CryptoKey>) {
          try {
            return await jwtVerify(token, key, options);
          } catch (inner) {
            last = reasonOf(inner);
            if (last !== 'bad-signature') return last;
          }
        }
        return last;
      }
      return reasonOf(e);
    }
  }
}
