import type { RateLimitPolicy, TokenRate } from '../../contract/model.js';
import type { Clock } from '../../common/clock.js';
import { sharedKey } from '../workers/shared-key.js';
import { bucketMemory, bucketRate, SharedBuckets, type BucketMemory, type BucketRate } from './shared-buckets.js';

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
  /** Per-identity buckets kept (limits.rateLimitIdentityBuckets, all policies together); beyond it the least recently used one goes. */
  readonly maxIdentityBuckets: number;
  /** A per-identity bucket was evicted to make room (wren_limit_exceeded_total{limit="rate-limit-identity-buckets"}). */
  readonly onEvict: () => void;
  /** The table the listener workers share (concurrency > 1, made by the main thread); else a private one. */
  readonly shared?: BucketMemory;
}

/** Unauthenticated callers (no client certificate) share one per-identity bucket. */
const UNAUTHENTICATED = '';

/** A fixed bucket of a policy (total, a route's, an override's): its key, and the slot it was last found in. */
interface FixedBucket {
  readonly key: bigint;
  slot: number;
  readonly rate: BucketRate;
}

/**
 * One policy's buckets, in the table every listener worker shares (shared-buckets.ts).
 * Fixed buckets are keyed by the policy's content and their name, per-identity ones by
 * the policy and the caller, so every worker finds the same slot, and a changed policy
 * (new content) starts with full buckets while an unchanged one keeps its tokens.
 */
class PolicyBuckets {
  readonly key: string;
  private readonly keyBits: bigint;
  private readonly total: FixedBucket | null;
  private readonly routes: readonly { readonly pathPrefix: string; readonly method: string; readonly bucket: FixedBucket }[];
  private readonly overrides: ReadonlyMap<string, FixedBucket>;
  private readonly identityRate: BucketRate | null;
  private readonly ports: ReadonlySet<number>;
  /** Scratch lists of the buckets a request needs (reused: no per-request array). */
  private readonly needSlot: number[] = [];
  private readonly needRate: BucketRate[] = [];
  private readonly needScope: RateLimitScope[] = [];
  /** How many of `need` take() took (refund() gives them back). */
  private taken = 0;
  /** Callers' bucket keys, this thread's memo (identitySlot). */
  private readonly identityKeys = new Map<string, bigint>();

  constructor(
    readonly policy: RateLimitPolicy,
    private readonly table: SharedBuckets,
    private readonly maxIdentityKeys: number,
  ) {
    this.key = JSON.stringify(policy);
    this.keyBits = sharedKey(this.key) & ~1n;
    this.ports = new Set(policy.ports);
    const fixed = (name: string, rate: TokenRate): FixedBucket => {
      const key = sharedKey(`${this.key}\n${name}`);
      return { key, slot: table.slot(key, false), rate: bucketRate(rate) };
    };
    this.total = policy.total ? fixed('total', policy.total) : null;
    this.routes = policy.routes.map((r, i) => ({ pathPrefix: r.match.pathPrefix, method: r.match.method, bucket: fixed(`route ${i}`, r) }));
    const overrides = new Map<string, FixedBucket>();
    policy.overrides.forEach((ov, i) => {
      const shared = fixed(`override ${i}`, ov);
      for (const c of ov.clients) overrides.set(c, shared);
    });
    this.overrides = overrides;
    this.identityRate = policy.identity ? bucketRate(policy.identity) : null;
  }

  /**
   * null: every bucket that applies has a token (none taken yet: `take()` takes them once
   * every policy admits); else why not. The buckets stay in `need` until the next check.
   */
  check(port: number, identity: string, method: string, path: string, now: number): RateLimitVerdict | null {
    this.needSlot.length = 0;
    this.needRate.length = 0;
    this.needScope.length = 0;
    this.taken = 0;
    if (this.ports.size > 0 && !this.ports.has(port)) return null;
    const route = this.routeFor(method, path);
    if (route) this.need(this.fixedSlot(route), route.rate, 'route');
    else if (this.total) this.need(this.fixedSlot(this.total), this.total.rate, 'total');
    const ov = this.overrides.get(identity);
    if (ov) this.need(this.fixedSlot(ov), ov.rate, 'override');
    else if (this.identityRate) this.need(this.identitySlot(identity), this.identityRate, 'identity');
    let refused = -1;
    let waitMs = 0;
    const scopes = this.needScope;
    for (let i = 0; i < scopes.length; i++) {
      if (this.table.available(this.needSlot[i]!, this.needRate[i]!, now) >= 1) continue;
      // The caller's own bucket names the refusal first: it says whose traffic is too much.
      if (refused < 0 || scopes[i] === 'identity' || scopes[i] === 'override') refused = i;
      waitMs = Math.max(waitMs, this.table.waitMs(this.needSlot[i]!, this.needRate[i]!, now));
    }
    if (refused < 0) return null;
    return this.verdict(scopes[refused]!, waitMs);
  }

