import type { RateLimitPolicy, TokenRate } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { TokenBucket } from './token-bucket.js';

/** Which bucket refused a request: the `scope` label of wren_rate_limited_total. */
export type RateLimitScope = 'total' | 'route' | 'identity' | 'override';

/** Why a request was refused; the layer turns it into a 429 with Retry-After. */
export interface RateLimitVerdict {
  readonly policy: string;
  readonly scope: RateLimitScope;
  /** Whole seconds until the refusing buckets have a token again (Retry-After, RFC 9110 section 10.2.3), at least 1. */
  readonly retryAfterSec: number;
}

export interface RateLimiterOptions {
  readonly clock: Clock;
  /** Per-identity buckets kept per policy (limits.rateLimitIdentityBuckets); beyond it the least recently used one goes. */
  readonly maxIdentityBuckets: number;
  /** A per-identity bucket was evicted to make room (wren_limit_exceeded_total{limit="rate-limit-identity-buckets"}). */
  readonly onEvict: () => void;
}

/** Unauthenticated callers (no client certificate) share one per-identity bucket. */
const UNAUTHENTICATED = '';

/**
 * One policy's buckets. Per-identity buckets live in a Map used as an LRU (a hit moves
 * the key to the end), bounded so that callers with ever new identities cannot grow it
 * without limit; an evicted caller comes back to a full bucket, which errs on letting
 * traffic through rather than on refusing it.
 */
class PolicyBuckets {
  readonly key: string;
  private readonly total: TokenBucket | null;
  private readonly routes: readonly { readonly pathPrefix: string; readonly method: string; readonly bucket: TokenBucket }[];
  private readonly overrides: ReadonlyMap<string, TokenBucket>;
  private readonly identities = new Map<string, TokenBucket>();
  private readonly ports: ReadonlySet<number>;
  /** Scratch list of the buckets a request needs (reused: no per-request array). */
  private readonly need: TokenBucket[] = [];
  private readonly needScope: RateLimitScope[] = [];

  constructor(readonly policy: RateLimitPolicy, private readonly o: RateLimiterOptions) {
    const now = o.clock.now();
    this.key = JSON.stringify(policy);
    this.ports = new Set(policy.ports);
    this.total = policy.total ? new TokenBucket(policy.total, now) : null;
    this.routes = policy.routes.map((r) => ({ pathPrefix: r.match.pathPrefix, method: r.match.method, bucket: new TokenBucket(r, now) }));
    const overrides = new Map<string, TokenBucket>();
    for (const ov of policy.overrides) {
      const shared = new TokenBucket(ov, now);
      for (const c of ov.clients) overrides.set(c, shared);
    }
    this.overrides = overrides;
  }

  /**
   * null: every bucket that applies has a token (none taken yet: `take()` takes them once
   * every policy admits); else why not. The buckets stay in `need` until the next check.
   */
  check(port: number, identity: string, method: string, path: string, now: number): RateLimitVerdict | null {
    const need = this.need;
    const scopes = this.needScope;
    need.length = 0;
    scopes.length = 0;
    if (this.ports.size > 0 && !this.ports.has(port)) return null;
    const route = this.routeFor(method, path);
    if (route) {
      need.push(route);
      scopes.push('route');
    } else if (this.total) {
      need.push(this.total);
      scopes.push('total');
    }
    const ov = this.overrides.get(identity);
    if (ov) {
      need.push(ov);
      scopes.push('override');
    } else if (this.policy.identity) {
      need.push(this.identityBucket(identity, this.policy.identity, now));
      scopes.push('identity');
    }
    let refused = -1;
    let waitMs = 0;
    for (let i = 0; i < need.length; i++) {
      if (need[i]!.available(now) >= 1) continue;
      // The caller's own bucket names the refusal first: it says whose traffic is too much.
      if (refused < 0 || scopes[i] === 'identity' || scopes[i] === 'override') refused = i;
      waitMs = Math.max(waitMs, need[i]!.waitMs(now));
    }
    if (refused < 0) return null;
    return { policy: this.policy.name, scope: scopes[refused]!, retryAfterSec: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  /** Takes one token from each bucket the last admitting check() found. */
  take(): void {
    for (const b of this.need) b.take();
  }

  private routeFor(method: string, path: string): TokenBucket | null {
    for (const r of this.routes) if ((r.method === '' || r.method === method) && path.startsWith(r.pathPrefix)) return r.bucket;
    return null;
  }

  private identityBucket(identity: string, rate: TokenRate, now: number): TokenBucket {
    const key = identity || UNAUTHENTICATED;
    let b = this.identities.get(key);
    if (b) {
      this.identities.delete(key);
    } else {
      b = new TokenBucket(rate, now);
      if (this.identities.size >= this.o.maxIdentityBuckets) {
        this.identities.delete(this.identities.keys().next().value!);
        this.o.onEvict();
      }
    }
    this.identities.set(key, b);
    return b;
  }
}

/**
 * The workload's rate limits (InboundPolicy.rateLimits), checked per inbound HTTP request
 * by the rate-limit layer. `update` swaps the policies in when the control plane pushes
 * a new inbound policy and keeps the buckets of every policy that did not change, so a
 * push (of an authorization change, say) does not refill them.
 */
export class RateLimiter {
  private policies: readonly PolicyBuckets[] = [];

  constructor(private readonly o: RateLimiterOptions, policies: readonly RateLimitPolicy[] = []) {
    this.update(policies);
  }

  get active(): boolean {
    return this.policies.length > 0;
  }

  update(policies: readonly RateLimitPolicy[]): void {
    const before = new Map(this.policies.map((p) => [p.key, p]));
    this.policies = policies.map((p) => before.get(JSON.stringify(p)) ?? new PolicyBuckets(p, this.o));
  }

  /**
   * null: admitted by every policy, and only then a token is taken from each bucket that
   * applies. A request one policy refuses takes no token from any policy: otherwise a
   * caller refused by its per-identity limit would drain another policy's `total` and
   * starve every other caller (Envoy's local rate limit: a request limited by one
   * descriptor does not consume the others' tokens, envoyproxy/envoy#20869, #25139). The
   * first refusing policy (by namespace/name) names the refusal.
   */
  check(port: number, identity: string, method: string, path: string): RateLimitVerdict | null {
    const now = this.o.clock.now();
    const policies = this.policies;
    for (const p of policies) {
      const v = p.check(port, identity, method, path, now);
      if (v) return v;
    }
    for (const p of policies) p.take();
    return null;
  }
}
