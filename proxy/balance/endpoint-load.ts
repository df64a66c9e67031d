/**
 * Live load statistics of one endpoint, shared by every picker built over it: the
 * number of in-flight requests and a peak-sensitive EWMA of the time to first byte.
 *
 * The estimator follows tower's `PeakEwma` (tower/src/load/peak_ewma.rs, used by
 * Linkerd's balancer, linkerd2-proxy linkerd/proxy/balance):
 * - a sample above the current estimate replaces it (react to latency spikes at once);
 * - a sample below blends in with weight 1 - exp(-elapsed / decay), so slow recoveries
 *   are believed only gradually;
 * - reading the load decays the estimate towards zero (tower applies a zero-duration
 *   sample in `load()`), so an endpoint that stopped getting traffic because it looked
 *   slow is eventually retried: it cannot stay "slow" forever on stale data.
 * Cost = estimate × (in-flight + 1), so queueing also counts (tower `Cost`): `inflight`
 * is tower's pending count, raised when an attempt starts and lowered when it ends however
 * it ends (tower's `Handle` is dropped on response, error or cancellation).
 */
export class EndpointLoad {
  /** Requests started and not yet finished on this endpoint. */
  inflight = 0;
  private estimateMs: number;
  private updatedAt: number;
  private hasSample = false;

  constructor(
    defaultRttMs: number,
    private decayMs: number,
    now: number,
  ) {
    // tower: a new endpoint starts at the default RTT (Linkerd: 30 ms), not at zero,
    // so a fresh endpoint is neither flooded nor starved.
    this.estimateMs = defaultRttMs;
    this.updatedAt = now;
  }

  /**
   * Whether any sample has moved the estimate off the default RTT. Until then the estimate
   * is only the default decayed since this load was created, which measures the endpoint's
   * age, not its latency: PeakEwmaPicker compares two unsampled endpoints as equal.
   */
  get sampled(): boolean {
    return this.hasSample;
  }

  /** Record one RTT sample (ms to first byte). */
  observe(rttMs: number, now: number): void {
    this.hasSample = true;
    const rtt = Math.max(0, rttMs);
    if (rtt > this.estimateMs) {
      this.estimateMs = rtt;
    } else {
      const decay = this.decayFactor(now);
      this.estimateMs = this.estimateMs * decay + rtt * (1 - decay);
    }
    this.updatedAt = Math.max(this.updatedAt, now);
  }

  /** Like `observe` but may only raise the estimate (failures and cancellations; see Cluster.start). */
  observePeak(rttMs: number, now: number): void {
    if (rttMs > this.estimateMs) this.observe(rttMs, now);
  }

  /** Current RTT estimate in ms, decayed towards zero for the time since the last update. */
  rttMs(now: number): number {
    // tower's load(): update(now, now) = a zero sample, never a peak, so it only decays.
    const decay = this.decayFactor(now);
    this.estimateMs *= decay;
    this.updatedAt = Math.max(this.updatedAt, now);
    return this.estimateMs;
  }

  /** Peak-EWMA cost used by P2C: estimate × (in-flight + 1). */
  cost(now: number): number {
    return this.rttMs(now) * (this.inflight + 1);
  }

  /** The estimate without applying decay (for snapshots). */
  peekMs(now: number): number {
    return this.estimateMs * this.decayFactor(now);
  }

  setDecay(decayMs: number): void {
    this.decayMs = decayMs;
  }

  private decayFactor(now: number): number {
    const elapsed = now - this.updatedAt;
    if (elapsed <= 0) return 1;
    if (this.decayMs <= 0) return 0;
    return Math.exp(-elapsed / this.decayMs);
  }
}
