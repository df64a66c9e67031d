import { createHash } from 'node:crypto';
import { presentedToken, type Principal } from './authenticator.js';

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
 * The bucket of one bootstrap token (Principal.shared), which a fleet of VMs may share, and of
 * one service account's TokenReview tokens bound to no pod (keyOf): 20
 * VMs booting together are served at once, and one more per second after them (a scale-out
 * of 200 in about three minutes), the fleet's renewals included. A holder of the secret,
 * however many calls it makes, gets no more: a signature takes ~2.5 ms (adv21: ~390 a
 * second saturated the event loop), so one a second is under 1 % of it. Not the workload
 * bucket's minute: a fleet sharing a token at that pace would boot 5 VMs, then one a minute.
 * With certificates shorter than 4 s (--cert-ttl), the workload refill, if faster.
 */
export const BOOTSTRAP_TOKEN_BURST = 20;
export const BOOTSTRAP_TOKEN_REFILL_MS = 1000;

/**
 * Lineages kept at most (about 150 bytes each): a certificate's lineage lives until its notAfter
 * (24 h by default), one per signature, so the map holds what the buckets let through in a
 * lifetime. A mesh keeps ~1.4 per pod (a certificate and the one that renewed it). Past it the
 * oldest are dropped: such a certificate's renewals are charged to its serial (a bucket of
 * its own).
 */
export const MAX_LINEAGES = 100_000;

/** One signature back per this long, for certificates of `certTtlMs` (the control plane's lifetime; a shorter requested one does not speed it up). */
export function certifyRefillMs(certTtlMs: number): number {
  return Math.max(1, Math.min(MAX_CERTIFY_REFILL_MS, Math.floor(certTtlMs / 4)));
}

/** A token bucket's size and the time one signature takes to come back. */
export interface CertifyRate {
  readonly burst: number;
  readonly refillMs: number;
}

interface Bucket {
  readonly rate: CertifyRate;
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
  /** A bootstrap token's bucket: default BOOTSTRAP_TOKEN_BURST, and BOOTSTRAP_TOKEN_REFILL_MS or `refillMs` if that is shorter. */
  readonly sharedToken?: Partial<CertifyRate>;
  /** Default MAX_LINEAGES. */
  readonly maxLineages?: number;
  /** Called when a lineage is dropped for MAX_LINEAGES (wren_identity_certify_lineages_dropped_total): its certificate renews from a bucket of its own. */
  readonly onLineageDropped?: () => void;
  /** Monotonic ms (Clock.now). */
  readonly now: () => number;
  /** Wall-clock ms (Clock.wallNow), for certificates' notAfter. */
  readonly wallNow: () => number;
}

/** TLS reports serials in upper case, the CA writes lower case, either may keep a leading zero. */
const normalSerial = (s: string): string => s.toLowerCase().replace(/^0+/, '');

/** The keys of bootstrap tokens' buckets begin so (and no other's: see keyOf). */
const SHARED = 'bootstrap-token ';
/** The keys of service accounts' buckets (TokenReview tokens bound to no pod) begin so; they take the fleet rate too. */
const SERVICE_ACCOUNT = 'service-account ';

/**
 * The token buckets, one per key a call is charged to (keyOf):
 * - a token bound to a pod (TokenReview's authentication.kubernetes.io/pod-name): the pod,
 *   which is also what the discovery server bounds streams by (MAX_STREAMS_PER_POD);
 * - another TokenReview token (bound to no pod: a legacy Secret token, or one from the
 *   TokenRequest API without a bound object, `kubectl create token SA`): its service
 *   account, in a bucket sized for a fleet as a bootstrap token's. Keyed by the token, as it
 *   was, every new token came with a full bucket, and whoever may create tokens for the
 *   service account (or holds its Secret token and the TokenRequest right) mints them at
 *   will: the limit held nothing. A sidecar's own projected token is bound to its pod (the
 *   previous case), so a mesh's sidecars never share this bucket;
 * - a bootstrap token (Principal.shared: one secret a fleet of VMs may share, so it does not
 *   tell one sidecar from another): that token, in a bucket sized for a fleet
 *   (BOOTSTRAP_TOKEN_BURST), every certificate it gets and their renewals included, so a
 *   holder of the secret gets no more than the fleet's allowance however it calls;
 * - a token is keyed as the authenticators check it (presentedToken: a trailing newline or a
 *   leading space is the same token, not a full bucket of its own), and by the identity the
 *   token proves, not the one asked for (another is refused before the limit, signing nothing);
 * - a renewal by client certificate: whatever the certificate it presents was charged to. A
 *   certificate's serial names no pod, and keyed by serial every renewal would start a full
 *   bucket of its own (renew, then renew with the new certificate...), so each certificate
 *   issued here inherits its caller's key until its notAfter (`issued`). A certificate this
 *   process did not issue (another replica, before a restart) is its own key.
 * Full buckets are dropped (a full bucket and no bucket are the same), and so are lineages of
 * expired certificates, so both maps stay within the workloads that certified lately. A call
 * is charged only once its token has proved the identity asked for: a token that proves
 * nothing (unknown, expired, another identity) makes no bucket, so many bad tokens grow
 * nothing here.
 */
