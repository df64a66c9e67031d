import type { Clock } from '../../common/clock.js';
import { portPolicy, type RetryPolicy, type Service } from '../../contract/model.js';
import type { DiscoveryServer } from '../discovery/discovery-server.js';
import type { EndpointWithdrawal } from '../health/endpoint-withdrawal.js';
import type { MeshStore } from '../store/mesh-store.js';
import type { KAuthorizationPolicy } from '../translate/policy-objects.js';
import { WINDOWS_MS, type RetryRow, type StatsStore, type WindowName } from '../stats/stats-store.js';

export interface DashboardDeps {
  readonly store: MeshStore;
  readonly discovery: DiscoveryServer;
  readonly withdrawal?: EndpointWithdrawal;
  readonly stats: StatsStore;
  readonly clock: Clock;
}

export interface ApiAnswer {
  readonly status: number;
  readonly body: unknown;
}

const STAT_KINDS = { service: 'service', workload: 'workload', namespace: 'namespace', edge: 'edge' } as const;
const bad = (error: string): ApiAnswer => ({ status: 400, body: { error } });
const iso = (t: number): string => new Date(t).toISOString();
/** decodeURIComponent throws URIError on a malformed escape (%ZZ, a cut UTF-8 sequence): a 400, not a crash. */
const decoded = (segment: string): string | null => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
};

/**
 * The JSON under /api/ that `wren stat` and the dashboard read (docs/operations.md):
 *   /api/stat?kind=service|workload|namespace|edge&window=30s|1m
 *   /api/topology?window=        services, workloads and the edges between them
 *   /api/services/NAME.NAMESPACE  endpoints with health and ejection state, policy, routes, authorization in the namespace
 *   /api/proxies, /api/proxies/NAMESPACE/POD   connected proxies: config version, certificate, ejections, their edges
 *   /api/why                     recent authorization denials (the deciding policy and rule) and retries (route or policy, attempts, causes)
 * Names come from manifests and reports: they are data here, escaped by whoever shows them.
 */
export function dashboardApi(path: string, query: URLSearchParams, d: DashboardDeps): ApiAnswer | null {
  const windowParam = query.get('window') ?? '1m';
  if (!(windowParam in WINDOWS_MS)) return bad(`window must be one of ${Object.keys(WINDOWS_MS).join(', ')}`);
  const window = windowParam as WindowName;
  if (path === '/api/stat') {
    const kind = query.get('kind') ?? 'service';
    if (!(kind in STAT_KINDS)) return bad(`kind must be one of ${Object.keys(STAT_KINDS).join(', ')}`);
    const rows = kind === 'edge' ? d.stats.edges(window) : d.stats.stat(kind as 'service' | 'workload' | 'namespace', window);
    return { status: 200, body: { window, windowMs: WINDOWS_MS[window], at: iso(d.clock.now()), rows } };
  }
  if (path === '/api/topology') return { status: 200, body: topology(d, window) };
  if (path === '/api/why') return { status: 200, body: why(d) };
  if (path === '/api/proxies') return { status: 200, body: { proxies: proxies(d) } };
  if (path.startsWith('/api/proxies/')) {
    const pod = decoded(path.slice('/api/proxies/'.length));
    if (pod === null) return bad('the pod in the path is not valid percent-encoding (RFC 3986 §2.1)');
    const p = proxies(d).find((x) => x.pod === pod);
    if (!p) return { status: 404, body: { error: `no connected proxy ${pod}` } };
    const edges = d.stats.edges(window).filter((e) => e.from?.workload === p.workload && e.from.namespace === pod.split('/')[0]);
    return { status: 200, body: { ...p, edges } };
  }
  if (path.startsWith('/api/services/')) {
    const key = decoded(path.slice('/api/services/'.length));
    if (key === null) return bad('the service in the path is not valid percent-encoding (RFC 3986 §2.1)');
    const svc = d.store.view.services.get(key);
    if (!svc) return { status: 404, body: { error: `no service ${key}` } };
    return { status: 200, body: serviceDetail(d, svc, window) };
  }
  return null;
}

