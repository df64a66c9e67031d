import { FakeClock, seededRandom, type Random } from '../../common/clock.js';
import { DEFAULT_POLICY } from '../../contract/defaults.js';
import type { CircuitBreakerPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import { classify } from './classify.js';
import { EndpointBreaker, type BreakerState } from './endpoint-breaker.js';

const ok = classify({ type: 'response', status: 200 });
const fail = classify({ type: 'response', status: 503 });
const refused = classify({ type: 'error', error: new ProxyError('CONNECT_REFUSED') });
const cancelled = classify({ type: 'error', error: new ProxyError('CLIENT_CANCELLED') });

function setup(over: Partial<CircuitBreakerPolicy> = {}, random: Random = () => 0) {
  const clock = new FakeClock(0);
  const changes: BreakerState[] = [];
  const b = new EndpointBreaker({ ...DEFAULT_POLICY.circuitBreaker, accrual: 'consecutive', ...over }, clock, random, (s) => changes.push(s));
  /** Run one request through the breaker. */
  const run = (o: typeof ok) => b.record(o, b.onStart());
  return { clock, b, changes, run };
}

describe('EndpointBreaker (consecutive, Linkerd failure accrual)', () => {
  it('opens after 7 consecutive failures; successes reset the count', () => {
    const { b, run } = setup();
    for (let i = 0; i < 6; i++) run(fail);
    run(ok);
    for (let i = 0; i < 6; i++) run(refused);
    expect(b.state).toBe('closed');
    run(fail);
    expect(b.state).toBe('open');
    expect(b.available).toBe(false);
    b.close();
  });

  it('half-opens after the backoff, lets exactly one probe through, closes on success', () => {
    const { clock, b, changes, run } = setup();
    for (let i = 0; i < 7; i++) run(fail);
    expect(b.until).toBe(1000);
    clock.advance(999);
    expect(b.state).toBe('open');
    clock.advance(1);
    expect(b.state).toBe('half-open');
    expect(b.available).toBe(true);
    const probe = b.onStart();
    expect(probe).toBe(true);
    expect(b.available).toBe(false); // one probe at a time
    expect(b.onStart()).toBe(false);
    b.record(fail, false); // a straggler does not decide the probation
    expect(b.state).toBe('half-open');
    b.record(ok, probe);
    expect(b.state).toBe('closed');
    expect(changes).toEqual(['open', 'half-open', 'half-open', 'closed']);
  });

  it('reopens on a failed probe with exponential backoff 1 s → 60 s, reset after a close', () => {
    const { clock, b, run } = setup();
    for (let i = 0; i < 7; i++) run(fail);
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) {
      delays.push(b.until! - clock.now());
      clock.advance(b.until! - clock.now());
      expect(b.state).toBe('half-open');
      run(fail);
    }
    expect(delays).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60].map((s) => s * 1000));
    clock.advance(60_000);
    run(ok);
    expect(b.state).toBe('closed');
    for (let i = 0; i < 7; i++) run(fail);
    expect(b.until! - clock.now()).toBe(1000);
    b.close();
    expect(clock.pending()).toBe(0);
  });

  it('jitters each open period by up to half of it', () => {
    const { clock, b, run } = setup({}, seededRandom(4));
    for (let i = 0; i < 7; i++) run(fail);
    const d = b.until! - clock.now();
    expect(d).toBeGreaterThanOrEqual(1000);
    expect(d).toBeLessThanOrEqual(1500);
    expect(d).not.toBe(1000);
    b.close();
  });

  it('a cancelled probe is inconclusive and frees the probe slot', () => {
    const { clock, b, run } = setup();
    for (let i = 0; i < 7; i++) run(fail);
    clock.advance(1000);
    run(cancelled);
    expect(b.state).toBe('half-open');
    expect(b.available).toBe(true);
  });
});

describe('EndpointBreaker (sampling)', () => {
  const sampling = { accrual: 'sampling' as const, samplingThreshold: 0.5, samplingDurationMs: 10_000, samplingMinimumRps: 1 };

  it('opens when the failure share over the window exceeds the threshold at enough rate', () => {
    const { clock, b, run } = setup(sampling);
    // 9 requests over the window: below minimum 1 rps × 10 s = 10 calls, never opens.
    for (let i = 0; i < 9; i++) run(fail);
    expect(b.state).toBe('closed');
    run(fail); // 10 calls, 100 % failed
    expect(b.state).toBe('open');
    clock.advance(1000);
    run(ok); // probe succeeds: closed, windows reset
    expect(b.state).toBe('closed');
    for (let i = 0; i < 10; i++) run(i % 2 ? ok : fail); // exactly 50 %: not above threshold
    expect(b.state).toBe('closed');
    b.close();
  });

  it('forgets failures that slid out of the sampling duration', () => {
    const { clock, b, run } = setup(sampling);
    for (let i = 0; i < 8; i++) run(fail);
    clock.advance(11_000);
    for (let i = 0; i < 6; i++) run(ok);
    for (let i = 0; i < 4; i++) run(fail); // 4/10 in the window
    expect(b.state).toBe('closed');
    b.close();
  });
});
