/**
 * How the identity service learns who is calling: a token goes in, a Kubernetes
 * workload identity (namespace + service account) comes out, or an AuthError says why
 * not. The service then compares that principal with the identity the caller asked
 * for; authenticators never see the CSR.
 */
export interface Principal {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** For logs: which authenticator vouched ('tokenreview', 'bootstrap'). */
  readonly via: string;
  /** The pod the token is bound to, when the authenticator knows it (bound SA tokens). */
  readonly pod?: string;
  /**
   * That pod's metadata.uid (TokenReview's authentication.kubernetes.io/pod-uid): which
   * instance of the name, since a StatefulSet's pod created again has the same name.
   */
  readonly podUid?: string;
  /**
   * The token may be one secret shared by several workloads (a bootstrap token handed to a
   * fleet of VMs), so it does not tell one caller from another: the Certify limit charges it
   * as a fleet, with a bucket sized for one (certify-limiter.ts).
   */
  readonly shared?: boolean;
  /**
   * For a shared token, what stands for it in the Certify limit's key (bootstrap-token-id.ts:
   * the same at every replica and under every CA, and no help to anyone guessing the token).
   * Absent: the limiter derives it from the token.
   */
  readonly sharedId?: string;
}

/**
 * The token as every authenticator checks it: UTF-8, surrounding whitespace dropped (a token
 * file's trailing newline). The Certify limit keys a token by the same text
 * (certify-limiter.ts), so no spelling an authenticator takes for the token is a bucket of its own.
 */
export function presentedToken(token: Buffer): string {
  return token.toString('utf8').trim();
}

/**
 * `unauthenticated`: the token is bad (invalid, expired, wrong audience, unknown); the
 * caller must get a new one. `unavailable`: the token could not be checked right now
 * (API server unreachable, 5xx); the caller should retry with the same token.
 */
export type AuthErrorKind = 'unauthenticated' | 'unavailable';

/**
 * Why an `unavailable` check was not made, when a limit decided it (token-review-authenticator.ts):
 * `timeout`, no answer within the time allowed; `overloaded`, too many checks in flight;
 * `abandoned`, the caller went away (its call was cancelled or passed its deadline);
 * `source-overloaded`, the caller's address has its share of the checks in flight.
 */
export type AuthLimit = 'timeout' | 'overloaded' | 'abandoned' | 'source-overloaded';

export class AuthError extends Error {
  readonly limit: AuthLimit | null;

  constructor(
    readonly kind: AuthErrorKind,
    message: string,
    options?: { cause?: unknown; limit?: AuthLimit },
  ) {
    super(message, options);
    this.name = 'AuthError';
    this.limit = options?.limit ?? null;
  }
}

export interface Authenticator {
  /** Short name for logs and metrics. */
  readonly name: string;
  /**
   * Resolves with the principal the token proves; rejects with AuthError. Never logs the
   * token. `signal`: the caller has gone away, give up (and free what the check holds).
   * `source`: the caller's address (a pod IP), for a per-caller share of what the check
   * costs; absent or null: not one to share by (loopback, unknown).
   */
  authenticate(token: Buffer, signal?: AbortSignal, source?: string | null): Promise<Principal>;
}

/** `system:serviceaccount:<ns>:<sa>` -> parts (the username Kubernetes gives service-account tokens). */
export function parseServiceAccountUsername(username: string): { namespace: string; serviceAccount: string } | null {
  const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
  return m ? { namespace: m[1], serviceAccount: m[2] } : null;
}
