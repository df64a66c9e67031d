import { Counter, type Registry } from 'prom-client';

/**
 * The admin port's render budget for its expensive pages: the /api/ JSON the dashboard and
 * `wren stat` poll, each an aggregation over every stats series, proxy and endpoint, done
 * synchronously on the event loop that also serves the proxies' discovery streams and
 * Certify. A page whose render took at least `thresholdMs` is refused for `factor` times
 * that render's time afterwards: 503 with Retry-After (RFC 9110 section 15.6.4: the server
 * is temporarily overloaded; section 10.2.3: when to come back), counted in
 * wren_cp_admin_render_refused_total{page}. So a page costs at most 1 / (1 + factor) of the
 * loop however often it is asked for (20 % with the default 4), while a cheap render (a small
 * mesh: well under 100 ms) is never refused. Pages are budgeted apart, so a slow
 * /api/topology does not refuse the /api/why a dashboard asks for beside it (and each kind
 * of /api/stat is a page: budgetedPage). This is the
 * budget Envoy's overload manager applies to whole listeners, here per page; the CLI and the
 * dashboard wait out the Retry-After (cli/retry-after.ts, dashboard.js).
 */
export interface RenderBudgetSettings {
  /** Refuse a page for this many times its last render's time; 0 turns the budget off. */
  readonly factor: number;
  /** Only a render at least this long (ms) refuses the page afterwards. */
  readonly thresholdMs: number;
}

export const DEFAULT_RENDER_BUDGET: RenderBudgetSettings = Object.freeze({ factor: 4, thresholdMs: 100 });

/** The kinds /api/stat aggregates (dashboard-api.ts), each budgeted as its own page. */
const STAT_KINDS: ReadonlySet<string> = new Set(['service', 'workload', 'namespace', 'edge']);

/**
 * The page a request path is budgeted as, or null for a path the budget does not cover
 * (/live, /ready, /metrics, /debug/*: cheap, or already rendered once per config version).
 * /api/services/NAME and /api/proxies/POD are one page each: their cost is the same whatever the name.
 *
 * /api/stat is one page per kind (`/api/stat?kind=edge`; no kind is `service`, as the page
 * reads it): the kinds aggregate different series into different groups (service: the
 * outbound series by service; workload and namespace: the inbound ones by reporter; edge:
 * the outbound ones by caller and callee, a key built per series), so one kind's render
 * time does not predict another's, and a slow `wren stat edges` refused the cheap `wren stat
 * svc` beside it. Each kind still takes at most 1 / (1 + factor) of the loop, as each page
 * does. A kind the page refuses (a 400, never slow) is `/api/stat`: the pages budgeted stay
 * these few names, whatever a caller sends (they key a map and label a metric).
 */
export function budgetedPage(pathname: string, query?: URLSearchParams): string | null {
  if (pathname === '/api/stat') {
    const kind = query?.get('kind') ?? 'service';
    return STAT_KINDS.has(kind) ? `/api/stat?kind=${kind}` : pathname;
  }
  if (pathname === '/api/topology' || pathname === '/api/why' || pathname === '/api/proxies') return pathname;
  if (pathname.startsWith('/api/services/')) return '/api/services';
  if (pathname.startsWith('/api/proxies/')) return '/api/proxies/POD';
  return null;
}

export interface Refusal {
  /** How long the page stays refused (ms). */
  readonly forMs: number;
  /** The render that caused it (ms). */
  readonly renderMs: number;
}

export class RenderBudget {
  private readonly refused = new Map<string, { untilMs: number; renderMs: number }>();
  private readonly counter: Counter<'page'>;

  constructor(
    readonly settings: RenderBudgetSettings,
    /** Monotonic ms: what renders are timed with. */
    readonly now: () => number,
    registry: Registry,
  ) {
    // One counter per registry: a control plane (or a test) may start its admin port more than once on it.
    const name = 'wren_cp_admin_render_refused_total';
    this.counter = (registry.getSingleMetric(name) as Counter<'page'> | undefined) ?? new Counter({
      name,
      help: 'Admin-port requests refused 503 with Retry-After by the render budget (--admin-render-budget): the page took long to render and is refused for a multiple of that time, by page',
      labelNames: ['page'] as const,
      registers: [registry],
    });
  }

  /** The refusal in force for `page` now (and counts it), or null when it may be rendered. */
  refusal(page: string): Refusal | null {
    const r = this.refused.get(page);
    if (!r) return null;
    const left = r.untilMs - this.now();
    if (left <= 0) {
      this.refused.delete(page);
      return null;
    }
    this.counter.inc({ page });
    return { forMs: left, renderMs: r.renderMs };
  }

  /** A render of `page` took `renderMs`: refuse it for factor × that when it reached the threshold. */
  record(page: string, renderMs: number): void {
    if (this.settings.factor <= 0 || renderMs < this.settings.thresholdMs) return;
    this.refused.set(page, { untilMs: this.now() + this.settings.factor * renderMs, renderMs });
  }
}

/** Retry-After in delay-seconds (RFC 9110 section 10.2.3 takes whole seconds): rounded up, at least 1. */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
