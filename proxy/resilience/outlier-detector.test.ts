import { FakeClock, seededRandom, type Random } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { OutlierPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import { classify } from './classify.js';
import { OutlierDetector, successRateThreshold, type OutlierEvent } from './outlier-detector.js';

const ok = classify({ type: 'response', status: 200 });
const e500 = classify({ type: 'response', status: 500 });
const e503 = classify({ type: 'response', status: 503 });
const refused = classify({ type: 'error', error: new ProxyError('CONNECT_REFUSED') });
const cancelled = classify({ type: 'error', error: new ProxyError('CLIENT_CANCELLED') });

function setup(over: Partial<OutlierPolicy> = {}, hosts = ['a'], random: Random = seededRandom(1)) {
  const clock = new FakeClock(0);
  const d = new OutlierDetector({ ...DEFAULT_POLICY.outlierDetection, ...over }, clock, random);
  d.setHosts(hosts);
  const events: OutlierEvent[] = [];
  d.onEvent((e) => events.push(e));
  const feed = (key: string, o: typeof ok, n = 1) => {
    for (let i = 0; i < n; i++) d.record(key, o);
  };
  return { clock, d, events, feed, ejections: () => events.filter((e) => e.type === 'ejected') };
}

describe('OutlierDetector: consecutive failures', () => {
  it('a streak already past a threshold the policy lowered is complete at its next failure (adv49)', () => {
    for (const [field, outcome, reason] of [['consecutive5xx', e500, 'consecutive-5xx'], ['consecutiveGatewayFailure', e503, 'consecutive-gateway-failure'], ['consecutiveLocalOriginFailure', refused, 'consecutive-local-origin-failure']] as const) {
      const policy = { ...DEFAULT_POLICY.outlierDetection, consecutive5xx: 0, consecutiveGatewayFailure: 0, consecutiveLocalOriginFailure: 0, enforcingConsecutiveGatewayFailure: 100 };
      const { d, feed, ejections } = setup({ ...policy, [field]: 10 });
      feed('a', outcome, 7);
      d.updatePolicy({ ...policy, [field]: 5 });
      expect(d.isEjected('a')).toBe(false);
      feed('a', outcome);
      expect(ejections()).toEqual([expect.objectContaining({ endpoint: 'a', reason })]);
      d.close();
    }
  });

  it('ejects on the 5th consecutive 5xx and unejects on the first tick after base time', () => {
    const { clock, d, events, feed } = setup();
    clock.advance(5_000);
    feed('a', e500, 4);
    expect(d.isEjected('a')).toBe(false);
    feed('a', e500);
    expect(d.isEjected('a')).toBe(true);
    expect(events).toEqual([
      { type: 'detected', endpoint: 'a', reason: 'consecutive-5xx', action: 'ejected' },
      { type: 'ejected', endpoint: 'a', reason: 'consecutive-5xx', until: 35_000, timesEjected: 1 },
    ]);
    expect(d.state('a')).toMatchObject({ ejected: true, ejectedUntil: 35_000, backoff: 1 });
    clock.advance(30_000); // t = 35 s: ticks ran at 10, 20, 30 s
    expect(d.isEjected('a')).toBe(true);
    clock.advance(5_000); // tick at 40 s
    expect(d.isEjected('a')).toBe(false);
    expect(events.at(-1)).toEqual({ type: 'unejected', endpoint: 'a', cause: 'timeout' });
    d.close();
  });

  it('a success resets the streak; cancellations do not count', () => {
    const { d, feed } = setup();
    feed('a', e500, 4);
    feed('a', ok);
    feed('a', e500, 4);
    feed('a', cancelled, 3);
    expect(d.isEjected('a')).toBe(false);
    feed('a', e500);
    expect(d.isEjected('a')).toBe(true);
    d.close();
  });

  it('ejection time grows base × count up to the 300 s cap', () => {
    const { clock, d, feed, ejections } = setup();
    const durations: number[] = [];
    for (let i = 0; i < 12; i++) {
      feed('a', e500, 5);
      const e = ejections().at(-1) as Extract<OutlierEvent, { type: 'ejected' }>;
      durations.push(e.until - clock.now());
      while (d.isEjected('a')) clock.advance(10_000); // re-fail right after the uneject tick
    }
    expect(durations).toEqual([30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300].map((s) => s * 1000));
    expect(d.state('a')!.timesEjected).toBe(12);
    d.close();
  });

  it('the backoff decrements by one per healthy interval after an uneject (Envoy)', () => {
    const { clock, d, feed, ejections } = setup();
    feed('a', e500, 5); // 30 s
    while (d.isEjected('a')) clock.advance(10_000);
    feed('a', e500, 5); // 60 s
    while (d.isEjected('a')) clock.advance(10_000);
    expect(d.state('a')!.backoff).toBe(2);
    clock.advance(10_000);
    expect(d.state('a')!.backoff).toBe(1);
    clock.advance(10_000);
    expect(d.state('a')!.backoff).toBe(0);
    clock.advance(10_000);
    expect(d.state('a')!.backoff).toBe(0);
    feed('a', e500, 5);
    const e = ejections().at(-1) as Extract<OutlierEvent, { type: 'ejected' }>;
    expect(e.until - clock.now()).toBe(30_000);
    d.close();
  });

  it('adds jitter in [0, maxEjectionTimeJitter] drawn from the injected Random', () => {
    const { clock, feed, ejections, d } = setup({ maxEjectionTimeJitterMs: 1000 }, ['a'], () => 0.5);
    feed('a', e500, 5);
    expect((ejections()[0] as { until: number }).until - clock.now()).toBe(30_500);
    d.close();
  });

  it('keeps local-origin failures apart from 5xx when split (default)', () => {
    const { d, events, feed } = setup();
    feed('a', refused, 4);
    feed('a', e503, 4); // an upstream answer: the connection worked, local streak resets
    feed('a', refused, 1);
    expect(d.isEjected('a')).toBe(false);
    feed('a', e503, 1); // 5th consecutive 5xx (refused did not break the 5xx streak)
    expect(events.filter((e) => e.type === 'detected').map((e) => (e as { reason: string }).reason)).toEqual([
      'consecutive-gateway-failure', // gateway enforcing defaults to 0 %
      'consecutive-5xx',
    ]);
    expect((events[0] as { action: string }).action).toBe('not-enforced');
    d.close();

    const s = setup();
    s.feed('a', refused, 5);
    expect(s.ejections()).toEqual([expect.objectContaining({ reason: 'consecutive-local-origin-failure' })]);
    s.d.close();
  });

  it('counts local-origin failures as gateway 5xx when not split', () => {
    const { d, events, feed } = setup({ splitExternalLocalOriginErrors: false, enforcingConsecutiveGatewayFailure: 100 });
    feed('a', refused, 5);
    expect(events[1]).toEqual(expect.objectContaining({ type: 'ejected', reason: 'consecutive-gateway-failure' }));
    d.close();
  });

  it('enforcing percentages are applied with the injected Random', () => {
    const draws = [0.6, 0.4];
    const { d, events, feed } = setup({ enforcingConsecutiveGatewayFailure: 50, consecutive5xx: 0 }, ['a'], () => draws.shift() ?? 0);
    feed('a', e503, 5); // 0.6 × 100 ≥ 50: not enforced
    expect(d.isEjected('a')).toBe(false);
    feed('a', e503, 5); // 0.4 × 100 < 50: enforced
    expect(d.isEjected('a')).toBe(true);
    expect(events.filter((e) => e.type === 'detected').map((e) => (e as { action: string }).action)).toEqual(['not-enforced', 'ejected']);
    d.close();
  });
});

describe('OutlierDetector: max ejection percent', () => {
  it('caps ejections at maxEjectionPercent of hosts', () => {
    const hosts = Array.from({ length: 20 }, (_, i) => `h${i}`);
    const { d, events, feed } = setup({}, hosts);
    for (const h of hosts.slice(0, 3)) feed(h, e500, 5);
    expect(hosts.filter((h) => d.isEjected(h))).toEqual(['h0', 'h1']);
    expect(events.at(-1)).toEqual({ type: 'detected', endpoint: 'h2', reason: 'consecutive-5xx', action: 'overflow' });
    d.setHosts([...hosts.slice(1), 'h20']); // removing an ejected host frees its slot
    feed('h2', e500, 5);
    expect(d.isEjected('h2')).toBe(true);
    d.close();
  });

  it('always lets one host be ejected, even when 10 % of the hosts is less than one', () => {
    const { d, feed } = setup({}, ['a', 'b', 'c']);
    feed('a', e500, 5);
    feed('b', e500, 5);
    expect([d.isEjected('a'), d.isEjected('b')]).toEqual([true, false]);
    d.close();
  });
});

describe('OutlierDetector: success rate and failure percentage', () => {
  /** `failures` of 100 requests fail, spread so no 5 are consecutive. */
  function volume(feed: (k: string, o: typeof ok, n?: number) => void, key: string, failures: number, total = 100) {
    for (let i = 0; i < total; i++) feed(key, i % 2 === 0 && i / 2 < failures ? e500 : i % 2 === 1 || i / 2 >= failures ? ok : e500);
  }

  it('computes Envoy’s threshold: {50,100,100,100,100} → 52', () => {
    expect(successRateThreshold([50, 100, 100, 100, 100], 1.9)).toBeCloseTo(52, 10);
  });

  it('ejects hosts below mean − 1.9σ of the last interval', () => {
    const hosts = ['a', 'b', 'c', 'd', 'e', 'f'];
    const { clock, d, ejections, feed } = setup({ maxEjectionPercent: 50 }, hosts);
    volume(feed, 'a', 50); // 50 %
    for (const h of ['b', 'c', 'd', 'e']) volume(feed, h, 0); // 100 %
    volume(feed, 'f', 0, 60); // 100 % but under the request volume: not in the population
    expect(ejections()).toEqual([]);
    clock.advance(10_000);
    expect(ejections()).toEqual([expect.objectContaining({ endpoint: 'a', reason: 'success-rate' })]);
    d.close();
  });

  it('needs successRateMinimumHosts hosts with enough volume', () => {
    const { clock, d, ejections, feed } = setup({}, ['a', 'b', 'c', 'd', 'e']);
    volume(feed, 'a', 50);
    for (const h of ['b', 'c', 'd']) volume(feed, h, 0);
    volume(feed, 'e', 0, 99);
    clock.advance(10_000);
    expect(ejections()).toEqual([]);
    // Volume from an older interval does not count: only the last full interval is used.
    for (const h of ['b', 'c', 'd', 'e']) volume(feed, h, 0);
    clock.advance(10_000);
    expect(ejections()).toEqual([]);
    d.close();
  });

  it('failure percentage: detected but not enforced by default, ejected at enforcing 100', () => {
    const hosts = ['a', 'b', 'c', 'd', 'e'];
    for (const enforcing of [0, 100]) {
      // consecutive 5xx off: ≥ 85 % failures cannot avoid 5 in a row, which would eject first.
      const { clock, d, events, feed } = setup({ enforcingFailurePercentage: enforcing, enforcingSuccessRate: 0, consecutive5xx: 0 }, hosts);
      for (let i = 0; i < 50; i++) feed('a', i % 10 === 0 ? ok : e500); // 90 % failures
      for (const h of hosts.slice(1)) volume(feed, h, 0, 50);
      clock.advance(10_000);
      const fp = events.filter((e) => e.type === 'detected' && e.reason === 'failure-percentage');
      expect(fp).toEqual([expect.objectContaining({ endpoint: 'a', action: enforcing ? 'ejected' : 'not-enforced' })]);
      d.close();
    }
  });
});

describe('OutlierDetector: lifecycle', () => {
  it('a passing active health check unejects at once', () => {
    const { d, events, feed } = setup();
    feed('a', e500, 5);
    d.healthCheckPassed('a');
    expect(d.isEjected('a')).toBe(false);
    expect(events.at(-1)).toEqual({ type: 'unejected', endpoint: 'a', cause: 'health-check' });
    d.close();
  });

  it('disabling unejects everything and stops the timer; close clears timers', () => {
    const { clock, d, feed } = setup();
    feed('a', e500, 5);
    expect(clock.pending()).toBe(1);
    d.updatePolicy({ ...DEFAULT_POLICY.outlierDetection, enabled: false });
    expect(d.isEjected('a')).toBe(false);
    expect(clock.pending()).toBe(0);
    feed('a', e500, 10);
    expect(d.isEjected('a')).toBe(false);
    d.updatePolicy(DEFAULT_POLICY.outlierDetection);
    expect(clock.pending()).toBe(1);
    d.close();
    expect(clock.pending()).toBe(0);
  });
});
