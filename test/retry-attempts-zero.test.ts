import { validateResource } from '../manifests/validate.js';
import { parseTrafficPolicyResource } from '../control-plane/translate/k8s-objects.js';
import { parseTrafficPolicy } from '../contract/parse.js';

/**
 * `retry.attempts: 0` (found by adversary5): Istio's HTTPRetry.attempts, whose semantics
 * docs/resilience.md promises, disables retries with 0; the CRD and the parser required
 * 1-10, so a policy written to turn retries off was refused. Now 0 is accepted by both
 * and means no retry at all (classify.ts retryDecision; proxy/layers/retry.test.ts checks
 * that not even a connect failure is retried); the bound stays 10.
 */
const tp = (attempts: number) => ({
  apiVersion: 'policy.wren.io/v1alpha1',
  kind: 'TrafficPolicy',
  metadata: { name: 'no-retries', namespace: 'shop' },
  spec: { targetRef: { kind: 'Service', name: 'web' }, policy: { retry: { attempts } } },
});

test('attempts 0 is accepted by the CRD and the parsers, and parsed as 0', () => {
  expect(validateResource(tp(0))).toEqual({ ok: true });
  expect(parseTrafficPolicyResource(tp(0), '').policy.retry.attempts).toBe(0);
  expect(parseTrafficPolicy({ retry: { attempts: 0 } }, 'policy').retry.attempts).toBe(0);
});

test('below 0 and above 10 are still refused, with the field path', () => {
  for (const n of [-1, 11]) {
    expect(validateResource(tp(n))).toMatchObject({ ok: false, errors: [{ path: 'spec.policy.retry.attempts' }] });
    expect(() => parseTrafficPolicy({ retry: { attempts: n } }, 'policy')).toThrow(/^policy\.retry\.attempts: expected a number in 0\.\.10/);
  }
});
