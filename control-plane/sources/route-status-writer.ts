import * as k8s from '@kubernetes/client-node';
import type { Clock, Timer } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { countKubeWriteRetry, throttledForMs } from '../kube-write-retry.js';
import { CONTROLLER_NAME, routeKey, type RouteParentStatus, type RouteStatus } from '../translate/route-compile.js';
import { GATEWAY_GROUP, type KRoute } from '../translate/route-objects.js';

/**
 * Writes HTTPRoute / GRPCRoute `status.parents` back (Kubernetes mode): one entry per
 * Service parentRef, controllerName `wren.io/mesh`, conditions Accepted and ResolvedRefs
 * with observedGeneration (route-compile.ts decides them). Entries of other controllers
 * (a Gateway implementation on the same route) are kept as they are.
 *
 * No write loops: a status update is itself a watch event that brings the route back, so
 * a write happens only when what we want differs from what the object already carries
 * (compared without lastTransitionTime, which is kept while a condition's status stays),
 * and never twice for the same wanted status while the first write's event is on its way.
 * The patch carries the object's resourceVersion as a precondition: the list is replaced
 * whole (a merge patch cannot merge list items), so a write based on a stale object
 * would drop what another controller wrote meanwhile; the API server answers 409 instead,
 * and the newer object's watch event brings a fresh attempt. Any failed write (a
 * conflict, the API away) is logged and retried on the next change of the route, or after
 * `retryMs` (1 s) with the latest objects if no change comes first. A 429 with Retry-After
 * (API Priority and Fairness had no seat for the PATCH) waits max(retryMs, Retry-After),
 * at most MAX_STATUS_RETRY_AFTER_MS, as client-go's rest client waits out a Retry-After
 * (rest/with_retry.go checkWait) before asking again: asking again after 1 s only made the
 * API server, which had said when to come back, turn the write away again. Counted in
 * wren_cp_kube_write_retries_total{request="RouteStatus", outcome="retried"}.
 */
/**
 * The longest Retry-After a failed status write waits: a status can be written late, but
 * not never, and a Retry-After of hours (a misconfigured proxy in front of the API server)
 * must not hold every route's status that long. client-go does not cap it; a minute is
 * the longest APF asks for in practice (its Retry-After is a second or a few).
 */
export const MAX_STATUS_RETRY_AFTER_MS = 60_000;

const PLURALS = { HTTPRoute: 'httproutes', GRPCRoute: 'grpcroutes' } as const;

interface WireCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

interface WireParent {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: WireCondition[];
}

const isOurs = (p: unknown): p is WireParent => (p as { controllerName?: unknown } | null)?.controllerName === CONTROLLER_NAME;

/** What is compared: the parent and each condition without its transition time. */
function comparable(parents: readonly (WireParent | RouteParentStatus)[]): string {
  return JSON.stringify(
    parents.map((p) => [
      sortKeys(p.parentRef),
      (p.conditions as readonly { type: string; status: string; reason: string; message: string; observedGeneration: number }[]).map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration]),
    ]),
  );
}

const sortKeys = (o: Readonly<Record<string, unknown>>): [string, unknown][] => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));

export class RouteStatusWriter {
  /** routeKey -> the comparable status last written (or being written). */
  private readonly written = new Map<string, string>();
  private last: { routes: readonly KRoute[]; statuses: ReadonlyMap<string, RouteStatus> } | null = null;
  private retryTimer: Timer | null = null;
  /** When retryTimer fires, by the clock's now(). */
  private retryAtMs = 0;
  private stopped = false;

  constructor(
    private readonly custom: k8s.CustomObjectsApi,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly retryMs = 1_000,
  ) {}

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** Every route object the source holds, and the compiler's statuses (routes without a Service parent have none). */
  update(routes: readonly KRoute[], statuses: ReadonlyMap<string, RouteStatus>): void {
    if (this.stopped) return;
    this.last = { routes, statuses };
    const live = new Set<string>();
    for (const route of routes) {
      const key = routeKey(route);
      live.add(key);
      const want = statuses.get(key)?.parents ?? [];
      const have = route.statusParents.filter(isOurs);
      const wanted = comparable(want);
      if (wanted === comparable(have)) {
        this.written.set(key, wanted);
        continue;
      }
      if (this.written.get(key) === wanted) continue; // our write's watch event has not arrived yet
      this.written.set(key, wanted);
      void this.write(route, key, want, have, wanted);
    }
    for (const key of this.written.keys()) if (!live.has(key)) this.written.delete(key);
  }

  private async write(route: KRoute, key: string, want: readonly RouteParentStatus[], have: readonly WireParent[], wanted: string): Promise<void> {
    // metav1.Time: RFC 3339 in whole seconds. The system clock's now() is wall time (epoch ms).
    const now = new Date(Math.floor(this.clock.wallNow())).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const ours: WireParent[] = want.map((p) => {
      const before = have.find((h) => comparable([{ ...h, conditions: [] }]) === comparable([{ ...p, conditions: [] }]));
      return {
        parentRef: { ...p.parentRef },
        controllerName: p.controllerName,
        conditions: p.conditions.map((c) => {
          const old = before?.conditions.find((o) => o.type === c.type);
          return { ...c, lastTransitionTime: old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now };
        }),
      };
    });
    const others = route.statusParents.filter((p) => !isOurs(p));
    try {
      await this.custom.patchNamespacedCustomObjectStatus(
        { group: GATEWAY_GROUP, version: 'v1', namespace: route.namespace, plural: PLURALS[route.kind], name: route.name, body: {
            ...(route.resourceVersion ? { metadata: { resourceVersion: route.resourceVersion } } : {}),
            status: { parents: [...others, ...ours] },
          },
        },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
      this.logger.debug('route status written', { route: key, parents: ours.length });
    } catch (e) {
      if (this.written.get(key) === wanted) this.written.delete(key);
      const throttled = throttledForMs(e, this.clock.wallNow());
      const waitMs = throttled === undefined ? this.retryMs : Math.max(this.retryMs, Math.min(throttled, MAX_STATUS_RETRY_AFTER_MS));
      if (throttled !== undefined) countKubeWriteRetry('RouteStatus', 'retried');
      this.logger.warn('route status write failed; retrying', { route: key, error: (e as Error).message, retryInMs: waitMs, ...(throttled !== undefined ? { retryAfterMs: throttled } : {}) });
      this.retryAfter(waitMs);
    }
  }

  /**
   * One timer for every route's retry (update() writes all of them with the latest objects),
   * due at the latest wait asked for: a 429's Retry-After is the API server's, whichever
   * write it answered, so a shorter retry armed before it must not ask again sooner.
   */
  private retryAfter(waitMs: number): void {
    if (this.stopped) return;
    const at = this.clock.now() + waitMs;
    if (this.retryTimer) {
      if (at <= this.retryAtMs) return;
      this.clock.clearTimeout(this.retryTimer);
    }
    this.retryAtMs = at;
    // The route's next watch event may already have come (and been skipped while this write was in flight).
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      if (this.last) this.update(this.last.routes, this.last.statuses);
    }, waitMs);
  }
}
