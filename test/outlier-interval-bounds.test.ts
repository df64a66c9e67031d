import { FakeClock, seededRandom } from '../common/clock.js';
import { validateResource } from '../manifests/validate.js';
import { parseTrafficPolicyResource } from '../control-plane/translate/k8s-objects.js';
import { classify } from '../proxy/resilience/classify.js';
import { OutlierDetector } from '../proxy/resilience/outlier-detector.js';

/**
 * Outlier-detection interval bound (found by adversary4).
 *
 * What a user does: sets `outlierDetection: { intervalMs: 0 }` in a TrafficPolicy (0 read as
 * "sweep continuously", or as "unset" as `timeouts.requestMs: 0` means none). The CRD
 * (`minimum: 0`) and the control plane's parser accepted it.
 *
 * What happened before the bound: OutlierDetector.arm() never starts its sweep timer when intervalMs <= 0,
 * yet record() still ejects on consecutive 5xx / gateway / local-origin failures. Only the
 * sweep (tick) unejects after baseEjectionTimeMs, so an endpoint that had 5 bad responses
 * in a row (a deploy, a brief overload) stays ejected for good: with no active health
 * check nothing ever brings it back, and capacity shrinks with every blip until only the
 * panic threshold keeps the service alive.
 *
 * What happens now: intervalMs 0 is refused with its field path by the CRD and the parser
 * (Envoy's OutlierDetection.interval must be > 0: outlier_detection.proto
 * `[(validate.rules).duration = {gt {}}]`); test/health-check-bounds.test.ts checks the
 * refusal's path and message.
 */
test('intervalMs 0 is refused, or an ejected endpoint comes back after its ejection time', () => {
  const tp = {
    apiVersion: 'policy.wren.io/v1alpha1',
    kind: 'TrafficPolicy',
    metadata: { name: 'od', namespace: 'shop' },
    spec: { targetRef: { kind: 'Service', name: 'web' }, policy: { outlierDetection: { intervalMs: 0 } } },
  };
  if (!validateResource(tp).ok) return;
  let policy;
  try {
    policy = parseTrafficPolicyResource(tp, '').policy.outlierDetection;
  } catch {
    return;
  }
  const clock = new FakeClock(0);
  // Ten endpoints so maxEjectionPercent (10 %) allows one ejection.
  const d = new OutlierDetector(policy, clock, seededRandom(1));
  d.setHosts(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
  const e500 = classify({ type: 'response', status: 500 });
  for (let i = 0; i < policy.consecutive5xx; i++) d.record('a', e500);
  expect(d.isEjected('a')).toBe(true);
  // Ten times the base ejection time (30 s by default), in 1 s steps.
  for (let t = 0; t < 10 * policy.baseEjectionTimeMs; t += 1000) clock.advance(1000);
  expect({ intervalMs: policy.intervalMs, ejectedAfter: clock.now(), stillEjected: d.isEjected('a') }).toEqual({ intervalMs: 0, ejectedAfter: clock.now(), stillEjected: false });
  d.close();
});
