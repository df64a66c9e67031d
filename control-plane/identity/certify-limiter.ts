import { createHash } from 'node:crypto';
import { CLOCK_SKEW_MS } from '../../certs/ca.js';
import { presentedToken, type Principal } from './authenticator.js';
import { bootstrapTokenIdSync } from './bootstrap-token-id.js';

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

/**
 * What a certificate carries of the limit (the CERTIFY_STATE_OID extension, certs/x509.ts), as the
 * replica that signed it left it: the key its signature was charged to, the signatures left in
 * that bucket after it, and when (wall-clock ms). Signed by the CA, so any replica sharing the CA
 * may believe it.
 */
export interface CarriedState {
  readonly key: string;
  readonly tokens: number;
  readonly atWallMs: number;
}

/** Begins the extension's text, which `openssl x509 -text` shows as the certificate's "Netscape Comment". */
const STATE_PREFIX = 'wren certify-limit v1 ';

/**
 * The extension's text: `wren certify-limit v1 <tokens left> <wall ms> <key>` (the key last: it
 * has spaces). Both rounded so that the next replica is owed no more than the bucket had: what
 * is left down to the thousandth (toFixed(3) rounded 0.9996 up to `1.000`, a whole signature
 * the bucket did not have, and each hop between replicas could round up again), the time up
 * to the millisecond (an earlier time would be refill not yet earned: with a 1 ms refill, most
 * of a signature).
 */
export function encodeCertifyState(s: CarriedState): string {
  const left = Math.floor(Math.max(0, s.tokens) * 1000) / 1000;
  return `${STATE_PREFIX}${left.toFixed(3)} ${Math.ceil(s.atWallMs)} ${s.key}`;
}

/** The longest key a certificate carries (and parseCertifyState reads back); keyOf digests a longer one. */
const MAX_KEY_LENGTH = 600;
/** A key parseCertifyState reads back: its kind, a space, then printable ASCII (what the CA writes into an IA5String). */
const KEY = /^(?:pod|service-account|bootstrap-token|certificate) [\x21-\x7e][\x20-\x7e]*$/;

/** null for text this limiter did not write (the certificate is then keyed by its serial). */
export function parseCertifyState(text: string | undefined): CarriedState | null {
  const m = text?.startsWith(STATE_PREFIX) ? /^(\d{1,9}(?:\.\d{1,3})?) (\d{1,15}) (.+)$/.exec(text.slice(STATE_PREFIX.length)) : null;
  return m && m[3].length <= MAX_KEY_LENGTH && KEY.test(m[3]) ? { tokens: Number(m[1]), atWallMs: Number(m[2]), key: m[3] } : null;
}

/**
 * The pod instance a certificate was signed for, as its Certify limit key says (`pod NS/SA
 * DIGEST`, or `pod NS/NAME` from before the key was a digest), or null when it names no pod
 * (a bootstrap token's, a service account's, a certificate's serial, no state). Signed by the
 * CA, so unlike a Subscribe's pod name it is not the holder's to choose: the discovery server
 * bounds streams by it (MAX_STREAMS_PER_POD).
 */
export function certifiedPod(certifyStateText: string | null | undefined): string | null {
  const key = parseCertifyState(certifyStateText ?? undefined)?.key;
  return key?.startsWith(POD) ? key : null;
}

/**
 * The fleet a certificate was signed for, as its Certify limit key says: a bootstrap token
 * (`bootstrap-token NS/SA DIGEST`) or a service account's TokenReview tokens bound to no pod
 * (`service-account NS/SA`), the keys that share the fleet's bucket; null for any other (a
 * pod's, a certificate's serial, no state). One such token gets a certificate per Certify, for
 * any number of callers: the discovery server bounds their streams together
 * (DEFAULT_MAX_STREAMS_PER_FLEET), not 8 per certificate.
 */
export function certifiedFleet(certifyStateText: string | null | undefined): string | null {
  const key = parseCertifyState(certifyStateText ?? undefined)?.key;
  return key !== undefined && (key.startsWith(SHARED) || key.startsWith(SERVICE_ACCOUNT)) ? key : null;
}

