import type { Clock, Random } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { atOtherAddresses, endpointKey, keyOfEndpoint, type Endpoint, type TrafficPolicy } from '../../contract/model.js';
import { ProxyError } from '../errors/proxy-error.js';
import type { Host, PickContext } from '../balance/balancer.js';
import { createBalancer } from '../balance/create-balancer.js';
import { EndpointLoad } from '../balance/endpoint-load.js';
import { RingHashBalancer, type RingBackground } from '../balance/ring-hash.js';
import { fullJitterBackoff } from './backoff.js';
import type { Outcome } from './classify.js';
import type { ClusterMetrics } from './cluster-metrics.js';
import type { ClusterState, EndpointHealth, EndpointState } from './cluster-state.js';
import { ConcurrencyLimits, type Admission, type LimitName } from './concurrency-limits.js';
import { EjectingBalancer, type Eligibility, type HealthAwarePicker } from './ejecting-balancer.js';
import { EndpointBreaker } from './endpoint-breaker.js';
import { HealthChecker } from './health-checker.js';
import type { MeshProbes } from './mesh-probes.js';
import { OutlierDetector, type OutlierEvent } from './outlier-detector.js';
import { RetryBudget } from './retry-budget.js';
import type { CounterCells, SharedCounters } from './shared-counters.js';
import type { SharedOutliers } from './shared-outliers.js';

/**
 * One upstream cluster (a service port, e.g. "web.default:80"): the facade the data path
 * calls for every request. It owns the endpoint set and all per-endpoint state (EWMA and
 * in-flight, outlier ejection, failure-accrual breaker, active health), the concurrency
 * limits and the retry budget, and keeps an immutable picker that is rebuilt lazily on
 * the first pick after anything that changes eligibility. A large hash ring is the exception:
 * it is built over later turns of the event loop (`defer`) while picks use the ring it
 * replaces (RingHashBalancer), so no request waits for it.
 *
 * Call pattern for one downstream request:
 *   const adm = cluster.admit('request');            // OVERFLOW? fail fast
 *   loop attempts:
 *     const ep = cluster.pick({ hashKey, exclude }); // NO_ENDPOINTS / CIRCUIT_OPEN?
 *     no session to ep yet: admitConnection('pending') while waiting for it, and
 *     admitConnection('connections') if this request opens it (held until it closes)
 *     const done = cluster.start(ep);
 *     ... done(classify(...), msToFirstByte)          // exactly once per attempt
 *     decision = retryDecision(outcome, policy.retry, ctx); if not, stop
 *     const r = cluster.admit('retry');               // RETRY_BUDGET / OVERFLOW? stop
 *     await sleep(cluster.backoff(retryNumber)); ... r.release() after the attempt
 *   adm.release();
 * admit('request') deposits into the retry budget and admit('retry') withdraws from it:
 * do not call retryBudget.deposit()/tryWithdraw() yourself.
 */
export interface ClusterOptions {
  readonly name: string;
  readonly policy: TrafficPolicy;
  readonly clock: Clock;
  readonly random: Random;
  readonly metrics?: ClusterMetrics;
  readonly logger?: Logger;
  /** Run the policy's active health checks (default true). */
  readonly activeHealthChecks?: boolean;
  /** Probes through the peer sidecar over mTLS for meshed endpoints (without: plaintext to the app port). */
  readonly meshProbes?: MeshProbes;
  /** An endpoint's health changed (ejected or back, active checks failing or passing, breaker opened or closed). */
  readonly onHealthChange?: () => void;
  /** Where the concurrency limits count (listener workers: the sidecar's counters, shared); default: this cluster's own. */
  readonly counters?: SharedCounters;
  /**
   * Listener workers: outlier detection's per-endpoint state in the sidecar's table, and
   * `announce`, which tells the other workers this one ejected or unejected an endpoint
   * (they call outlierChanged). Default: this cluster's own.
   */
  readonly outliers?: { readonly table: SharedOutliers; readonly announce: (cluster: string, endpoint: string) => void };
  /**
   * Runs `fn` on a later turn of the event loop (default setImmediate): where a large ring
   * (ring-hash) is built, a few milliseconds a turn, while picks use the ring it replaces.
   */
  readonly defer?: (fn: () => void) => void;
}

