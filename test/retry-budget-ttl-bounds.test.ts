import { trafficPolicyRefusals } from './helpers/traffic-policy-refusals.js';

/**
 * Retry budget TTL bounds (found by a review).
 *
 * What a user does: sets `retry: { budgetTtlMs: 0 }` in a TrafficPolicy (0 read as "no
 * window", or as "unset"). The CRD and the parser accepted it, and a budget with a zero
 * window holds no deposits, so every retry was refused as RETRY_BUDGET, the always-safe
 * ones (refused connections, refused streams) included: retries were silently off.
 *
 * What happens now: the TTL must be 1 s to 60 s, as Finagle's RetryBudget requires
 * (`ttl` between 1 and 60 seconds); anything else is refused with its field path by the
 * CRD and by the parser.
 */
const refusals = (retry: Record<string, unknown>) => trafficPolicyRefusals({ retry }, 'rb');

const PATH = 'spec.policy.retry.budgetTtlMs';

test.each([
  [0, 'must be >= 1000', 'got 0'],
  ['0s', 'must be a duration like "250ms", "1s", "5m", "1h"', 'got 0'],
  [999, 'must be >= 1000', 'got 999'],
  ['500ms', 'must be a duration like "250ms", "1s", "5m", "1h"', 'got 500'],
  [60_001, 'must be <= 60000', 'got 60001'],
  ['2m', 'must be a duration like "250ms", "1s", "5m", "1h"', 'got 120000'],
  ['1h', 'must be a duration like "250ms", "1s", "5m", "1h"', 'got 3600000'],
])('budgetTtlMs %j is refused by the CRD and the parser at its field path', (budgetTtlMs, crdMessage, got) => {
  expect(refusals({ budgetTtlMs })).toEqual({
    crd: [{ path: PATH, message: crdMessage }],
    parser: `${PATH}: expected a duration from 1s to 60s (Finagle RetryBudget ttl), ${got}`,
  });
});

test.each([1000, '1s', '1.5s', '10s', '59.9s', '60s', '1500ms', '60000ms', 60_000, '1m', '0.5m'])('budgetTtlMs %j is admitted', (budgetTtlMs) => {
  expect(refusals({ budgetTtlMs })).toEqual({ crd: 'admitted', parser: 'admitted' });
});
