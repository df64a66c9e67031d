import type { Clock, Random, Timer } from '../../common/clock.js';
import type { OutlierPolicy } from '../../contract/model.js';
import type { Outcome } from './classify.js';

/**
 * Passive health checking with Envoy's outlier-detection semantics
 * (envoy/config/cluster/v3/outlier_detection.proto; source/common/upstream/
 * outlier_detection_impl.cc; docs arch_overview/upstream/outlier):
 *
 * - Consecutive detectors run inline on each outcome: consecutive 5xx, consecutive
 *   gateway failures (502/503/504), and, when `splitExternalLocalOriginErrors` is on,
 *   consecutive local-origin failures (connect/TLS/reset) counted apart from 5xx. With
 *   the split off, local-origin failures count as 503/504 responses (Envoy maps them so).
 * - Every `interval` the detector: unejects hosts whose ejection time has passed; swaps the
 *   success-rate buckets (the last full interval is evaluated); runs success-rate
 *   (mean − stdevFactor × σ over hosts with ≥ requestVolume, needs ≥ minimumHosts) and
 *   failure-percentage ejection; and decrements the ejection backoff of hosts that stayed
 *   healthy for a whole interval since their last uneject.
 * - Ejection time = min(base × backoff, max(max, base)) + jitter in [0, maxJitter]; the
 *   backoff grows by one per ejection while base × backoff < max + base (Envoy), so the
 *   300 s cap is reached and held.
 * - At most maxEjectionPercent of hosts are ejected, but one host always can be.
 * - Each detection is enforced with probability enforcing% (the injected Random).
 * - A host is unejected only on an interval tick (Envoy), or by a passing active health
 *   check (successful_active_health_check_uneject_host, default true).
 *
 * The detector is a state machine per host (healthy ⇄ ejected) that reports typed
 * events to listeners (metrics, logs, the Cluster that rebuilds its picker).
 */
export type EjectionReason =
  | 'consecutive-5xx'
  | 'consecutive-gateway-failure'
  | 'consecutive-local-origin-failure'
  | 'success-rate'
  | 'failure-percentage';

export type OutlierEvent =
  /** A detector fired; `action` says what came of it (Envoy ejections_detected_* vs enforced). */
  | { readonly type: 'detected'; readonly endpoint: string; readonly reason: EjectionReason; readonly action: 'ejected' | 'not-enforced' | 'overflow' }
  | { readonly type: 'ejected'; readonly endpoint: string; readonly reason: EjectionReason; readonly until: number; readonly timesEjected: number }
  | { readonly type: 'unejected'; readonly endpoint: string; readonly cause: 'timeout' | 'health-check' | 'disabled' };

export interface HostOutlierState {
  readonly ejected: boolean;
  /** Earliest uneject time (ms, clock time); the actual uneject happens on the next tick. */
  readonly ejectedUntil: number | null;
  readonly timesEjected: number;
  /** Envoy's ejection time backoff multiplier. */
  readonly backoff: number;
  readonly lastReason: EjectionReason | null;
}

class Bucket {
  success = 0;
  total = 0;
}

class HostMonitor {
  consecutive5xx = 0;
  consecutiveGateway = 0;
  consecutiveLocal = 0;
  /** [current, previous] success-rate buckets; external origin and (split mode) local origin. */
  ext: [Bucket, Bucket] = [new Bucket(), new Bucket()];
  local: [Bucket, Bucket] = [new Bucket(), new Bucket()];
  ejected = false;
  ejectedAt = 0;
  ejectionMs = 0;
  backoff = 0;
  timesEjected = 0;
  lastUnejectedAt: number | null = null;
  lastReason: EjectionReason | null = null;

  resetConsecutive(): void {
    this.consecutive5xx = this.consecutiveGateway = this.consecutiveLocal = 0;
  }
}

export class OutlierDetector {
  private readonly hosts = new Map<string, HostMonitor>();
  private readonly listeners = new Set<(e: OutlierEvent) => void>();
  private timer: Timer | null = null;
  private ejectedCount = 0;

  constructor(
    private policy: OutlierPolicy,
    private readonly clock: Clock,
    private readonly random: Random,
  ) {
    this.arm();
  }

