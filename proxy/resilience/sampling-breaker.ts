import { CircuitState, type IBreaker } from 'cockatiel';
import type { Clock } from '../../common/clock.js';

/**
 * cockatiel's SamplingBreaker algorithm (src/breaker/SamplingBreaker.ts: open when more
 * than `threshold` of the calls in the last `duration` failed, provided the rate is at
 * least `minimumRps`; ≥ 5 windows of ≤ 1 s) with an injected Clock. cockatiel's own class
 * reads Date.now() inside `push()`, so under a FakeClock its windows would never rotate;
 * this implements the same IBreaker contract so EndpointBreaker can use either.
 */
export class ClockedSamplingBreaker implements IBreaker {
  private readonly threshold: number;
  private readonly minimumRpms: number;
  private readonly windowMs: number;
  private readonly durationMs: number;
  private readonly windows: { startedAt: number; failures: number; successes: number }[] = [];
  private current = 0;
  private failures = 0;
  private successes = 0;

  constructor(
    opts: { threshold: number; durationMs: number; minimumRps: number },
    private readonly clock: Clock,
  ) {
    // cockatiel rejects thresholds outside (0, 1); clamp instead (config allows 0 and 1).
    this.threshold = Math.min(Math.max(opts.threshold, 0.001), 0.999);
    const count = Math.max(5, Math.ceil(opts.durationMs / 1000));
    for (let i = 0; i < count; i++) this.windows.push({ startedAt: -Infinity, failures: 0, successes: 0 });
    this.windowMs = Math.max(1, Math.round(opts.durationMs / count));
    this.durationMs = this.windowMs * count;
    this.minimumRpms = opts.minimumRps > 0 ? opts.minimumRps / 1000 : 5 / (this.threshold * 1000);
  }

  get state(): unknown {
    return { failures: this.failures, successes: this.successes };
  }

  set state(_v: unknown) {
    // Serialization is not used: state lives with the endpoint for the process lifetime.
  }

  success(state: CircuitState): void {
    if (state === CircuitState.HalfOpen) this.reset();
    this.push(true);
  }

  failure(state: CircuitState): boolean {
    this.push(false);
    if (state !== CircuitState.Closed) return true;
    const total = this.successes + this.failures;
    if (total < this.durationMs * this.minimumRpms) return false;
    return this.failures > this.threshold * total;
  }

  private reset(): void {
    this.failures = this.successes = 0;
    for (const w of this.windows) {
      w.failures = w.successes = 0;
      w.startedAt = -Infinity;
    }
  }

  private push(success: boolean): void {
    const now = this.clock.now();
    let w = this.windows[this.current];
    if (now - w.startedAt >= this.windowMs) {
      // Rotate, dropping windows that fell out of the sampling duration (even several
      // at once after a quiet period, which cockatiel's one-step rotation does not do).
      const steps = Math.min(this.windows.length, w.startedAt === -Infinity ? 1 : Math.floor((now - w.startedAt) / this.windowMs));
      for (let i = 0; i < steps; i++) {
        this.current = (this.current + 1) % this.windows.length;
        const old = this.windows[this.current];
        this.failures -= old.failures;
        this.successes -= old.successes;
        old.failures = old.successes = 0;
        old.startedAt = now;
      }
      w = this.windows[this.current];
    }
    if (success) {
      w.successes++;
      this.successes++;
    } else {
      w.failures++;
      this.failures++;
    }
  }
}