/**
 * `pod NS/SA DIGEST`, 128 bits of a digest of the pod instance: its namespace, name and UID
 * (TokenReview's authentication.kubernetes.io/pod-uid). The UID, not the name alone: a
 * StatefulSet's pod deleted and created again has the same name and namespace, and keyed by
 * them the new pod started from its predecessor's bucket (refused at start if the old one
 * had spent it), while a new pod of a Deployment (a new name) started full. A UID is another
 * pod, with a full bucket; the same pod's every token names the same UID, so it cannot start
 * over. A plain SHA-256, not the CA's keyed digest: the UID is random (122 bits), so the
 * digest lets no peer reading the certificate test guesses of the pod's name, and it is the
 * same under every CA, so a rotated issuer (another HMAC key) does not give the pod's token
 * a key apart from the one its certificates, signed before, carry: two buckets, one budget
 * more. Without a UID (an API server that reports only the name) a plain SHA-256 of the
 * namespace and name too: it was the CA's keyed digest, so a rotated issuer split such a pod's
 * budget as it had split every pod's (until 2026-12-07, adv59). Such a key lets a peer confirm
 * a guess of the pod's name, which its hostname and anyone who may list pods know anyway;
 * TokenReview names the UID with the pod wherever it names the pod (Kubernetes 1.21+ bound
 * tokens), so this is the rare case.
 */
function podKey(namespace: string, serviceAccount: string, pod: string, uid: string | undefined): string {
  const digest = createHash('sha256').update(uid ? `${POD}${namespace}/${pod} uid ${uid}` : `${POD}${namespace}/${pod}`).digest('hex');
  return `${POD}${namespace}/${serviceAccount} ${digest.slice(0, 32)}`;
}

/** The key a certificate bound to the pod `namespace/pod` (with `uid`, when its token named one) carries: podKey, as carriable. */
function podInstanceKey(namespace: string, serviceAccount: string, pod: string, uid: string | undefined): string {
  return carriable(podKey(namespace, serviceAccount, pod, uid));
}

/** A no-UID pod's key as certificates signed before 2026-12-07 (adv59) carry it: the signing CA's keyed digest of the name. */
function legacyPodKey(namespace: string, serviceAccount: string, pod: string, keyedDigest: (data: string) => string): string {
  return carriable(`${POD}${namespace}/${serviceAccount} ${keyedDigest(`${POD}${namespace}/${pod}`).slice(0, 32)}`);
}

/**
 * Whether `certified` (certifiedPod of a certificate) is the key of the pod `namespace/pod`
 * of `serviceAccount`: the instance with `uid` (the pod's metadata.uid as the source knows
 * it), or the name alone, for a certificate whose token named no UID (an API server that
 * reports only the pod's name), or the name as certificates signed before 2026-12-07
 * carry it (in the clear, or the current CA's keyed digest of it: `keyedDigest`). What the discovery server checks a Subscribe's pod against
 * (client-auth.ts checkPodClaim): a Subscribe names a pod, but only the certificate's key,
 * signed by the CA, says which pod holds the key.
 */
export function isCertifiedPod(certified: string, namespace: string, serviceAccount: string, pod: string, uid: string | undefined, keyedDigest: (data: string) => string): boolean {
  const clear = CLEAR_POD_KEY.exec(certified);
  if (clear) return clear[1] === namespace && clear[2] === pod;
  if (uid && certified === podInstanceKey(namespace, serviceAccount, pod, uid)) return true;
  return certified === podInstanceKey(namespace, serviceAccount, pod, undefined) || certified === legacyPodKey(namespace, serviceAccount, pod, keyedDigest);
}