function topology(d: DashboardDeps, window: WindowName) {
  const services = new Map(d.stats.stat('service', window).map((r) => [`${r.name}.${r.namespace}`, r]));
  return {
    window,
    at: iso(d.clock.now()),
    services: [...d.store.view.services.values()].map((s) => ({
      name: s.name, namespace: s.namespace, endpoints: s.ports.reduce((n, p) => n + p.endpoints.length, 0), stat: services.get(`${s.name}.${s.namespace}`) ?? null,
    })),
    workloads: d.stats.stat('workload', window),
    edges: d.stats.edges(window),
  };
}

/** Every endpoint of the service with what the mesh knows of its health: source readiness, proxies' reports, mesh-wide withdrawal. */
/**
 * The HTTPRoutes / GRPCRoutes attached to a Service, from the route view (a Service in the
 * view carries none: routes are chosen per subscriber when pushed): the producer routes,
 * for every caller, then each namespace's consumer routes, for callers in it (GAMMA).
 */
function serviceRoutes(d: DashboardDeps, key: string) {
  const sr = d.store.view.routes.byService.get(key);
  if (!sr) return [];
  return [
    ...sr.producer.map((r) => ({ appliesTo: 'every caller (producer route)', ...r })),
    ...[...sr.consumers].flatMap(([ns, list]) => list.map((r) => ({ appliesTo: `callers in ${ns} (consumer route)`, ...r }))),
  ];
}

function serviceDetail(d: DashboardDeps, svc: Service, window: WindowName) {
  const key = `${svc.name}.${svc.namespace}`;
  const health = d.discovery.debugHealth().filter((h) => h.service === key);
  const withdrawn = (d.withdrawal?.debug().withdrawn ?? []) as { service: string; servicePort: number; address: string; port: number; reason: string; until: string }[];
  const ports = svc.ports.map((p) => ({
    name: p.name, port: p.port, protocol: p.protocol, policy: p.policy ?? null,
    endpoints: p.endpoints.map((e) => {
      const reports = health.filter((h) => h.servicePort === p.port && h.address === e.address && h.port === e.port).flatMap((h) => h.reporters);
      const w = withdrawn.find((x) => x.service === key && x.servicePort === p.port && x.address === e.address && x.port === e.port);
      const ejected = reports.some((r) => r.kind === 'outlier-ejection');
      const state = w ? 'withdrawn' : ejected ? 'ejected' : reports.length > 0 ? reports[0].kind : e.ready ? 'healthy' : 'not-ready';
      return {
        address: e.address, port: e.port, ready: e.ready, meshed: (e.proxyPort ?? 0) > 0, identity: e.identity, workload: e.workload?.name ?? null, zone: e.zone, weight: e.weight,
        state, reports, withdrawn: w ? { reason: w.reason, until: w.until } : null,
      };
    }),
  }));
  const authz = d.store.view.policy.authorizationPolicies
    .filter((a) => a.namespace === svc.namespace)
    .map((a) => ({ selector: a.selector, ...a.policy, ...(a.failClosed ? { failClosed: a.failClosed } : {}) }));
  return {
    name: svc.name, namespace: svc.namespace, clusterIPs: svc.clusterIPs, ports, trafficPolicy: svc.policy, routes: serviceRoutes(d, key), authorizationPolicies: authz,
    stat: d.stats.stat('service', window).find((r) => r.name === svc.name && r.namespace === svc.namespace) ?? null,
    callers: d.stats.edges(window).filter((e) => e.to?.service === key),
  };
}

function proxies(d: DashboardDeps) {
  const trust = new Map(d.discovery.debugTrust().proxies.map((t) => [t.id, t]));
  const reports = new Map(d.stats.reporterList().map((r) => [r.pod, r]));
  return d.discovery.debugProxies().map((p) => {
    const id = p['identity'] as { spiffeId: string; namespace: string; pod: string } | null;
    const pod = id ? `${id.namespace}/${id.pod}` : '';
    const t = trust.get(p['id'] as number);
    const r = reports.get(pod);
    const notAfter = t?.notAfter ?? null;
    return {
      pod, identity: id?.spiffeId ?? null, workload: r?.workload ?? null, ackedVersion: p['ackedVersion'], latestVersion: d.store.view.version, nacks: p['nacks'], lastNack: p['lastNack'],
      inboundPolicy: p['inboundPolicy'], ejections: p['ejections'],
      certificate: { notAfter, expiresInMs: notAfter ? Date.parse(notAfter) - d.clock.wallNow() : null, chainsTo: t?.uses ?? null, serial: t?.leafSerial ?? null },
      stats: r ? { lastReportAt: iso(r.lastReportAt), droppedEdges: r.droppedEdges } : null,
    };
  });
}

