import * as k8s from '@kubernetes/client-node';
import type { Clock } from '../../common/clock.js';
import { IDENTITY_TOKEN_AUDIENCE } from '../../contract/identity.js';
import { DEFAULT_KUBE_WRITE_RETRY, retryThrottled, type KubeWriteRetryPolicy } from '../kube-write-retry.js';
import { AuthError, parseServiceAccountUsername, presentedToken, type Authenticator, type Principal } from './authenticator.js';

/**
 * The one call we need from AuthenticationV1Api (an interface so unit tests can drive it).
 * `signal` aborts the HTTP request; the promise then rejects.
 */
export interface TokenReviewApi {
  createTokenReview(body: k8s.V1TokenReview, signal: AbortSignal): Promise<k8s.V1TokenReview>;
}

/**
 * How long a TokenReview may take and how many may be open at once. Anyone who can reach the
 * gRPC port can make the control plane ask the API server about a junk token, so both are
 * bounded: an API server that accepts requests and never answers (overloaded, half dead, a
 * stuck proxy in between) would otherwise pin one request per Certify forever.
 */
export interface TokenReviewLimits {
  /** The request is aborted after this long; the call is refused UNAVAILABLE (the proxy retries). */
  readonly timeoutMs: number;
  /** Reviews open at once; one more is refused at once (RESOURCE_EXHAUSTED) without asking the API server. */
  readonly maxInFlight: number;
  /**
   * Of those, open at once for one caller address (a pod IP; loopback is not counted):
   * without it one client sending junk tokens as fast as they are refused held every slot,
   * and every pod's Certify was refused `authenticator_overloaded` for as long as it went on.
   */
  readonly maxInFlightPerSource: number;
}

/**
 * 5 s: a TokenReview is one authenticated POST the API server answers in milliseconds; 5 s
 * is half the proxy's default Certify deadline (10 s, workload-identity.ts), so the refusal
 * reaches the proxy, which retries with backoff. 32 in flight: at ~10 ms a review that is
 * ~3,000 reviews/s, several times what the CA signs (~690/s, docs/identity.md "Measured").
 */
export const DEFAULT_TOKEN_REVIEW_LIMITS: TokenReviewLimits = Object.freeze({ timeoutMs: 5000, maxInFlight: 32, maxInFlightPerSource: 8 });

export interface TokenReviewOptions {
  readonly clock: Clock;
  readonly audiences?: readonly string[];
  readonly limits?: TokenReviewLimits;
  /**
   * A 429 with Retry-After (API Priority and Fairness) is asked again within these bounds
   * and the review's timeoutMs (kube-write-retry.ts); default DEFAULT_KUBE_WRITE_RETRY.
   */
  readonly retry?: KubeWriteRetryPolicy;
}

/** Sets the request's abort signal; runs after the KubeConfig's authentication is applied. */
function abortWith(signal: AbortSignal): k8s.ObservableMiddleware {
  return {
    pre: (ctx) => {
      ctx.setSignal(signal);
      return new k8s.Observable(Promise.resolve(ctx));
    },
    post: (res) => new k8s.Observable(Promise.resolve(res)),
  };
}

/**
 * What the API server's service-account authenticator puts in a pod-bound token's user info
 * (k8s.io/apiserver/pkg/authentication/serviceaccount, PodNameKey and PodUIDKey): the name and
 * the UID of the pod the token is bound to, from the token's kubernetes.io.pod claims.
 */
const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

/**
 * Kubernetes service-account tokens, checked by the API server (POST
 * authentication.k8s.io/v1 TokenReview), as Linkerd's identity controller does
 * (controller/identity/validator.go) and Istio's (security/pkg/k8s/tokenreview).
 *
 * Accepted only when all hold:
 *  - status.authenticated is true;
 *  - status.audiences contains one of ours ("wren-identity"): the API docs ask clients that
 *    set spec.audiences to check this, since an API server that ignores audiences would
 *    otherwise accept a token minted for anything (e.g. the default API-server audience);
 *  - status.user.username is `system:serviceaccount:<ns>:<sa>`.
 * The identity service then requires <ns>/<sa> to equal the identity requested.
 *
 * Each review is bounded (TokenReviewLimits): aborted after `timeoutMs`, or as soon as the
 * caller's signal fires (its Certify was cancelled or passed its deadline), and refused
 * without a request when `maxInFlight` are open. A slot is freed when its HTTP request has
 * ended, not when the caller was answered, so the bound holds on what the API server sees.
 */
export class TokenReviewAuthenticator implements Authenticator {
  readonly name = 'tokenreview';
  private readonly audiences: readonly string[];
  private readonly limits: TokenReviewLimits;
  private inFlight = 0;
  /** Reviews open per caller address (only addresses with some open: at most maxInFlight keys). */
  private readonly bySource = new Map<string, number>();

  constructor(
    private readonly api: TokenReviewApi,
    private readonly o: TokenReviewOptions,
  ) {
    this.audiences = o.audiences ?? [IDENTITY_TOKEN_AUDIENCE];
    this.limits = o.limits ?? DEFAULT_TOKEN_REVIEW_LIMITS;
    if (!(this.limits.timeoutMs > 0) || !Number.isInteger(this.limits.maxInFlight) || this.limits.maxInFlight < 1 || !Number.isInteger(this.limits.maxInFlightPerSource) || this.limits.maxInFlightPerSource < 1)
      throw new RangeError(`TokenReview limits: timeoutMs must be > 0, maxInFlight and maxInFlightPerSource integers >= 1, got ${JSON.stringify(this.limits)}`);
  }

