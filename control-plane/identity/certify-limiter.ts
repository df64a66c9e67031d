import { createHash } from 'node:crypto';
import type { Principal } from './authenticator.js';

/**
 * How many signatures one workload may get at once, and how fast that allowance comes back
 * (a token bucket per key, below). Signing is CPU work on the control plane's one event loop
 * (CSR check, a signature with the CA's key, a certificate encoded): a proxy renewing by its
 * own certificate (no token check in between) got about 390 signatures a second, and every
 * other pod's Certify and discovery push waited behind them (adv21).
 *
 * A sidecar signs once at startup and then once per ~70% of the lifetime (renewal-schedule.ts),
 * plus an early renewal when the trust state changes (trust-sync.ts) and one per restart of
 * its container. A burst of 5 covers startup with a few restarts or rotations close together;
 * the refill, a quarter of the certificate lifetime (--cert-ttl) but at most a minute, is
 * more than twice the fastest steady renewal. Istio's CA and Linkerd's identity service
 * bound nothing per caller (istiod only bounds new xDS connections per second,
 * PILOT_MAX_REQUESTS_PER_SECOND); Envoy's local rate limit is this same token bucket.
 */
export const CERTIFY_BURST = 5;
export const MAX_CERTIFY_REFILL_MS = 60_000;

/**
 * Lineages kept at most (about 150 bytes each): a certificate's lineage lives until its notAfter
 * (24 h by default), and calls with a bootstrap token, which are not limited, each add one, so
 * without a bound a token holder could grow the map for a day. A mesh keeps ~1.4 per pod (a
 * certificate and the one that renewed it). Past it the oldest are dropped: such a
 * certificate's renewals are charged to its serial (a bucket of its own).
 */
export const MAX_LINEAGES = 100_000;

/** One signature back per this long, for certificates of `certTtlMs` (the control plane's lifetime; a shorter requested one does not speed it up). */
export function certifyRefillMs(certTtlMs: number): number {
  return Math.max(1, Math.min(MAX_CERTIFY_REFILL_MS, Math.floor(certTtlMs / 4)));
}

interface Bucket {
  tokens: number;
  /** Monotonic ms at which `tokens` was computed. */
  at: number;
  /** Refused since its last signature: the refusal was already logged. */
  refused: boolean;
}

/** A refusal: when the next signature is free, and whether it is the key's first since its last signature (the one worth a log line). */
export interface CertifyRefusal {
  readonly retryAfterMs: number;
  readonly first: boolean;
}

interface Lineage {
  readonly key: string;
  /** Wall-clock ms: the certificate's notAfter, after which it renews nothing. */
  readonly until: number;
}

export interface CertifyLimiterOptions {
  readonly burst?: number;
  readonly refillMs: number;
  /** Default MAX_LINEAGES. */
  readonly maxLineages?: number;
  /** Monotonic ms (Clock.now). */
  readonly now: () => number;
  /** Wall-clock ms (Clock.wallNow), for certificates' notAfter. */
  readonly wallNow: () => number;
}

/** TLS reports serials in upper case, the CA writes lower case, either may keep a leading zero. */
const normalSerial = (s: string): string => s.toLowerCase().replace(/^0+/, '');

/**
 * The token buckets, one per key a call is charged to (keyOf):
 * - a token bound to a pod (TokenReview's authentication.kubernetes.io/pod-name): the pod,
 *   which is also what the discovery server bounds streams by (MAX_STREAMS_PER_POD);
 * - another TokenReview token (a cluster whose TokenReview names no pod): that token, a
 *   pod's own projected token;
 * - a bootstrap token (Principal.shared: one secret a fleet of VMs may share, so it does not
 *   tell one sidecar from another): not charged as a whole, each certificate it gets starts a
 *   chain of its own (a call with it is bounded by the token check only, as before);
 * - a renewal by client certificate: whatever the certificate it presents was charged to. A
 *   certificate's serial names no pod, and keyed by serial every renewal would start a full
 *   bucket of its own (renew, then renew with the new certificate...), so each certificate
 *   issued here inherits its caller's key until its notAfter (`issued`). A certificate this
 *   process did not issue (another replica, before a restart) is its own key.
 * Full buckets are dropped (a full bucket and no bucket are the same), and so are lineages of
 * expired certificates, so both maps stay within the workloads that certified lately.
 */
export class CertifyLimiter {
  private readonly burst: number;
  private readonly buckets = new Map<string, Bucket>();
  private readonly lineage = new Map<string, Lineage>();
  private nextSweep = 0;
  private chains = 0;

  constructor(private readonly o: CertifyLimiterOptions) {
    this.burst = o.burst ?? CERTIFY_BURST;
  }

  /** The key a call is charged to: `renewedSerial` is the serial of the client certificate it renews by, or null for a token. */
  keyOf(principal: Principal, renewedSerial: string | null, token: Buffer): string {
    if (renewedSerial !== null) {
      const serial = normalSerial(renewedSerial);
      const l = this.lineage.get(serial);
      return l && l.until > this.o.wallNow() ? l.key : `certificate ${principal.namespace}/${principal.serviceAccount} serial ${serial}`;
    }
    if (principal.pod) return `pod ${principal.namespace}/${principal.pod}`;
    if (principal.shared) return `chain ${principal.namespace}/${principal.serviceAccount} #${++this.chains}`;
    return `token ${principal.namespace}/${principal.serviceAccount} ${createHash('sha256').update(token).digest('hex').slice(0, 32)}`;
  }

  /** Takes one signature from `key`'s bucket: null when there was one, else the refusal. */
  take(key: string): CertifyRefusal | null {
    const now = this.o.now();
    this.sweep(now);
    const b = this.buckets.get(key);
    const tokens = b ? Math.min(this.burst, b.tokens + (now - b.at) / this.o.refillMs) : this.burst;
    if (tokens < 1) {
      const first = !b!.refused;
      b!.tokens = tokens;
      b!.at = now;
      b!.refused = true;
      return { retryAfterMs: Math.ceil((1 - tokens) * this.o.refillMs), first };
    }
    if (b) {
      b.tokens = tokens - 1;
      b.at = now;
      b.refused = false;
    } else this.buckets.set(key, { tokens: tokens - 1, at: now, refused: false });
    return null;
  }

  /** A certificate with `serial`, valid until `notAfterMs` (wall clock), was issued to a call charged to `key`: its renewals are charged there too. */
  issued(serial: string, key: string, notAfterMs: number): void {
    // Oldest first (insertion order): the one closest to expiry, or already renewed.
    if (this.lineage.size >= (this.o.maxLineages ?? MAX_LINEAGES)) this.lineage.delete(this.lineage.keys().next().value!);
    this.lineage.set(normalSerial(serial), { key, until: notAfterMs });
  }

  /** How many buckets (not full) and lineages (certificates not expired) are kept. */
  get size(): { readonly buckets: number; readonly lineages: number } {
    return { buckets: this.buckets.size, lineages: this.lineage.size };
  }

  /** At most once per refill interval (at least a second): drop full buckets and lineages of expired certificates. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + Math.max(1000, this.o.refillMs);
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) / this.o.refillMs >= this.burst) this.buckets.delete(k);
    const wall = this.o.wallNow();
    for (const [s, l] of this.lineage) if (l.until <= wall) this.lineage.delete(s);
  }
}
