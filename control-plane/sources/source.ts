import type { Clock, Random, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import type { ControlPlaneMetrics } from '../metrics.js';
import type { MeshStore } from '../store/mesh-store.js';
import type { ClusterIndex, IndexChanges } from './cluster-index.js';
import { RefusedRoutes } from './refused-routes.js';
import type { SourceRejection } from './source-rejection.js';

/** Where the control plane's view comes from (Kubernetes API, a directory of manifests). */
export interface MeshSource {
  readonly name: string;
  /** Resolves after the initial sync, when the store has been filled and marked ready. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The objects it currently rejects (failed validation), for GET /debug/rejected and `wren check`. */
  rejected?(): readonly SourceRejection[];
}

export interface SourceContext {
  readonly store: MeshStore;
  readonly metrics: ControlPlaneMetrics;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: Random;
  readonly trustDomain: string;
  /**
   * Coalesce bursts of object events into one commit. A few ms at most: a readiness
   * flip must reach proxies fast, and Kubernetes updates the Pod and its EndpointSlice
   * within a few ms of each other. (Istio debounces 100 ms; we keep it tiny.)
   */
  readonly debounceMs?: number;
}

/** Flushes a ClusterIndex into the store after a tiny debounce. */
export class IndexCommitter {
  private timer: Timer | null = null;
  private readonly refusedRoutes: RefusedRoutes;

  constructor(
    private readonly index: ClusterIndex,
    private readonly ctx: SourceContext,
    private readonly source: string,
    /** Called after a commit whose routes were recompiled (the Kubernetes source writes route status from it). */
    private readonly onRoutes?: (status: NonNullable<IndexChanges['routeStatus']>) => void,
  ) {
    this.refusedRoutes = new RefusedRoutes(source === 'dir' ? 'dir' : 'kubernetes', ctx.metrics, ctx.logger);
  }

  touch(): void {
    if (this.timer || !this.index.hasDirty) return;
    this.timer = this.ctx.clock.setTimeout(() => {
      this.timer = null;
      this.flushNow();
    }, this.ctx.debounceMs ?? 2);
  }

  flushNow(): void {
    if (this.timer) this.ctx.clock.clearTimeout(this.timer);
    this.timer = null;
    const c = this.index.flush();
    for (const w of c.warnings) this.ctx.logger.warn('translation warning', { source: this.source, warning: w });
    this.ctx.store.apply(c.upserts, c.removes, c.policy, c.routes);
    if (c.policy) this.ctx.metrics.countFailClosed(c.policy);
    if (c.refusedRoutes) this.refusedRoutes.note(c.refusedRoutes);
    if (c.routeStatus) this.onRoutes?.(c.routeStatus);
    const view = this.ctx.store.view.services;
    this.ctx.metrics.services.set(view.size);
    let eps = 0;
    for (const s of view.values()) for (const p of s.ports) eps += p.endpoints.length;
    this.ctx.metrics.endpoints.set(eps);
  }

  cancel(): void {
    if (this.timer) this.ctx.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Capped exponential backoff with equal jitter. */
export function backoffDelay(attempt: number, random: Random, initialMs: number, maxMs: number): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return cap / 2 + random() * (cap / 2);
}