export class CertifyLimiter {
  private readonly workload: CertifyRate;
  private readonly shared: CertifyRate;
  private readonly buckets = new Map<string, Bucket>();
  private readonly lineage = new Map<string, Lineage>();
  private nextSweep = 0;

  constructor(private readonly o: CertifyLimiterOptions) {
    this.workload = { burst: o.burst ?? CERTIFY_BURST, refillMs: o.refillMs };
    this.shared = { burst: o.sharedToken?.burst ?? BOOTSTRAP_TOKEN_BURST, refillMs: o.sharedToken?.refillMs ?? Math.min(BOOTSTRAP_TOKEN_REFILL_MS, o.refillMs) };
  }

  /** The key a call is charged to: `renewedSerial` is the serial of the client certificate it renews by, or null for a token. */
  keyOf(principal: Principal, renewedSerial: string | null, token: Buffer): string {
    if (renewedSerial !== null) {
      const serial = normalSerial(renewedSerial);
      const l = this.lineage.get(serial);
      return l && l.until > this.o.wallNow() ? l.key : `certificate ${principal.namespace}/${principal.serviceAccount} serial ${serial}`;
    }
    if (principal.pod) return `pod ${principal.namespace}/${principal.pod}`;
    if (!principal.shared) return `${SERVICE_ACCOUNT}${principal.namespace}/${principal.serviceAccount}`;
    const digest = createHash('sha256').update(presentedToken(token)).digest('hex').slice(0, 32);
    return `${SHARED}${principal.namespace}/${principal.serviceAccount} ${digest}`;
  }

  /** Takes one signature from `key`'s bucket: null when there was one, else the refusal. */
  take(key: string): CertifyRefusal | null {
    const now = this.o.now();
    this.sweep(now);
    const b = this.buckets.get(key);
    const rate = b ? b.rate : key.startsWith(SHARED) || key.startsWith(SERVICE_ACCOUNT) ? this.shared : this.workload;
    const tokens = b ? Math.min(rate.burst, b.tokens + (now - b.at) / rate.refillMs) : rate.burst;
    if (tokens < 1) {
      const first = !b!.refused;
      b!.tokens = tokens;
      b!.at = now;
      b!.refused = true;
      return { retryAfterMs: Math.ceil((1 - tokens) * rate.refillMs), first };
    }
    if (b) {
      b.tokens = tokens - 1;
      b.at = now;
      b.refused = false;
    } else this.buckets.set(key, { rate, tokens: tokens - 1, at: now, refused: false });
    return null;
  }

  /** A certificate with `serial`, valid until `notAfterMs` (wall clock), was issued to a call charged to `key`: its renewals are charged there too. */
  issued(serial: string, key: string, notAfterMs: number): void {
    // Oldest first (insertion order): the one closest to expiry, or already renewed.
    // Counted: a dropped lineage is a certificate whose renewals get a full bucket of their own,
    // which a flood of signatures (a fleet's bucket, many pods) could aim at (adv29).
    if (this.lineage.size >= (this.o.maxLineages ?? MAX_LINEAGES)) {
      this.lineage.delete(this.lineage.keys().next().value!);
      this.o.onLineageDropped?.();
    }
    this.lineage.set(normalSerial(serial), { key, until: notAfterMs });
  }

  /** How many buckets (not full) and lineages (certificates not expired) are kept. */
  get size(): { readonly buckets: number; readonly lineages: number } {
    return { buckets: this.buckets.size, lineages: this.lineage.size };
  }

  /** At most once per refill interval (at least a second): drop full buckets and lineages of expired certificates. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + Math.max(1000, this.workload.refillMs);
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) / b.rate.refillMs >= b.rate.burst) this.buckets.delete(k);
    const wall = this.o.wallNow();
    for (const [s, l] of this.lineage) if (l.until <= wall) this.lineage.delete(s);
  }
}
