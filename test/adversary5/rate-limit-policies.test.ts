import { FakeClock } from '../../common/clock.js';
import { parseRateLimitPolicy } from '../../contract/parse-ratelimit.js';
import { RateLimiter } from '../../proxy/ratelimit/rate-limiter.js';

/**
 * ADV5-4: with two RateLimitPolicies selecting a workload, a request the second policy
 * refuses has already taken a token from the first (proxy/ratelimit/rate-limiter.ts
 * RateLimiter.check: each policy's check() takes its tokens as soon as it admits, and "the
 * first refusal stops"). docs/resilience.md, "Local rate limiting": "If any bucket is empty the
 * request is refused and takes no token from the others."
 *
 * What an attacker does: the platform team caps a workload with `demo/a-total` (total 10/s) and
 * the app team adds `demo/b-per-caller` (identity 1/s per caller, Linkerd's per-identity fairness:
 * one noisy caller must not starve the others). One compromised caller sends 10 requests at once.
 * What happens: 1 is admitted, 9 are refused by b-per-caller, but all 10 took a token from
 * a-total, which is now empty: every other caller gets 429 (scope "total") although the app
 * served one request. What should happen: a refused request takes no token from any policy, so
 * another caller's request is admitted, as the one-policy case in Wren already does (check all
 * policies first, take the tokens only when every one admits).
 */
const NOISY = 'spiffe://cluster.local/ns/demo/sa/noisy';
const QUIET = 'spiffe://cluster.local/ns/demo/sa/quiet';

test('ADV5-4: a request refused by one RateLimitPolicy must not spend the tokens of another', () => {
  // ADVERSARY: ADV5-4
  const clock = new FakeClock(0);
  const rl = new RateLimiter({ clock, maxIdentityBuckets: 100, onEvict: () => undefined }, [
    parseRateLimitPolicy({ name: 'demo/a-total', total: { requestsPerSecond: 10, burst: 10 } }, 'a'),
    parseRateLimitPolicy({ name: 'demo/b-per-caller', identity: { requestsPerSecond: 1, burst: 1 } }, 'b'),
  ]);
  let admitted = 0;
  for (let i = 0; i < 10; i++) if (rl.check(8080, NOISY, 'GET', '/') === null) admitted++;
  expect(admitted).toBe(1);
  // Nine requests were refused; only one reached the app. The quiet caller's first request must pass.
  expect(rl.check(8080, QUIET, 'GET', '/')).toBeNull();
});