/**
 * A key every certificate signed for it can carry: one too long (a bootstrap token's
 * namespace and service account are bounded only by the SPIFFE ID's 2048 bytes, so its key
 * could be ~2,100 characters) or not printable ASCII is its kind and a SHA-256 of it. Such a
 * key was written whole (or, past the CA's 1000 characters, not at all), read back as no
 * state, and every renewal was keyed by its certificate's serial: a full bucket for each new
 * certificate, no limit (adv47). Nothing in the key is secret (a token is already its
 * scrypt id, bootstrap-token-id.ts), so a plain hash serves, and every replica computes it alike.
 */
function carriable(key: string): string {
  if (key.length <= MAX_KEY_LENGTH && KEY.test(key)) return key;
  return `${key.slice(0, key.indexOf(' '))} sha256 ${createHash('sha256').update(key).digest('hex')}`;
}

/**
 * How far ahead of this replica's clock a carried timestamp is believed: the skew certificates
 * already allow (certs/ca.ts CLOCK_SKEW_MS, notBefore backdated by it). A later one (a signer
 * whose clock ran far ahead) counts as this far ahead, so that replica's certificates cannot
 * hold a pod's renewals off for as long as its clock was wrong.
 */
export const MAX_STATE_SKEW_MS = CLOCK_SKEW_MS;

/**
 * What a carried state is worth at `wallMs` (this replica's clock): what was left, refilled
 * since its timestamp, and, below one signature, how long until one. Time is counted on this
 * replica's clock from the signer's timestamp and never backwards: a timestamp ahead of our
 * clock (the signer's clock is ahead of ours) has refilled nothing yet, and the wait includes
 * the time until our clock reaches it. Before 2026-12-07 the pushback was the refill alone,
 * counted from now: a sidecar that waited it out was refused again, for as long as the clocks
 * differed.
 *
 * A timestamp more than MAX_STATE_SKEW_MS ahead counts as that far ahead, and only for a key
 * this replica has no bucket for yet (`first`): the bucket it then makes keeps what is owed,
 * so a signer whose clock ran hours ahead holds a pod's renewals off for at most the allowance
 * and the refill, not until our clock catches up with its (null: this replica's own record
 * of the key governs).
 *
 * The other way round (our clock ahead of the signer's) credits the skew as refill: at most
 * skew/refill signatures, which no replica can see; the clocks must be synchronised anyway for
 * certificates' validity (docs/identity.md).
 */
function carriedNow(c: CarriedState, wallMs: number, rate: CertifyRate, first: boolean): { tokens: number; waitMs: number } | null {
  if (c.atWallMs > wallMs + MAX_STATE_SKEW_MS && !first) return null;
  const at = Math.min(c.atWallMs, wallMs + MAX_STATE_SKEW_MS);
  const tokens = Math.min(rate.burst, c.tokens + Math.max(0, wallMs - at) / rate.refillMs);
  return { tokens, waitMs: tokens < 1 ? Math.max(0, at - wallMs) + (1 - tokens) * rate.refillMs : 0 };
}

/** The client certificate a renewal presents: its serial, and the limit's state it carries (null: issued without one). */
export interface RenewedBy {
  readonly serial: string;
  readonly state: CarriedState | null;
}

export interface CertifyLimiterOptions {
  readonly burst?: number;
  readonly refillMs: number;
  /** A bootstrap token's bucket: default BOOTSTRAP_TOKEN_BURST, and BOOTSTRAP_TOKEN_REFILL_MS or `refillMs` if that is shorter. */
  readonly sharedToken?: Partial<CertifyRate>;
  /** Monotonic ms (Clock.now). */
  readonly now: () => number;
  /** Wall-clock ms (Clock.wallNow), for the state certificates carry (another replica's monotonic clock means nothing here). */
  readonly wallNow: () => number;
}

/** TLS reports serials in upper case, the CA writes lower case, either may keep a leading zero. */
const normalSerial = (s: string): string => s.toLowerCase().replace(/^0+/, '');