interface Entry {
  host: Host;
  breaker: EndpointBreaker | null;
  activeHealthy: boolean;
  successes: number;
  failures: number;
  /** Attempts in a row that could not connect (refused, timed out), for the HealthReport (docs/control-plane.md). */
  connectFailures: number;
}

/** Outcome reasons (ProxyError labels) of attempts that never got a connection to the endpoint. */
const CONNECT_FAILURES: ReadonlySet<string> = new Set(['connect-refused', 'connect-timeout', 'connect-failed']);
/**
 * Connect failures in a row are announced (onHealthChange) up to this count only, so a
 * refusing endpoint under load costs the health reporter a bounded number of looks, not one
 * per failure; discovery.healthReport.connectFailures is capped at it (proxy-config.ts).
 */
const CONNECT_FAILURES_ANNOUNCED = 16;

const NOOP_DONE = (): void => undefined;

const onNextTurn = (fn: () => void): void => void setImmediate(fn);

export class Cluster {
  readonly name: string;
  private policy: TrafficPolicy;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly metrics?: ClusterMetrics;
  private readonly logger?: Logger;
  private readonly runHealthChecks: boolean;
  private readonly meshProbes?: MeshProbes;
  private readonly onHealthChange: () => void;
  private readonly entries = new Map<string, Entry>();
  /** A dual-stack pod's other address:port (Endpoint.additionalAddresses) -> its endpoint's key: pinned traffic to it is that endpoint's. */
  private readonly alternates = new Map<string, string>();
  private hosts: Host[] = [];
  private balancer: EjectingBalancer;
  private picker: HealthAwarePicker;
  private dirty = true;
  private readonly outlier: OutlierDetector;
  private readonly limits: ConcurrencyLimits;
  /** Where the limits count and the retry budget's ring is, when listener workers share them. */
  private readonly shared: CounterCells | undefined;
  private budget: RetryBudget;
  private checker: HealthChecker | null = null;
  private readonly untrack: () => void;
  /** Where a ring-hash balancer builds a large ring (RingBackground); stops with close(). */
  private readonly background: RingBackground;
  private closed = false;

  constructor(opts: ClusterOptions) {
    this.name = opts.name;
    this.policy = opts.policy;
    this.clock = opts.clock;
    this.random = opts.random;
    this.metrics = opts.metrics;
    this.logger = opts.logger?.child({ cluster: opts.name });
    this.runHealthChecks = opts.activeHealthChecks ?? true;
    this.meshProbes = opts.meshProbes;
    this.onHealthChange = opts.onHealthChange ?? (() => undefined);
    const defer = opts.defer ?? onNextTurn;
    this.background = {
      defer: (fn) => {
        if (!this.closed) defer(fn);
      },
      now: () => this.clock.now(),
      // The next pick takes the new ring up (RingHashBalancer.layout finds it built).
      ready: () => {
        this.dirty = true;
      },
    };
    this.balancer = this.makeBalancer();
    this.picker = this.balancer.build([]);
    const o = opts.outliers;
    this.outlier = new OutlierDetector(
      this.policy.outlierDetection, this.clock, this.random,
      o && { table: o.table, cluster: this.name, announce: (endpoint) => o.announce(this.name, endpoint) },
    );
    this.outlier.onEvent((e) => this.onOutlierEvent(e));
    this.shared = opts.counters?.cellsFor(this.name);
    this.limits = new ConcurrencyLimits(this.policy.circuitBreaker, (l) => this.metrics?.overflow(this.name, l), this.shared);
    this.budget = this.makeBudget();
    this.checker = this.makeChecker();
    this.untrack = this.metrics?.track(this.name, () => this.snapshot()) ?? (() => undefined);
  }