/**
 * Each recent denial with the AuthorizationPolicy that decided it and the rule of it that
 * matched (the proxy's authorizer says which: `rule`, Istio's `effectivePolicyId`), or, for
 * "no ALLOW policy matched", the ALLOW policies the proxy considered (an older proxy does
 * not say: then the namespace's). Each recent retry with what configured it.
 */
function why(d: DashboardDeps) {
  const policies = d.store.view.policy.authorizationPolicies;
  // A refused policy enforced fail-closed says so (failClosedAuthorizationPolicy): the denial is its stand-in's.
  const shown = (p: KAuthorizationPolicy) => (p.failClosed ? { ...p.policy, failClosed: p.failClosed } : p.policy);
  return {
    denials: d.stats.denials().map((x) => {
      const deciding = policies.find((p) => p.policy.name === x.policy);
      const ns = x.reporter.split('/')[0];
      const considered = x.policiesConsidered ?? [];
      const unmatched =
        deciding || x.action !== 'ALLOW'
          ? []
          : considered.length > 0
            ? considered.map((name) => {
                const p = policies.find((q) => q.policy.name === name);
                return p ? shown(p) : { name, action: 'ALLOW', rules: null };
              })
            : policies.filter((p) => p.policy.action === 'ALLOW' && p.namespace === ns).map(shown);
      const rule = x.rule ?? -1;
      return { ...x, at: iso(x.at), decidingPolicy: deciding ? shown(deciding) : null, matchedRule: deciding && rule >= 0 ? (deciding.policy.rules[rule] ?? null) : null, allowPoliciesNotMatched: unmatched };
    }),
    retries: d.stats.retries().map((x) => ({ ...x, at: iso(x.at), configuredBy: retryConfig(d, x) })),
    droppedRetries: d.stats.droppedRetries(),
  };
}

const retrySettings = (r: RetryPolicy) => ({
  attempts: r.attempts, retryOn: r.retryOn, retriableStatusCodes: r.retriableStatusCodes, perTryTimeoutMs: r.perTryTimeoutMs, budgetRatio: r.budgetRatio, budgetMinPerSecond: r.budgetMinPerSecond,
});

/**
 * What set the retry policy of a retried request, from the current config: the HTTPRoute /
 * GRPCRoute rule that routed it when that rule has a `retry` (it is in force then, as in
 * the proxy: proxy/routing/port-routing.ts), else the service port's TrafficPolicy (the
 * port's own: target `svc:port`, or the service's: target `svc`; its settings are the
 * defaults when no TrafficPolicy targets it). The rule is found by
 * the name the proxy logs (`namespace.route.rule`), among the producer and consumer routes.
 */
function retryConfig(d: DashboardDeps, x: RetryRow) {
  if (x.route !== '') {
    for (const sr of d.store.view.routes.byService.values())
      for (const r of [...sr.producer, ...[...sr.consumers.values()].flat()])
        for (const [i, rule] of r.rules.entries())
          if (`${r.namespace}.${r.name}.${rule.name || i}` === x.route && rule.retry)
            return { kind: r.kind, name: `${r.namespace}/${r.name}`, rule: rule.name || String(i), target: x.route, retry: { attempts: rule.retry.attempts, codes: rule.retry.codes, backoffMs: rule.retry.backoffMs } };
  }
  // The mesh model carries the policy in force per service port, not the TrafficPolicy's name: the view names what it targets.
  const svc = d.store.view.services.get(x.service);
  const port = svc?.ports.find((p) => p.port === x.port);
  if (!svc || !port) return { kind: 'unknown', name: null, rule: null, target: `${x.service}:${x.port}`, retry: null };
  return { kind: 'TrafficPolicy', name: null, rule: null, target: port.policy ? `${x.service}:${port.port}` : x.service, retry: retrySettings(portPolicy(svc, port).retry) };
}