/** The keys of pods' buckets begin so: `pod NS/SA DIGEST` (podKey). */
const POD = 'pod ';
/** A pod's key as certificates issued before 2026-12-07 carry it, the pod's name in the clear: `pod NS/NAME`. */
const CLEAR_POD_KEY = /^pod ([^ /]+)\/([^ /]+)$/;
/** The keys of bootstrap tokens' buckets begin so (and no other's: see keyOf). */
const SHARED = 'bootstrap-token ';
/** The keys of service accounts' buckets (TokenReview tokens bound to no pod) begin so; they take the fleet rate too. */
const SERVICE_ACCOUNT = 'service-account ';

/**
 * The token buckets, one per key a call is charged to (keyOf):
 * - a token bound to a pod (TokenReview's authentication.kubernetes.io/pod-name and pod-uid):
 *   the pod instance (podKey; the discovery server bounds streams per pod too,
 *   MAX_STREAMS_PER_POD). The key names its namespace and service account (the certificate's
 *   SPIFFE ID names them anyway) and a digest of its name and UID, not the name: every TLS peer
 *   of the sidecar reads the key in its certificate, and a pod's name (a Deployment's name and
 *   a hash) is not the peer's to know, nor to confirm a guess of. Every replica derives the
 *   same digest, under any CA, so they agree on the pod's key;
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
 *   holder of the secret gets no more than the fleet's allowance however it calls. The token
 *   stands in the key as its scrypt id (bootstrap-token-id.ts), the same under every CA: it
 *   was the CA's keyed digest, and a rotated issuer gave the token a full bucket beside the
 *   one its earlier certificates renew from (until 2026-12-07, adv59);
 * - a token is keyed as the authenticators check it (presentedToken: a trailing newline or a
 *   leading space is the same token, not a full bucket of its own), and by the identity the
 *   token proves, not the one asked for (another is refused before the limit, signing nothing);
 * - a renewal by client certificate: whatever the certificate it presents was charged to,
 *   which the certificate itself says (CarriedState, written by the replica that signed it,
 *   signed by the CA): a certificate's serial names no pod, and keyed by serial every renewal
 *   would start a full bucket of its own (renew, then renew with the new certificate...). It
 *   was a map of the serials this process issued, so a certificate another replica issued (or
 *   this one before a restart) was a key of its own, and a sidecar renewing at two replicas
 *   in turn got a full bucket at each renewal: no limit at all (adv41). A certificate without
 *   the state (issued by an older control plane, `wren certs`) is keyed by its serial, once:
 *   what it renews carries the state.
 * The carried state also says what was left in the bucket when the certificate was signed:
 * a replica starts a bucket it does not have from there (refilled since), and never holds
 * more than it, so a sidecar renewing at one replica then another spends one budget. Each
 * replica still keeps its own buckets (no shared state): a caller that sends its token, or
 * an older certificate, to each of N replicas gets at most N budgets, as Envoy's local rate
 * limit is per instance.
 * Full buckets are dropped (a full bucket and no bucket are the same), so the map stays
 * within the workloads that certified lately. A call
 * is charged only once its token has proved the identity asked for: a token that proves
 * nothing (unknown, expired, another identity) makes no bucket, so many bad tokens grow
 * nothing here.
 */
export class CertifyLimiter {
  private readonly workload: CertifyRate;
  private readonly shared: CertifyRate;
  private readonly buckets = new Map<string, Bucket>();
  private nextSweep = 0;

  constructor(private readonly o: CertifyLimiterOptions) {
    this.workload = { burst: o.burst ?? CERTIFY_BURST, refillMs: o.refillMs };
    this.shared = { burst: o.sharedToken?.burst ?? BOOTSTRAP_TOKEN_BURST, refillMs: o.sharedToken?.refillMs ?? Math.min(BOOTSTRAP_TOKEN_REFILL_MS, o.refillMs) };
  }