  /** Replace the endpoint set; per-endpoint state survives for endpoints that remain. */
  update(endpoints: readonly Endpoint[]): void {
    const next = new Map<string, Entry>();
    for (const ep of endpoints) {
      const key = endpointKey(ep);
      const old = next.get(key) ?? this.entries.get(key);
      if (old) {
        if (old.host.endpoint !== ep) old.host = { key, endpoint: ep, load: old.host.load };
        next.set(key, old);
      } else {
        const load = new EndpointLoad(this.policy.loadBalancer.ewmaDefaultRttMs, this.policy.loadBalancer.ewmaDecayMs, this.clock.now());
        next.set(key, { host: { key, endpoint: ep, load }, breaker: this.makeBreaker(key), activeHealthy: true, successes: 0, failures: 0, connectFailures: 0 });
      }
    }
    for (const [key, e] of this.entries) if (!next.has(key)) e.breaker?.close();
    this.entries.clear();
    for (const [k, e] of next) this.entries.set(k, e);
    this.alternates.clear();
    for (const ep of endpoints) for (const alt of atOtherAddresses(ep)) this.alternates.set(endpointKey(alt), endpointKey(ep));
    this.hosts = [...next.values()].map((e) => e.host);
    this.outlier.setHosts(next.keys());
    this.updateChecker();
    this.dirty = true;
  }

  updatePolicy(policy: TrafficPolicy): void {
    const old = this.policy;
    this.policy = policy;
    const changed = <K extends keyof TrafficPolicy>(k: K) => JSON.stringify(old[k]) !== JSON.stringify(policy[k]);
    if (changed('loadBalancer') || old.outlierDetection.panicThresholdPercent !== policy.outlierDetection.panicThresholdPercent) {
      const was = this.balancer.inner;
      this.balancer = this.makeBalancer();
      // A ring of the same endpoints and sizes is kept (built again, it was random picks meanwhile at a large size).
      if (this.balancer.inner instanceof RingHashBalancer && was instanceof RingHashBalancer) this.balancer.inner.takeOver(was);
      for (const e of this.entries.values()) e.host.load.setDecay(policy.loadBalancer.ewmaDecayMs);
    }
    this.outlier.updatePolicy(policy.outlierDetection);
    this.limits.updatePolicy(policy.circuitBreaker);
    const differs = <T>(a: T, b: T, keys: (keyof T)[]) => keys.some((k) => a[k] !== b[k]);
    if (differs(old.retry, policy.retry, ['budgetRatio', 'budgetMinPerSecond', 'budgetTtlMs'])) this.budget = this.makeBudget();
    const accrualKeys: (keyof TrafficPolicy['circuitBreaker'])[] = [
      'accrual', 'consecutiveFailures', 'samplingThreshold', 'samplingDurationMs', 'samplingMinimumRps', 'backoffInitialMs', 'backoffMaxMs',
    ];
    if (differs(old.circuitBreaker, policy.circuitBreaker, accrualKeys)) {
      // Breaker parameters changed: start every endpoint's accrual afresh.
      for (const [key, e] of this.entries) {
        e.breaker?.close();
        e.breaker = this.makeBreaker(key);
      }
    }
    if (changed('healthCheck')) {
      this.checker?.close();
      for (const e of this.entries.values()) e.activeHealthy = true;
      this.checker = this.makeChecker();
      this.updateChecker();
    }
    this.dirty = true;
  }

