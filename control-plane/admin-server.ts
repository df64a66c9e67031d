import type { IncomingMessage, ServerResponse } from 'node:http';
import { boundFlush } from '../proxy/net/delayed-close.js';
import { createServer } from '../common/node-http.js';
import type { AdminAccess } from './admin-access.js';
import type { DiscoveryServer } from './discovery/discovery-server.js';
import type { EndpointWithdrawal } from './health/endpoint-withdrawal.js';
import type { ControlPlaneMetrics } from './metrics.js';
import type { MeshStore } from './store/mesh-store.js';
import { listen } from '../common/listen.js';
import { adminHostRefusal, requestTarget } from '../common/admin-host.js';
import { systemClock, type Clock } from '../common/clock.js';
import { BoundedAccept, type AcceptLimit, type AcceptLimits } from '../common/bounded-accept.js';
import type { StatsStore } from './stats/stats-store.js';
import { secretsHidden } from '../contract/jwks-uri-shown.js';

/** What the admin port serves (its 404 lists them; `wren control-plane --help` too). */
export const ADMIN_PATHS: readonly string[] = [
  '/live', '/ready', '/metrics', '/debug/proxies', '/debug/proxy-status', '/debug/proxy-config', '/debug/health', '/debug/trust', '/debug/view', '/debug/rejected',
  '/dashboard/', '/api/stat', '/api/topology', '/api/services/NAME.NAMESPACE', '/api/proxies', '/api/why',
];
import { dashboardApi } from './dashboard/dashboard-api.js';
import { dashboardAsset } from './dashboard/dashboard-assets.js';
import { budgetedPage, DEFAULT_RENDER_BUDGET, RenderBudget, retryAfterSeconds, type RenderBudgetSettings } from './dashboard/render-budget.js';
import type { SourceRejection } from './sources/source-rejection.js';

/**
 * The control plane's own admin port (15014, like istiod's monitoring port):
 * /live, /ready (200 once the source has synced, 503 while draining), /metrics,
 * /debug/proxies (each subscriber's ACKed version and inbound policy, NACKs and reported
 * ejections), /debug/proxy-status (per proxy: SYNCED / STALE / NACKED, versions, certificate,
 * proxy version; discovery/proxy-status.ts), /debug/proxy-config?pod=NS/NAME (what it sent that proxy), /debug/health (every endpoint proxies report unhealthy in their HealthReports,
 * with the reporters; and under `withdrawal` the endpoints withdrawn mesh-wide on those reports, the
 * ones held back by the panic threshold, the settings and the last decisions), /debug/view (the current mesh view, PeerAuthentications and
 * AuthorizationPolicies, the compiled routes, the source's rejected manifests and the objects of kinds it does not read), /debug/rejected (the
 * objects the source rejects now, by kind/namespace/name with the field path; `wren check`) and /debug/trust (the trust
 * anchors and issuer the CA uses, and per proxy the anchors it trusts and the root its
 * certificate chains to; `wren trust-anchors check` reads it). /dashboard/ is the web dashboard and
 * /api/* the JSON it and `wren stat` read (control-plane/dashboard/, docs/operations.md).
 */
export interface AdminDeps {
  readonly store: MeshStore;
  readonly metrics: ControlPlaneMetrics;
  readonly discovery: DiscoveryServer;
  readonly withdrawal?: EndpointWithdrawal;
  readonly draining: () => boolean;
  readonly sourceErrors: () => readonly string[];
  /** Objects the source read but does not use (kinds it does not know), each with its file. */
  readonly sourceIgnored: () => readonly unknown[];
  readonly sourceName: string;
  /** The objects the source currently rejects (GET /debug/rejected); absent: a source that keeps none. */
  readonly sourceRejected?: () => readonly SourceRejection[];
  /** The proxies' traffic (StatsReports), for /api/ and the dashboard; absent: those paths answer 404. */
  readonly stats?: StatsStore;
  readonly clock?: Clock;
  /** Who may read what is not /live, /ready or /metrics. */
  readonly access: AdminAccess;
  /** Default DEFAULT_ADMIN_LIMITS; each counted when it fires (wren_cp_admin_limit_exceeded_total{limit}). */
  readonly limits?: AdminLimits;
  /** The /api/ pages' render budget (--admin-render-budget, --admin-render-threshold; dashboard/render-budget.ts); default DEFAULT_RENDER_BUDGET. */
  readonly renderBudget?: RenderBudgetSettings;
  /** What render times and refusals are measured with (ms, monotonic); default the clock's now. Tests make a render "take" a given time. */
  readonly renderNow?: () => number;
}