  /**
   * Takes one token from each bucket the last admitting check() found: null, or the
   * refusal if another thread emptied one since (what it took stays taken until refund()).
   */
  take(now: number): RateLimitVerdict | null {
    for (let i = 0; i < this.needSlot.length; i++) {
      if (!this.table.tryTake(this.needSlot[i]!, this.needRate[i]!, now)) return this.verdict(this.needScope[i]!, this.table.waitMs(this.needSlot[i]!, this.needRate[i]!, now));
      this.taken = i + 1;
    }
    return null;
  }

  /** Gives back what the last take() took (a later bucket or policy refused the request). */
  refund(): void {
    for (let i = 0; i < this.taken; i++) this.table.refund(this.needSlot[i]!, this.needRate[i]!);
    this.taken = 0;
  }

  /** Frees this policy's slots: its fixed buckets and the callers' buckets this thread knows. */
  release(): void {
    const fixed = new Set<FixedBucket>([...(this.total ? [this.total] : []), ...this.routes.map((r) => r.bucket), ...this.overrides.values()]);
    for (const b of fixed) this.table.free(b.key);
    for (const key of this.identityKeys.values()) this.table.free(key);
    this.identityKeys.clear();
  }

  private verdict(scope: RateLimitScope, waitMs: number): RateLimitVerdict {
    return { policy: this.policy.name, scope, retryAfterSec: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  private need(slot: number, rate: BucketRate, scope: RateLimitScope): void {
    this.needSlot.push(slot);
    this.needRate.push(rate);
    this.needScope.push(scope);
  }

  private fixedSlot(b: FixedBucket): number {
    if (!this.table.holds(b.slot, b.key)) b.slot = this.table.slot(b.key, false);
    return b.slot;
  }

  private routeFor(method: string, path: string): FixedBucket | null {
    for (const r of this.routes) if ((r.method === '' || r.method === method) && path.startsWith(r.pathPrefix)) return r.bucket;
    return null;
  }

  private identitySlot(identity: string): number {
    const id = identity || UNAUTHENTICATED;
    let key = this.identityKeys.get(id);
    if (key === undefined) {
      // Hashing a SPIFFE ID into a 64-bit key costs more than the bucket: callers' keys are
      // remembered, up to the table's bound (then forgotten at once and hashed again).
      if (this.identityKeys.size >= this.maxIdentityKeys) this.identityKeys.clear();
      key = sharedKey(id, 1) ^ this.keyBits;
      if (key === 1n) key = 3n; // 1n marks an evicted slot (shared-buckets.ts)
      this.identityKeys.set(id, key);
    }
    return this.table.slot(key, true);
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
  private table: SharedBuckets | null = null;

  constructor(private readonly o: RateLimiterOptions, policies: readonly RateLimitPolicy[] = []) {
    this.update(policies);
  }

  get active(): boolean {
    return this.policies.length > 0;
  }

  update(policies: readonly RateLimitPolicy[]): void {
    const before = new Map(this.policies.map((p) => [p.key, p]));
    let next: PolicyBuckets[] = [];
    if (policies.length > 0) {
      // Made at the first policy: a sidecar without RateLimitPolicies holds no table (with workers, the main thread made it).
      const table = (this.table ??= new SharedBuckets(this.o.shared ?? bucketMemory(this.o.maxIdentityBuckets, this.o.clock, false), this.o.clock, this.o.maxIdentityBuckets, this.o.onEvict));
      next = policies.map((p) => before.get(JSON.stringify(p)) ?? new PolicyBuckets(p, table, this.o.maxIdentityBuckets));
    }
    // A dropped (or changed) policy's buckets free their slots, so pushes do not fill the
    // table: a worker still on the old policy finds its buckets gone and starts full ones.
    for (const p of this.policies) if (!next.includes(p)) p.release();
    this.policies = next;
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
    const policies = this.policies;
    if (policies.length === 0) return null;
    const now = this.table!.nowNs();
    for (const p of policies) {
      const v = p.check(port, identity, method, path, now);
      if (v) return v;
    }
    // Every bucket had a token when looked at; another worker may have taken the last one
    // since: then the request is refused and what it took is given back.
    for (let i = 0; i < policies.length; i++) {
      const v = policies[i]!.take(now);
      if (v === null) continue;
      for (let j = 0; j <= i; j++) policies[j]!.refund();
      return v;
    }
    return null;
  }
}