  /**
   * Admission against the concurrency limits. 'request': one per downstream request, held
   * until it ends (max requests), deposits into the retry budget. 'tunnel': an opaque TCP
   * connection, one of the cluster's connections for its whole life (Envoy's TCP proxy:
   * max_connections), deposits too: its connect-failure retries withdraw from the same
   * budget, which TCP alone would otherwise never fill (only the reserve would pay for them).
   * 'retry': one per retry, held for that attempt (max retries), withdraws from the retry budget.
   */
  admit(kind: 'request' | 'tunnel' | 'retry'): Admission | ProxyError {
    if (kind !== 'retry') {
      const a = this.limits.acquire(kind === 'request' ? 'requests' : 'connections');
      if (!(a instanceof ProxyError)) this.budget.deposit();
      return a;
    }
    const a = this.limits.acquire('retries');
    if (a instanceof ProxyError) return a;
    if (!this.budget.tryWithdraw()) {
      a.release();
      return new ProxyError('RETRY_BUDGET');
    }
    this.metrics?.retry(this.name);
    return a;
  }

  /**
   * Connection-pool admission (Envoy max_connections / max_pending_requests; what a
   * connection and a pending request are in Wren: docs/resilience.md, "Connection limits").
   * 'connections': held while a connection opened for this cluster stays open;
   * 'pending': held while a request waits for a peer session or a free HTTP/1.1 connection.
   */
  admitConnection(kind: Extract<LimitName, 'connections' | 'pending'>): Admission | ProxyError {
    return this.limits.acquire(kind);
  }

  /**
   * Pick an endpoint, avoiding ctx.exclude (endpointKey()s already tried). ctx.hashKey is
   * the ring-hash input (the policy's hashHeader value, or the source address). If every candidate is
   * excluded, an excluded one is reused rather than failing the request.
   */
  pick(ctx: PickContext): Endpoint | ProxyError {
    if (this.dirty) this.rebuild();
    const p = this.picker;
    const h = p.pick(ctx) ?? (ctx.exclude?.size ? p.pick({ hashKey: ctx.hashKey }) : null);
    if (h) return h.endpoint;
    if (p.counts.total === 0) return new ProxyError('NO_ENDPOINTS', this.entries.size > 0 ? 'no endpoint is ready' : undefined);
    if (p.counts.blocked > 0) return new ProxyError('CIRCUIT_OPEN');
    return new ProxyError('NO_ENDPOINTS', 'every endpoint is ejected or failing health checks');
  }

  /**
   * The endpoint a client addressed itself (a pod IP: headless Services, StatefulSets).
   * It is sent there whatever its eligibility, as Linkerd and Istio send traffic for a pod
   * IP to that pod: the client chose the pod (a database primary, a Kafka broker) and
   * another one would be wrong, not better. An ejected, breaker-open or unhealthy pod still
   * gets it; the attempt goes through start() like any other, so its outcome feeds the
   * same EWMA, outlier detector, breaker (it may be the half-open probe) and metrics that
   * keep balanced traffic away. Only an endpoint that has left the cluster fails.
   */
  pinned(endpoint: Endpoint): Endpoint | ProxyError {
    const key = endpointKey(endpoint);
    const e = this.entries.get(key);
    if (e) return e.host.endpoint;
    // A dual-stack pod's other address: that pod, dialled where the client addressed it.
    const alt = this.alternates.get(key);
    if (alt !== undefined && this.entries.has(alt)) return endpoint;
    return new ProxyError('NO_ENDPOINTS', `${key} is no longer an endpoint of ${this.name}`);
  }

