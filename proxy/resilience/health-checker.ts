import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { HealthCheckPolicy } from '../../contract/model.js';
import { createGrpcHealthClient, grpcProbe, httpProbe, tcpProbe, type HealthClient, type ProbeTarget } from './health-probes.js';
import type { MeshedTarget, MeshProbes } from './mesh-probes.js';

/**
 * Optional active health checking (Envoy core/v3/health_check.proto semantics): every
 * `interval` each endpoint is probed (HTTP GET path → 2xx, TCP connect, or gRPC
 * grpc.health.v1 Check → SERVING) with a `timeout`; `unhealthyThreshold` consecutive
 * failures mark it unhealthy and `healthyThreshold` consecutive successes restore it.
 * The next probe is scheduled when the previous one ends, so probes never pile up.
 *
 * Deviation from Envoy: a new endpoint starts healthy instead of waiting for its first
 * check, because in a mesh endpoints arrive already gated by Kubernetes readiness; the
 * first check runs immediately.
 *
 * A meshed endpoint (one with a sidecar: `proxyPort` set) is probed through its sidecar
 * over mutual TLS when `mesh` probes are given (mesh-probes.ts); unmeshed endpoints get
 * plaintext probes to the app port (health-probes.ts).
 */
export interface HealthTargetSpec extends ProbeTarget {
  readonly key: string;
  /** The peer sidecar's inbound port; null or absent for an unmeshed endpoint. */
  readonly proxyPort?: number | null;
  /** The SPIFFE ID the peer sidecar must present. */
  readonly identity?: string;
}

export type ProbeTransport = 'mtls' | 'plaintext';
export type ProbeResult = 'healthy' | 'unhealthy' | 'timeout';

interface TargetState {
  spec: HealthTargetSpec;
  healthy: boolean;
  successes: number;
  failures: number;
  timer: Timer | null;
  abort: AbortController | null;
  grpc: HealthClient | null;
  closed: boolean;
}

export class HealthChecker {
  private readonly targets = new Map<string, TargetState>();

  constructor(
    private readonly policy: HealthCheckPolicy,
    private readonly clock: Clock,
    private readonly events: {
      /** A target crossed a threshold. */
      onChange(key: string, healthy: boolean): void;
      /** Every probe result (the Cluster unejects outlier-ejected hosts on a pass). */
      onResult?(key: string, ok: boolean): void;
      /** Every probe, for metrics: how it went and over which transport. */
      onProbe?(transport: ProbeTransport, result: ProbeResult): void;
    },
    private readonly logger?: Logger,
    private readonly mesh?: MeshProbes,
  ) {}

  /** Check exactly these targets: new ones start now, removed ones stop. */
  update(specs: readonly HealthTargetSpec[]): void {
    const keep = new Map(specs.map((s) => [s.key, s]));
    /** Targets restarted for a changed sidecar port or identity while unhealthy. */
    let unhealthy: Set<string> | undefined;
    for (const [key, st] of this.targets) {
      const spec = keep.get(key);
      if (!spec || !sameTarget(spec, st.spec)) {
        this.stop(key, st);
        // Restarted, it keeps its health: the owner (Cluster) was told it is unhealthy and
        // hears only of changes, so a restart as healthy would leave it out for good.
        if (spec && !st.healthy) (unhealthy ??= new Set()).add(key);
      }
    }
    for (const spec of keep.values()) {
      if (this.targets.has(spec.key)) continue;
      const st: TargetState = { spec, healthy: !unhealthy?.has(spec.key), successes: 0, failures: 0, timer: null, abort: null, grpc: null, closed: false };
      this.targets.set(spec.key, st);
      this.schedule(st, 0);
    }
  }

  isHealthy(key: string): boolean {
    return this.targets.get(key)?.healthy ?? true;
  }

  close(): void {
    for (const [key, st] of this.targets) this.stop(key, st);
  }

  private stop(key: string, st: TargetState): void {
    st.closed = true;
    if (st.timer) this.clock.clearTimeout(st.timer);
    st.abort?.abort();
    st.grpc?.close();
    this.targets.delete(key);
  }

  private schedule(st: TargetState, delay: number): void {
    st.timer = this.clock.setTimeout(() => {
      st.timer = null;
      void this.check(st);
    }, delay);
    st.timer.unref?.();
  }

  private async check(st: TargetState): Promise<void> {
    const abort = new AbortController();
    st.abort = abort;
    const timeout = this.clock.setTimeout(() => abort.abort(), this.policy.timeoutMs);
    timeout.unref?.();
    let ok: boolean;
    try {
      ok = await this.probe(st, abort.signal);
    } catch {
      ok = false;
    }
    this.clock.clearTimeout(timeout);
    st.abort = null;
    if (st.closed) return;
    const timedOut = abort.signal.aborted;
    if (timedOut) ok = false; // answered after the timeout: still a failure
    this.events.onProbe?.(this.meshed(st.spec) ? 'mtls' : 'plaintext', timedOut ? 'timeout' : ok ? 'healthy' : 'unhealthy');
    this.account(st, ok);
    this.schedule(st, this.policy.intervalMs);
  }

  /** The target as a meshed one when it has a sidecar and mesh probes are available. */
  private meshed(t: HealthTargetSpec): MeshedTarget | null {
    if (!this.mesh || t.proxyPort === null || t.proxyPort === undefined) return null;
    return { address: t.address, port: t.port, proxyPort: t.proxyPort, identity: t.identity ?? '' };
  }

  private probe(st: TargetState, signal: AbortSignal): Promise<boolean> {
    const p = this.policy;
    // `path` names the gRPC service to ask about; '/' or '' means the whole server.
    const service = () => p.path.replace(/^\/+/, '');
    const m = this.meshed(st.spec);
    if (m) {
      const mesh = this.mesh!;
      if (p.kind === 'http') return mesh.http(m, p.path || '/', p.timeoutMs, signal);
      if (p.kind === 'tcp') return mesh.tcp(m, p.timeoutMs, signal);
      return mesh.grpc(m, service(), p.timeoutMs, signal);
    }
    switch (p.kind) {
      case 'http':
        return httpProbe(st.spec, p.path || '/', signal);
      case 'tcp':
        return tcpProbe(st.spec, signal);
      case 'grpc': {
        st.grpc ??= createGrpcHealthClient(st.spec);
        return grpcProbe(st.grpc, service(), signal);
      }
    }
  }

  private account(st: TargetState, ok: boolean): void {
    const key = st.spec.key;
    if (ok) {
      st.successes++;
      st.failures = 0;
    } else {
      st.failures++;
      st.successes = 0;
    }
    this.events.onResult?.(key, ok);
    if (st.healthy && st.failures >= this.policy.unhealthyThreshold) {
      st.healthy = false;
      this.logger?.warn('endpoint failed active health checks', { endpoint: key, kind: this.policy.kind, failures: st.failures });
      this.events.onChange(key, false);
    } else if (!st.healthy && st.successes >= this.policy.healthyThreshold) {
      st.healthy = true;
      this.logger?.info('endpoint passes active health checks again', { endpoint: key, kind: this.policy.kind });
      this.events.onChange(key, true);
    }
  }
}

function sameTarget(a: HealthTargetSpec, b: HealthTargetSpec): boolean {
  return a.address === b.address && a.port === b.port && (a.proxyPort ?? null) === (b.proxyPort ?? null) && (a.identity ?? '') === (b.identity ?? '');
}
