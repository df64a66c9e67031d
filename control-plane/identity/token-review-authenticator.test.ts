import type * as k8s from '@kubernetes/client-node';
import { AuthError } from './authenticator.js';
import { TokenReviewAuthenticator, type TokenReviewApi } from './token-review-authenticator.js';

/** A TokenReview API that answers with a fixed status and records what it was asked. */
function api(status: k8s.V1TokenReviewStatus | Error): TokenReviewApi & { asked: k8s.V1TokenReview[] } {
  const asked: k8s.V1TokenReview[] = [];
  return {
    asked,
    async createTokenReview({ body }) {
      asked.push(body);
      if (status instanceof Error) throw status;
      return { ...body, status };
    },
  };
}

const sa = (username: string, audiences = ['wren-identity'], extra?: Record<string, string[]>): k8s.V1TokenReviewStatus => ({
  authenticated: true, audiences, user: { username, ...(extra ? { extra } : {}) },
});

async function refusal(a: TokenReviewAuthenticator, token = 'jwt'): Promise<AuthError> {
  const e = await a.authenticate(Buffer.from(token)).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(AuthError);
  return e as AuthError;
}

describe('TokenReviewAuthenticator', () => {
  test('asks the API server about the token with audience wren-identity and maps the service account', async () => {
    const fake = api(sa('system:serviceaccount:shop:web', ['wren-identity'], { 'authentication.kubernetes.io/pod-name': ['web-7d9'] }));
    const a = new TokenReviewAuthenticator(fake);
    expect(await a.authenticate(Buffer.from('the.jwt.token\n'))).toEqual({ namespace: 'shop', serviceAccount: 'web', via: 'tokenreview', pod: 'web-7d9' });
    expect(fake.asked).toEqual([{ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: 'the.jwt.token', audiences: ['wren-identity'] } }]);
  });

  test('refuses unauthenticated tokens, tokens whose audience is not confirmed, and non-service-account users', async () => {
    expect((await refusal(new TokenReviewAuthenticator(api({ authenticated: false, error: 'token has expired' })))).message).toContain('token has expired');
    // An API server that ignores spec.audiences answers with the token's own audience (or none).
    expect((await refusal(new TokenReviewAuthenticator(api(sa('system:serviceaccount:shop:web', []))))).message).toContain('did not confirm audience wren-identity');
    expect((await refusal(new TokenReviewAuthenticator(api(sa('system:serviceaccount:shop:web', ['https://kubernetes.default.svc'])))))).toMatchObject({ kind: 'unauthenticated' });
    expect((await refusal(new TokenReviewAuthenticator(api(sa('system:node:worker-1'))))).message).toContain('not a service account');
    expect((await refusal(new TokenReviewAuthenticator(api(sa('system:serviceaccount:shop'))))).kind).toBe('unauthenticated');
    const fake = api(sa('system:serviceaccount:shop:web'));
    expect((await refusal(new TokenReviewAuthenticator(fake), '  ')).message).toBe('no token was presented');
    expect(fake.asked).toHaveLength(0);
  });

  test('an API failure is unavailable (retry), not a verdict on the token', async () => {
    const e = await refusal(new TokenReviewAuthenticator(api(Object.assign(new Error('HTTP-Code: 403\nMessage: forbidden'), { code: 403 }))));
    expect(e.kind).toBe('unavailable');
    expect(e.message).toBe('TokenReview failed (HTTP 403): HTTP-Code: 403');
  });

  test('custom audiences', async () => {
    const fake = api(sa('system:serviceaccount:a:b', ['mesh']));
    expect(await new TokenReviewAuthenticator(fake, { audiences: ['mesh'] }).authenticate(Buffer.from('t'))).toMatchObject({ namespace: 'a', serviceAccount: 'b' });
    expect(fake.asked[0].spec.audiences).toEqual(['mesh']);
  });
});
