import { CircuitState, ConsecutiveBreaker, type IBreaker } from 'cockatiel';
import type { Clock, Random, Timer } from '../../common/clock.js';
import type { CircuitBreakerPolicy } from '../../contract/model.js';
import { exponentialBackoff } from './backoff.js';
import type { Outcome } from './classify.js';
import { ClockedSamplingBreaker } from './sampling-breaker.js';

/**
 * Per-endpoint failure accrual, Linkerd style (linkerd.io reference/circuit-breaking;
 * linkerd2 policy-controller outbound index `parse_accrual_config`):
 * - closed: every outcome goes to a cockatiel breaker *policy* object: ConsecutiveBreaker
 *   (`consecutive`, Linkerd default 7 failures) or the sampling breaker (`sampling`,
 *   cockatiel SamplingBreaker semantics, see sampling-breaker.ts);
 * - open: the endpoint gets no requests for a backoff of initial × 2^n, capped at max,
 *   with jitter 0.5 (Linkerd: 1 s → 60 s);
 * - half-open ("probation"): exactly one real request is let through; success closes the
 *   breaker (and resets the backoff), failure reopens it with the next backoff step.
 * cockatiel's CircuitBreakerPolicy is not used because it reads Date.now() for its open
 * timer; this class owns the timing with the injected Clock and Random.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export class EndpointBreaker {
  private stateValue: BreakerState = 'closed';
  private readonly inner: IBreaker;
  /** Consecutive openings since the last close (the backoff exponent). */
  private openings = 0;
  private probing = false;
  private timer: Timer | null = null;
  private openUntil: number | null = null;

  constructor(
    private readonly policy: CircuitBreakerPolicy,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly onChange: (state: BreakerState) => void = () => undefined,
  ) {
    this.inner =
      policy.accrual === 'sampling'
        ? new ClockedSamplingBreaker(
            { threshold: policy.samplingThreshold, durationMs: policy.samplingDurationMs, minimumRps: policy.samplingMinimumRps },
            clock,
          )
        : new ConsecutiveBreaker(policy.consecutiveFailures);
  }

  get state(): BreakerState {
    return this.stateValue;
  }

  /** When the open state ends (ms), or null. */
  get until(): number | null {
    return this.openUntil;
  }

  /** Whether a new request may go to this endpoint. */
  get available(): boolean {
    return this.stateValue === 'closed' || (this.stateValue === 'half-open' && !this.probing);
  }

  /** A request starts on the endpoint. Returns true if it is the half-open probe. */
  onStart(): boolean {
    if (this.stateValue !== 'half-open' || this.probing) return false;
    this.probing = true;
    this.onChange(this.stateValue); // no longer available: the picker must drop it
    return true;
  }

  /** A request finished. `probe` is what onStart returned for it. */
  record(outcome: Outcome, probe: boolean): void {
    if (this.stateValue === 'open') return; // stragglers from before the break
    if (this.stateValue === 'half-open') {
      if (!probe) return;
      this.probing = false;
      if (outcome.kind === 'cancelled') {
        this.onChange(this.stateValue); // inconclusive: available for another probe
        return;
      }
      if (outcome.kind === 'success') {
        this.inner.success(CircuitState.HalfOpen);
        this.openings = 0;
        this.transition('closed');
      } else {
        this.inner.failure(CircuitState.HalfOpen);
        this.open();
      }
      return;
    }
    if (outcome.kind === 'cancelled') return;
    if (outcome.kind === 'success') this.inner.success(CircuitState.Closed);
    else if (this.inner.failure(CircuitState.Closed)) this.open();
  }

  close(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private open(): void {
    const delay = exponentialBackoff(this.openings, this.policy.backoffInitialMs, this.policy.backoffMaxMs, 0.5, this.random);
    this.openings++;
    this.openUntil = this.clock.now() + delay;
    this.close();
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.openUntil = null;
      this.transition('half-open');
    }, delay);
    this.timer.unref?.();
    this.transition('open');
  }

  private transition(to: BreakerState): void {
    this.stateValue = to;
    if (to !== 'open') this.openUntil = null;
    this.onChange(to);
  }
}