/**
 * The admin port's connection cap and request-head timeout (common/bounded-accept.ts, as the
 * proxy's admin and metrics ports have). The port binds the pod's addresses in a cluster:
 * without a cap anyone who reaches it could hold as many idle sockets as the process may open
 * (node's http server has no cap), and the gRPC port's accepts would then fail with EMFILE;
 * node's own headersTimeout (60 s, checked every 30 s) lets a slow-header client hold each
 * for a minute. 256 connections is far beyond kubelet, Prometheus and a few operators' CLIs
 * and dashboards; 10 s for a request head is the proxy's limits.requestHeadersTimeoutMs default.
 */
export interface AdminLimits extends AcceptLimits {
  /**
   * An answered response must make progress (the client reading it) within this, or its
   * connection is destroyed (proxy/net/delayed-close.ts boundFlush, Envoy's delayed close); 0: off.
   */
  readonly delayedCloseMs: number;
}

type AdminLimit = AcceptLimit | 'delayed-close-timeout';

/**
 * The delayed-close bound is 5 s, not the proxy's 1 s: an operator's `kubectl port-forward`
 * or the API server's pod proxy may pause a large /debug/view for a moment; progress restarts it.
 */
export const DEFAULT_ADMIN_LIMITS: AdminLimits = { maxConnectionsPerListener: 256, requestHeadersTimeoutMs: 10_000, delayedCloseMs: 5_000 };

/** The running admin port; close() stops accepting and drops every open connection. */
export interface AdminServerHandle {
  readonly port: number;
  close(): Promise<void>;
}

export async function startAdminServer(host: string, port: number, d: AdminDeps): Promise<AdminServerHandle> {
  const limits = d.limits ?? DEFAULT_ADMIN_LIMITS;
  const clock = d.clock ?? systemClock;
  const fired = (limit: AdminLimit): void => d.metrics.adminLimitExceeded.inc({ limit });
  const rendered = new RenderedView();
  const budget = new RenderBudget(d.renderBudget ?? DEFAULT_RENDER_BUDGET, d.renderNow ?? (() => clock.now()), d.metrics.registry);
  const server = createServer((req, res) => {
    const socket = req.socket;
    accepted.headArrived(socket);
    res.once('finish', () => accepted.responseDone(socket));
    // Once answered, the response must drain without stalling (boundFlush): a client that
    // does not read would otherwise hold its socket, and a /debug/view of the whole mesh
    // with it, for ever.
    void answer(req, res, d, rendered, budget).then(
      () => boundFlush(res, clock, limits.delayedCloseMs, () => fired('delayed-close-timeout')),
      () => res.destroy(),
    );
  });
  const accepted = new BoundedAccept(server, limits, clock, fired);
  const bound = (await listen(accepted.server, port, host)).port;
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        accepted.server.close(() => resolve());
        accepted.destroyAll();
      }),
  };
}