  /**
   * An attempt starts on `endpoint`. The returned function records how it ended, once:
   * the Outcome (from classify()) and the latency to first byte (ms) for the EWMA, or,
   * for an attempt that ended before its response, the time it was outstanding.
   */
  start(endpoint: Endpoint): (outcome: Outcome, latencyMs: number) => void {
    const key = keyOfEndpoint(endpoint);
    // A pod pinned at its other address (pinned()) counts as its endpoint.
    const entry = this.entries.get(key) ?? (this.alternates.size > 0 ? this.entries.get(this.alternates.get(key) ?? '') : undefined);
    if (!entry) return NOOP_DONE;
    const hostKey = entry.host.key;
    const load = entry.host.load;
    load.inflight++;
    const breaker = entry.breaker;
    const probe = breaker?.onStart() ?? false;
    let done = false;
    return (outcome, latencyMs) => {
      if (done) return;
      done = true;
      load.inflight--;
      const now = this.clock.approxNow();
      if (outcome.kind === 'success') {
        load.observe(latencyMs, now);
        entry.successes++;
      } else if (outcome.kind === 'failure') {
        // A fast failure must not make an endpoint look attractive (a refusing host would
        // otherwise black-hole traffic); failures may only raise the estimate.
        load.observePeak(latencyMs, now);
        entry.failures++;
      } else {
        // Cancelled (the caller's timeout or gRPC deadline, the client gone, draining): tower's
        // PeakEwma records the time until the request was dropped as an RTT sample (its
        // `Handle` updates the estimate on drop, linkerd2-proxy's balancer included), so an
        // endpoint that hangs until callers give up looks as slow as their patience. Without
        // it a hung endpoint never gets a sample and keeps winning P2C. The time is only a
        // lower bound on the endpoint's latency (after response headers: the time to them),
        // so, like a failure, it may only raise the estimate. Still neutral for outlier
        // detection and breakers (below; docs/resilience.md).
        load.observePeak(latencyMs, now);
      }
      if (this.entries.get(hostKey) !== entry) return; // removed meanwhile
      this.outlier.record(hostKey, outcome);
      breaker?.record(outcome, probe);
      // Failures only (cheap on the hot path): a run of connect failures, or its end, is reported to the control plane.
      if (outcome.kind === 'failure' && outcome.origin === 'local' && CONNECT_FAILURES.has(outcome.reason)) {
        if (++entry.connectFailures <= CONNECT_FAILURES_ANNOUNCED) this.onHealthChange();
      } else if (entry.connectFailures > 0 && outcome.kind !== 'cancelled') {
        entry.connectFailures = 0;
        this.onHealthChange();
      }
    };
  }

  /** Another listener worker ejected or unejected `endpoint` for the sidecar: this one follows (OutlierDetector.sync). */
  outlierChanged(endpoint: string): void {
    this.outlier.sync(endpoint);
  }

  /** Delay before retry number `attempt` (1-based), full jitter (Envoy 25 ms base, 250 ms cap). */
  backoff(attempt: number): number {
    return fullJitterBackoff(attempt, this.policy.retry.backoffBaseMs, this.policy.retry.backoffMaxMs, this.random);
  }

  snapshot(): ClusterState {
    if (this.dirty) this.rebuild();
    const now = this.clock.now();
    // Clock times (monotonic) shown as wall-clock instants.
    const wallOffset = this.clock.wallNow() - now;
    const iso = (t: number | null) => (t === null ? null : new Date(t + wallOffset).toISOString());
    const endpoints: EndpointState[] = [];
    for (const [key, e] of this.entries) {
      const ep = e.host.endpoint;
      const o = this.outlier.state(key);
      const b = e.breaker;
      let health: EndpointHealth = 'healthy';
      if (b?.state === 'open') health = 'breaker-open';
      else if (b?.state === 'half-open') health = 'half-open';
      else if (o?.ejected) health = 'ejected';
      else if (!e.activeHealthy) health = 'health-check-failed';
      endpoints.push({
        key, address: ep.address, port: ep.port, zone: ep.zone, weight: ep.weight, ready: ep.ready, health,
        ewmaMs: e.host.load.peekMs(now),
        inflight: e.host.load.inflight,
        timesEjected: o?.timesEjected ?? 0,
        ejectedUntil: iso(o?.ejectedUntil ?? null),
        lastEjectionReason: o?.lastReason ?? null,
        breaker: b ? { state: b.state, until: iso(b.until) } : null,
        activeHealthy: e.activeHealthy,
        successes: e.successes,
        failures: e.failures,
        consecutiveConnectFailures: e.connectFailures,
      });
    }
    return {
      name: this.name,
      balancer: this.policy.loadBalancer.kind,
      panic: this.picker.panic,
      endpoints,
      limits: this.limits.snapshot(),
      retryBudget: { balance: this.budget.balance() },
      ring: this.balancer.inner.ring?.() ?? null,
    };
  }

