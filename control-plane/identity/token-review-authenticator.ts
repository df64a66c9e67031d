import * as k8s from '@kubernetes/client-node';
import { IDENTITY_TOKEN_AUDIENCE } from '../../contract/identity.js';
import { AuthError, parseServiceAccountUsername, type Authenticator, type Principal } from './authenticator.js';

/** The one call we need from AuthenticationV1Api (an interface so unit tests can drive it). */
export interface TokenReviewApi {
  createTokenReview(param: { body: k8s.V1TokenReview }): Promise<k8s.V1TokenReview>;
}

const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';

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
 */
export class TokenReviewAuthenticator implements Authenticator {
  readonly name = 'tokenreview';
  private readonly audiences: readonly string[];

  constructor(
    private readonly api: TokenReviewApi,
    opts: { audiences?: readonly string[] } = {},
  ) {
    this.audiences = opts.audiences ?? [IDENTITY_TOKEN_AUDIENCE];
  }

  static fromKubeConfig(kc: k8s.KubeConfig, opts: { audiences?: readonly string[] } = {}): TokenReviewAuthenticator {
    return new TokenReviewAuthenticator(kc.makeApiClient(k8s.AuthenticationV1Api), opts);
  }

  async authenticate(token: Buffer): Promise<Principal> {
    const text = token.toString('utf8').trim();
    if (text.length === 0) throw new AuthError('unauthenticated', 'no token was presented');
    let review: k8s.V1TokenReview;
    try {
      review = await this.api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: text, audiences: [...this.audiences] } },
      });
    } catch (e) {
      // Any failure to get an answer is ours (API server down, RBAC missing), not the
      // caller's: UNAVAILABLE, so the proxy retries rather than giving up on its token.
      const code = (e as { code?: unknown }).code;
      throw new AuthError('unavailable', `TokenReview failed${typeof code === 'number' ? ` (HTTP ${code})` : ''}: ${firstLine(e)}`, { cause: e });
    }
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
    return { ...sa, via: this.name, ...(pod ? { pod } : {}) };
  }
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200);
}