async function answer(req: IncomingMessage, res: ServerResponse, d: AdminDeps, rendered: RenderedView, budget: RenderBudget): Promise<void> {
  // The target and the authority it names, read as the proxy's admin port reads them: two
  // Host headers, `*` or authority-form are a 400; an absolute-form target's authority is
  // the one checked (RFC 9112 section 3.2.2); `//x` is a path (common/admin-host.ts).
  const target = requestTarget(req);
  if (typeof target === 'string') return sendJson(res, 400, { error: target });
  const { url } = target;
  // DNS rebinding: only localhost or an IP literal as Host (kubelet probes and
  // Prometheus scrapes use the pod IP); see common/admin-host.ts.
  const badHost = adminHostRefusal(target.host);
  if (badHost) return sendJson(res, 403, { error: badHost });
  // Every path is read-only: a 405 names the methods it has (RFC 9110 section 15.5.6: it MUST send Allow).
  if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: `method ${req.method} not allowed: the admin port is read-only (GET, HEAD)` }, { allow: 'GET, HEAD' });
  // Debug pages, /api/ and the dashboard: localhost or an administrator's token (admin-access.ts).
  const refused = await d.access.refusal(url.pathname, req.socket.remoteAddress, req.headers);
  if (refused) return sendJson(res, 403, { error: refused });
  try {
    await serve(url, res, d, rendered, budget);
  } catch (e) {
    // A bug in one page answers 500; it never takes the control plane down.
    if (!res.headersSent) sendJson(res, 500, { error: (e as Error).message });
    else res.destroy();
  }
}

function sendJson(res: ServerResponse, code: number, body: unknown, extra: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'application/json', ...extra });
  res.end(renderJson(body));
}

function renderJson(body: unknown): string {
  // Every page, in whatever shape it carries a policy (a proxy's ACKed inbound policy, the
  // view's RequestAuthentications and AuthorizationPolicies, /api/services, /api/why): a
  // jwksUri without its query, which may carry an API key (the proxy's /config_dump shows it
  // so), and no value of a request.headers[...] / request.auth.claims[...] condition, which may
  // be a static API key (contract/jwks-uri-shown.ts).
  return JSON.stringify(body, secretsHidden, 2) + '\n';
}

/**
 * /debug/view, rendered once per mesh view and source state. It is one synchronous
 * JSON.stringify of every Service, endpoint, policy and route, on the event loop that also
 * serves the proxies' discovery streams: 5,000 Services of 2 ports and 5 endpoints each
 * (25 MB) take 0.7-1.1 s to render, with 20 endpoints each (85 MB) 2-3 s. A render cannot
 * overlap another (it never yields), so "one at a time" would bound nothing; what bounds it
 * is that whoever reaches the port, repeating the request, gets the same bytes until the view
 * changes: one render per config version (which the port's callers cannot cause), and one
 * Buffer shared by every connection still reading it rather than a copy each. The key is
 * compared by identity (the store's view is a new frozen object per commit; the directory
 * source's ignored list a new array per scan, an empty one as empty), the source's errors by
 * their text.
 */
class RenderedView {
  private key: readonly unknown[] = [];
  private body: Buffer | null = null;

  get(d: AdminDeps): Buffer {
    const errors = d.sourceErrors();
    const ignored = d.sourceIgnored();
    // An empty list is often a new [] each call (a source that keeps none).
    const key = [d.store.view, d.store.ready, errors.join('\n'), ignored.length === 0 ? 0 : ignored];
    if (this.body && key.every((k, i) => k === this.key[i])) return this.body;
    const v = d.store.view;
    const body = Buffer.from(renderJson({
      source: d.sourceName, version: v.version, ready: d.store.ready, errors, ignored, services: [...v.services.values()],
      peerAuthentications: v.policy.peerAuthentications, authorizationPolicies: v.policy.authorizationPolicies,
      requestAuthentications: v.policy.requestAuthentications ?? [],
      // The compiled HTTPRoutes/GRPCRoutes by Service: producer routes, and consumer routes by caller namespace.
      routes: Object.fromEntries([...v.routes.byService].map(([k, r]) => [k, { producer: r.producer, consumers: Object.fromEntries(r.consumers) }])),
      externalServices: v.policy.externalServices ?? [],
    }));
    this.key = key;
    this.body = body;
    return body;
  }
}