  close(): void {
    this.closed = true;
    this.outlier.close();
    for (const e of this.entries.values()) e.breaker?.close();
    this.checker?.close();
    this.checker = null;
    this.untrack();
  }

  private rebuild(): void {
    this.dirty = false;
    const wasPanic = this.picker.panic;
    this.picker = this.balancer.build(this.hosts);
    if (this.picker.panic !== wasPanic) {
      this.logger?.warn(this.picker.panic ? 'panic mode: too few healthy endpoints, balancing over all' : 'left panic mode', { ...this.picker.counts });
    }
  }

  private eligibility(h: Host): Eligibility {
    const e = this.entries.get(h.key);
    if (!e || !h.endpoint.ready) return 'excluded';
    if (e.breaker && !e.breaker.available) return 'blocked';
    if (!e.activeHealthy || this.outlier.isEjected(h.key)) return 'degraded';
    return 'healthy';
  }

  private onOutlierEvent(e: OutlierEvent): void {
    if (e.type === 'detected') {
      this.metrics?.outlierDetected(this.name, e.reason, e.action);
      return;
    }
    this.dirty = true;
    this.onHealthChange();
    // Logged by the worker that decided it; the others follow it quietly (one line per ejection, not one per worker).
    if (e.remote) return;
    if (e.type === 'ejected') {
      this.logger?.warn('endpoint ejected', { endpoint: e.endpoint, reason: e.reason, until: new Date(e.until).toISOString(), timesEjected: e.timesEjected });
    } else {
      this.logger?.info('endpoint unejected', { endpoint: e.endpoint, cause: e.cause });
    }
  }

  private makeBalancer(): EjectingBalancer {
    const inner = createBalancer(this.policy.loadBalancer, { clock: this.clock, random: this.random, background: this.background });
    return new EjectingBalancer(inner, { eligibility: (h) => this.eligibility(h) }, this.policy.outlierDetection.panicThresholdPercent);
  }

  private makeBudget(): RetryBudget {
    const r = this.policy.retry;
    // Shared (listener workers): a changed budget keeps the ring's last ttl of deposits and
    // withdrawals, since the other workers go on using it; alone, it starts afresh.
    return new RetryBudget(
      { ratio: r.budgetRatio, minPerSecond: r.budgetMinPerSecond, ttlMs: r.budgetTtlMs },
      this.clock,
      () => this.metrics?.retryBudgetExhausted(this.name),
      this.shared?.budget ?? undefined,
    );
  }

  private makeBreaker(key: string): EndpointBreaker | null {
    if (this.policy.circuitBreaker.accrual === 'off') return null;
    return new EndpointBreaker(this.policy.circuitBreaker, this.clock, this.random, (state) => {
      this.dirty = true;
      this.onHealthChange();
      if (state === 'open') this.logger?.warn('endpoint breaker open', { endpoint: key });
    });
  }

  private makeChecker(): HealthChecker | null {
    const hc = this.policy.healthCheck;
    if (!hc || !this.runHealthChecks) return null;
    return new HealthChecker(
      hc,
      this.clock,
      {
        onChange: (key, healthy) => {
          const e = this.entries.get(key);
          if (e) e.activeHealthy = healthy;
          this.dirty = true;
          this.onHealthChange();
        },
        onResult: (key, ok) => {
          if (ok) this.outlier.healthCheckPassed(key);
        },
        onProbe: (transport, result) => this.metrics?.healthCheck(this.name, hc.kind, transport, result),
      },
      this.logger,
      this.meshProbes,
    );
  }

  private updateChecker(): void {
    if (!this.checker) return;
    const targets = [];
    for (const e of this.entries.values()) {
      const ep = e.host.endpoint;
      if (ep.ready) targets.push({ key: e.host.key, address: ep.address, port: ep.port, proxyPort: ep.proxyPort, identity: ep.identity });
      else e.activeHealthy = true;
    }
    this.checker.update(targets);
  }
}