  /** The key a call is charged to: `renewedBy`, the client certificate it renews by, or null for a token. */
  keyOf(principal: Principal, renewedBy: RenewedBy | null, token: Buffer): string {
    if (renewedBy !== null) {
      const carried = renewedBy.state?.key;
      if (carried === undefined) return carriable(`certificate ${principal.namespace}/${principal.serviceAccount} serial ${normalSerial(renewedBy.serial)}`);
      // Signed before pods' keys were digests: the same pod's key as it is now, so that what
      // it renews no longer names the pod (and its token and its certificates share a bucket).
      const clear = CLEAR_POD_KEY.exec(carried);
      return clear ? carriable(this.podKey(clear[1], principal.serviceAccount, clear[2], undefined)) : carried;
    }
    if (principal.pod) return carriable(this.podKey(principal.namespace, principal.serviceAccount, principal.pod, principal.podUid));
    if (!principal.shared) return carriable(`${SERVICE_ACCOUNT}${principal.namespace}/${principal.serviceAccount}`);
    // The token's id (bootstrap-token-id.ts), as the authenticator computed it, else computed here.
    const id = principal.sharedId ?? bootstrapTokenIdSync(principal.namespace, principal.serviceAccount, presentedToken(token));
    return carriable(`${SHARED}${principal.namespace}/${principal.serviceAccount} ${id}`);
  }

  private podKey(namespace: string, serviceAccount: string, pod: string, uid: string | undefined): string {
    return podKey(namespace, serviceAccount, pod, uid);
  }

  /**
   * Takes one signature from `key`'s bucket: null when there was one, else the refusal.
   * `carried`: the state the renewing certificate carries (for this key), which the bucket never exceeds.
   */
  take(key: string, carried: CarriedState | null = null): CertifyRefusal | null {
    const now = this.o.now();
    this.sweep(now);
    const b = this.buckets.get(key);
    const rate = b ? b.rate : key.startsWith(SHARED) || key.startsWith(SERVICE_ACCOUNT) ? this.shared : this.workload;
    let tokens = b ? Math.min(rate.burst, b.tokens + (now - b.at) / rate.refillMs) : rate.burst;
    // How long until this bucket has one signature: its own refill...
    let waitMs = tokens < 1 ? (1 - tokens) * rate.refillMs : 0;
    const c = carried === null ? null : carriedNow(carried, this.o.wallNow(), rate, b === undefined);
    if (c !== null) {
      tokens = Math.min(tokens, c.tokens);
      // ...and the certificate's, which starts only at its timestamp when that is ahead of our clock.
      waitMs = Math.max(waitMs, c.waitMs);
    }
    // A billionth of a signature spared: the float sums of refill and owed time (owed, below)
    // may land just under 1 at the very pushback, which would refuse the retry it announced.
    if (tokens < 1 - 1e-9) {
      const first = b ? !b.refused : true;
      // Kept as what is owed, the wait included (below zero while a timestamp ahead of our clock
      // is still to come): the bucket alone then makes the same pushback, when a later call
      // presents the token, or a certificate it no longer believes (carriedNow).
      const owed = 1 - waitMs / rate.refillMs;
      if (b) {
        b.tokens = owed;
        b.at = now;
        b.refused = true;
      } else this.buckets.set(key, { rate, tokens: owed, at: now, refused: true });
      return { retryAfterMs: Math.max(1, Math.ceil(waitMs)), first };
    }
    if (b) {
      b.tokens = tokens - 1;
      b.at = now;
      b.refused = false;
    } else this.buckets.set(key, { rate, tokens: tokens - 1, at: now, refused: false });
    return null;
  }

  /** What a certificate signed for `key` just now carries (after take): the key and what is left in its bucket. */
  stateOf(key: string): CarriedState {
    const b = this.buckets.get(key);
    return { key, tokens: b ? Math.max(0, b.tokens + (this.o.now() - b.at) / b.rate.refillMs) : 0, atWallMs: this.o.wallNow() };
  }

  /** How many buckets (not full) are kept. */
  get size(): { readonly buckets: number } {
    return { buckets: this.buckets.size };
  }

  /** At most once per refill interval (at least a second): drop full buckets. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + Math.max(1000, this.workload.refillMs);
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) / b.rate.refillMs >= b.rate.burst) this.buckets.delete(k);
  }
}