function serve(url: URL, res: ServerResponse, d: AdminDeps, rendered: RenderedView, budget: RenderBudget): unknown {
  const json = (code: number, body: unknown): void => sendJson(res, code, body);
  switch (url.pathname) {
    case '/live':
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('live\n');
    case '/ready': {
      const ok = d.store.ready && !d.draining();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      return res.end(ok ? 'ready\n' : d.draining() ? 'draining\n' : 'source not synced\n');
    }
    case '/metrics':
      return d.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': d.metrics.registry.contentType });
          res.end(text);
        },
        (e: Error) => json(500, { error: e.message }),
      );
    case '/debug/proxies':
      return json(200, { version: d.store.view.version, proxies: d.discovery.debugProxies() });
    case '/debug/proxy-status':
      // Per proxy: sync status (SYNCED / STALE / NACKED), versions, certificate, proxy version (`wren proxy-status`).
      return json(200, { latestVersion: d.store.view.version, ready: d.store.ready, proxies: d.discovery.proxyStatus() });
    case '/debug/proxy-config': {
      // What the control plane sent the proxy of ?pod=namespace/name (`wren proxy-config`); one entry per stream.
      const pod = url.searchParams.get('pod') ?? '';
      if (!/^[^/]+\/[^/]+$/.test(pod)) return json(400, { error: "query parameter 'pod' must be namespace/name" });
      const dumps = d.discovery.proxyConfig(pod);
      return dumps.length === 0 ? json(404, { error: `no proxy of pod ${pod} is connected to this control plane` }) : json(200, { proxies: dumps });
    }
    case '/debug/health':
      return json(200, { endpoints: d.discovery.debugHealth(), withdrawal: d.withdrawal?.debug() ?? null });
    case '/debug/trust':
      return json(200, d.discovery.debugTrust());
    case '/debug/rejected':
      // Objects the source read and rejects now (kind, namespace/name, field path, reason; the
      // file in dir mode): their last good version, if any, is what proxies get (`wren check`).
      return json(200, { source: d.sourceName, ready: d.store.ready, rejected: d.sourceRejected?.() ?? [] });
    case '/debug/view':
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(rendered.get(d));
    default: {
      if (d.stats && d.clock && url.pathname.startsWith('/api/')) {
        const page = budgetedPage(url.pathname, url.searchParams);
        const refused = page === null ? null : budget.refusal(page);
        if (refused) {
          // The render budget (dashboard/render-budget.ts): the last render of this page was
          // long, so it rests for a multiple of that; the CLI and the dashboard come back after Retry-After.
          return sendJson(res, 503, { error: `busy: ${page} took ${Math.round(refused.renderMs)} ms to render and is served again in ${Math.ceil(refused.forMs)} ms (the admin render budget, --admin-render-budget)` }, {
            'retry-after': String(retryAfterSeconds(refused.forMs)), 'cache-control': 'no-store',
          });
        }
        const started = budget.now();
        let a: ReturnType<typeof dashboardApi>;
        let text: string;
        try {
          a = dashboardApi(url.pathname, url.searchParams, { store: d.store, discovery: d.discovery, withdrawal: d.withdrawal, stats: d.stats, clock: d.clock });
          // The render is the aggregation and its JSON text: both synchronous, both on the loop.
          text = a ? renderJson(a.body) : '';
        } finally {
          // Counted whether it answered or threw (answer() makes a throw a 500): a render that
          // spends 2 s of the loop and then fails cost the loop as much as one that succeeds,
          // and uncounted it could be asked again at once, as often as a caller likes.
          if (page !== null) budget.record(page, budget.now() - started);
        }
        if (a) {
          res.writeHead(a.status, { 'content-type': 'application/json' });
          return res.end(text);
        }
      }
      const asset = d.stats && url.pathname.startsWith('/dashboard') ? dashboardAsset(url.pathname) : null;
      if (asset) {
        // The page loads nothing from elsewhere and runs only its own script (no inline code): a
        // name from a manifest that slipped through escaping still could not run.
        res.writeHead(200, {
          'content-type': asset.contentType, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        });
        return res.end(asset.body);
      }
      return json(404, { error: 'not found', paths: ADMIN_PATHS });
    }
  }
}