  onEvent(fn: (e: OutlierEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Track exactly these hosts: new ones start healthy, removed ones are forgotten. */
  setHosts(keys: Iterable<string>): void {
    const keep = new Set(keys);
    for (const [k, m] of this.hosts) {
      if (keep.has(k)) continue;
      if (m.ejected) this.ejectedCount--;
      this.hosts.delete(k);
    }
    for (const k of keep) if (!this.hosts.has(k)) this.hosts.set(k, new HostMonitor());
  }

  updatePolicy(policy: OutlierPolicy): void {
    const rearm = policy.intervalMs !== this.policy.intervalMs || policy.enabled !== this.policy.enabled;
    this.policy = policy;
    if (!policy.enabled) for (const [k, m] of this.hosts) if (m.ejected) this.uneject(k, m, 'disabled');
    if (rearm) this.arm();
  }

  isEjected(key: string): boolean {
    return this.hosts.get(key)?.ejected ?? false;
  }

  state(key: string): HostOutlierState | null {
    const m = this.hosts.get(key);
    if (!m) return null;
    return {
      ejected: m.ejected,
      ejectedUntil: m.ejected ? m.ejectedAt + m.ejectionMs : null,
      timesEjected: m.timesEjected,
      backoff: m.backoff,
      lastReason: m.lastReason,
    };
  }

  /** Feed one attempt's outcome (called by the Cluster for every finished attempt). */
  record(key: string, outcome: Outcome): void {
    const m = this.hosts.get(key);
    if (!m || !this.policy.enabled || outcome.kind === 'cancelled') return;
    const p = this.policy;
    if (outcome.kind === 'failure' && outcome.origin === 'local') {
      if (p.splitExternalLocalOriginErrors) {
        m.local[0].total++;
        if (++m.consecutiveLocal === p.consecutiveLocalOriginFailure) {
          m.consecutiveLocal = 0;
          this.consecutive(key, m, 'consecutive-local-origin-failure', 100);
        }
        return;
      }
      // Not split: Envoy maps connect failures/timeouts/resets to 503/504.
      this.putResponse(key, m, false, outcome.gateway);
      return;
    }
    if (p.splitExternalLocalOriginErrors) {
      // The upstream answered, so the connection worked: a local-origin success.
      m.local[0].total++;
      m.local[0].success++;
      m.consecutiveLocal = 0;
    }
    this.putResponse(key, m, outcome.kind === 'success', outcome.kind === 'failure' && outcome.gateway);
  }

  /** An active health check passed: uneject now (Envoy successful_active_health_check_uneject_host). */
  healthCheckPassed(key: string): void {
    const m = this.hosts.get(key);
    if (m?.ejected) this.uneject(key, m, 'health-check');
  }

  /** The interval sweep; runs from the timer, public so tests and tools can drive it. */
  tick(): void {
    if (!this.policy.enabled) return;
    const now = this.clock.now();
    for (const [k, m] of this.hosts) {
      if (m.ejected && now - m.ejectedAt >= m.ejectionMs) this.uneject(k, m, 'timeout');
      // The bucket written during the last interval becomes the one evaluated.
      for (const b of [m.ext, m.local]) {
        b.reverse();
        b[0].success = b[0].total = 0;
      }
    }
    this.successRateEjections('ext');
    if (this.policy.splitExternalLocalOriginErrors) this.successRateEjections('local');
    for (const m of this.hosts.values()) {
      if (!m.ejected && m.lastUnejectedAt !== null && now - m.lastUnejectedAt >= this.policy.intervalMs && m.backoff > 0) m.backoff--;
    }
  }

  close(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.listeners.clear();
  }

  private arm(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    if (!this.policy.enabled || this.policy.intervalMs <= 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.tick();
      this.arm();
    }, this.policy.intervalMs);
    this.timer.unref?.();
  }

  private putResponse(key: string, m: HostMonitor, success: boolean, gateway: boolean): void {
    const p = this.policy;
    m.ext[0].total++;
    if (success) {
      m.ext[0].success++;
      m.consecutive5xx = m.consecutiveGateway = 0;
      return;
    }
    if (gateway) {
      if (++m.consecutiveGateway === p.consecutiveGatewayFailure) {
        m.consecutiveGateway = 0;
        this.consecutive(key, m, 'consecutive-gateway-failure', p.enforcingConsecutiveGatewayFailure);
      }
    } else {
      m.consecutiveGateway = 0;
    }
    if (++m.consecutive5xx === p.consecutive5xx) {
      m.consecutive5xx = 0;
      this.consecutive(key, m, 'consecutive-5xx', 100);
    }
  }

  private consecutive(key: string, m: HostMonitor, reason: EjectionReason, enforcing: number): void {
    // Envoy ignores consecutive detections for a host that is already ejected.
    if (!m.ejected) this.eject(key, m, reason, enforcing);
  }

  private successRateEjections(origin: 'ext' | 'local'): void {
    const p = this.policy;
    if (this.hosts.size < p.successRateMinimumHosts && this.hosts.size < p.failurePercentageMinimumHosts) return;
    const sr: { key: string; m: HostMonitor; rate: number }[] = [];
    const fp: { key: string; m: HostMonitor; rate: number }[] = [];
    for (const [key, m] of this.hosts) {
      if (m.ejected) continue;
      const b = m[origin][1];
      if (b.total === 0) continue;
      const rate = (b.success * 100) / b.total;
      if (b.total >= p.successRateRequestVolume) sr.push({ key, m, rate });
      if (b.total >= p.failurePercentageRequestVolume) fp.push({ key, m, rate });
    }
    if (sr.length > 0 && sr.length >= p.successRateMinimumHosts) {
      const threshold = successRateThreshold(sr.map((h) => h.rate), p.successRateStdevFactor);
      for (const h of sr) if (h.rate < threshold && !h.m.ejected) this.eject(h.key, h.m, 'success-rate', p.enforcingSuccessRate);
    }
    if (fp.length > 0 && fp.length >= p.failurePercentageMinimumHosts) {
      for (const h of fp) {
        if (100 - h.rate >= p.failurePercentageThreshold && !h.m.ejected) this.eject(h.key, h.m, 'failure-percentage', p.enforcingFailurePercentage);
      }
    }
  }

  private eject(key: string, m: HostMonitor, reason: EjectionReason, enforcing: number): void {
    const p = this.policy;
    const percentAfter = (100 * (this.ejectedCount + 1)) / this.hosts.size;
    if (percentAfter > p.maxEjectionPercent && this.ejectedCount > 0) {
      this.emit({ type: 'detected', endpoint: key, reason, action: 'overflow' });
      return;
    }
    if (!(this.random() * 100 < enforcing)) {
      this.emit({ type: 'detected', endpoint: key, reason, action: 'not-enforced' });
      return;
    }
    const now = this.clock.now();
    const base = p.baseEjectionTimeMs;
    const max = Math.max(p.maxEjectionTimeMs, base);
    const jitter = Math.floor(this.random() * (p.maxEjectionTimeJitterMs + 1));
    if (m.backoff * base < max + base) m.backoff++;
    m.ejected = true;
    m.ejectedAt = now;
    m.ejectionMs = Math.min(base * m.backoff, max) + jitter;
    m.timesEjected++;
    m.lastReason = reason;
    m.resetConsecutive();
    this.ejectedCount++;
    this.emit({ type: 'detected', endpoint: key, reason, action: 'ejected' });
    this.emit({ type: 'ejected', endpoint: key, reason, until: now + m.ejectionMs, timesEjected: m.timesEjected });
  }

  private uneject(key: string, m: HostMonitor, cause: 'timeout' | 'health-check' | 'disabled'): void {
    m.ejected = false;
    m.lastUnejectedAt = this.clock.now();
    // Envoy resets the counters so a host near a threshold is not re-ejected at once.
    m.resetConsecutive();
    this.ejectedCount--;
    this.emit({ type: 'unejected', endpoint: key, cause });
  }

  private emit(e: OutlierEvent): void {
    for (const fn of this.listeners) fn(e);
  }
}

/**
 * Envoy's successRateEjectionThreshold: mean − factor × population standard deviation.
 * Example from Envoy: {50, 100, 100, 100, 100} → mean 90, σ 20, factor 1.9 → 52.
 */
export function successRateThreshold(rates: readonly number[], stdevFactor: number): number {
  const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
  const variance = rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length;
  return mean - stdevFactor * Math.sqrt(variance);
}