  static fromKubeConfig(kc: k8s.KubeConfig, opts: TokenReviewOptions): TokenReviewAuthenticator {
    const api = kc.makeApiClient(k8s.AuthenticationV1Api);
    return new TokenReviewAuthenticator(
      { createTokenReview: (body, signal) => api.createTokenReview({ body }, { middleware: [abortWith(signal)], middlewareMergeStrategy: 'append' }) },
      opts,
    );
  }

  async authenticate(token: Buffer, signal?: AbortSignal, source?: string | null): Promise<Principal> {
    const text = presentedToken(token);
    if (text.length === 0) throw new AuthError('unauthenticated', 'no token was presented');
    if (signal?.aborted) throw new AuthError('unavailable', 'the caller went away before the TokenReview', { limit: 'abandoned' });
    if (this.inFlight >= this.limits.maxInFlight)
      throw new AuthError('unavailable', `${this.inFlight} TokenReviews are in flight, the most allowed (--token-review-max-in-flight): try again later`, { limit: 'overloaded' });
    const mine = source ? (this.bySource.get(source) ?? 0) : 0;
    if (source && mine >= this.limits.maxInFlightPerSource)
      throw new AuthError('unavailable', `${mine} TokenReviews from ${source} are in flight, the most one address may have (--token-review-max-in-flight-per-source): try again later`, { limit: 'source-overloaded' });
    const review = await this.review({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: text, audiences: [...this.audiences] } }, signal, source ?? null);
    const st = review.status ?? {};
    if (st.authenticated !== true) throw new AuthError('unauthenticated', `the API server did not authenticate the token${st.error ? `: ${st.error}` : ''}`);
    const got = st.audiences ?? [];
    if (!got.some((a) => this.audiences.includes(a)))
      throw new AuthError(
        'unauthenticated',
        `the TokenReview did not confirm audience ${this.audiences.join(', ')} (it returned [${got.join(', ')}]): a token for another audience, or an API server that ignores audiences`,
      );
    const username = st.user?.username ?? '';
    const sa = parseServiceAccountUsername(username);
    if (!sa) throw new AuthError('unauthenticated', `the token belongs to ${JSON.stringify(username)}, not a service account`);
    const pod = st.user?.extra?.[POD_NAME_EXTRA]?.[0];
    const podUid = pod ? st.user?.extra?.[POD_UID_EXTRA]?.[0] : undefined;
    return { ...sa, via: this.name, ...(pod ? { pod } : {}), ...(podUid ? { podUid } : {}) };
  }

  /** One request, holding a slot until it has ended; answered at the timeout or the caller's abort, whichever comes first. */
  private review(body: k8s.V1TokenReview, signal: AbortSignal | undefined, source: string | null): Promise<k8s.V1TokenReview> {
    const abort = new AbortController();
    this.inFlight++;
    if (source) this.bySource.set(source, (this.bySource.get(source) ?? 0) + 1);
    return new Promise((resolve, reject) => {
      let done = false;
      const settle = (f: () => void): void => {
        if (done) return;
        done = true;
        this.o.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        f();
      };
      const giveUp = (e: AuthError): void => {
        settle(() => reject(e));
        abort.abort(e);
      };
      const timer = this.o.clock.setTimeout(
        () => giveUp(new AuthError('unavailable', `TokenReview: no answer from the API server within ${this.limits.timeoutMs} ms (--token-review-timeout)`, { limit: 'timeout' })),
        this.limits.timeoutMs,
      );
      const onAbort = (): void => giveUp(new AuthError('unavailable', 'TokenReview abandoned: the caller went away (call cancelled or past its deadline)', { limit: 'abandoned' }));
      signal?.addEventListener('abort', onAbort, { once: true });
      // Through then(): a client that throws instead of rejecting still frees its slot. A 429
      // with Retry-After is asked again (kube-write-retry.ts) holding the slot, within the
      // timeout: the wait ends when the review is given up (timeout, caller gone).
      const deadlineMs = this.o.clock.now() + this.limits.timeoutMs;
      Promise.resolve()
        .then(() => retryThrottled('TokenReview', () => this.api.createTokenReview(body, abort.signal), {
          clock: this.o.clock, policy: this.o.retry ?? DEFAULT_KUBE_WRITE_RETRY, deadlineMs, signal: abort.signal,
        }))
        .then(
          (r) => settle(() => resolve(r)),
          (e: unknown) => {
            // Any failure to get an answer is ours (API server down, RBAC missing), not the
            // caller's: UNAVAILABLE, so the proxy retries rather than giving up on its token.
            const code = (e as { code?: unknown }).code;
            settle(() => reject(new AuthError('unavailable', `TokenReview failed${typeof code === 'number' ? ` (HTTP ${code})` : ''}: ${firstLine(e)}`, { cause: e })));
          },
        )
        .finally(() => {
          this.inFlight--;
          if (source) {
            const left = this.bySource.get(source)! - 1;
            if (left === 0) this.bySource.delete(source);
            else this.bySource.set(source, left);
          }
        });
    });
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200);
}
