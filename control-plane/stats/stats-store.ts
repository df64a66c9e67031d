import { printable } from '../../common/printable.js';
import type { Clock } from '../../common/clock.js';
import type { EdgeStats, RecentDenial, RecentRetry, StatsReport } from '../../contract/discovery.js';
import { histogramQuantile } from './histogram-quantile.js';
import { StatsSeries, type EdgeMeta, type Reporter, type WindowDelta } from './stats-series.js';

/** The windows the control plane aggregates over (Linkerd viz's default is 1 min). */
export const WINDOWS_MS = { '30s': 30_000, '1m': 60_000 } as const;
export type WindowName = keyof typeof WINDOWS_MS;
const LONGEST_MS = 60_000;

export interface StatsStoreOptions {
  readonly clock: Clock;
  /** At most this many series (reporter x edge) are kept; new ones past it are dropped and counted. Default 20,000. */
  readonly maxSeries?: number;
  /**
   * At most this many of them from one reporter (default 2,000, a tenth of the default
   * maxSeries; with only maxSeries given, maxSeries): a proxy's
   * edges are its own claims, so one pod (compromised, or a bug) must not take the whole
   * budget and hide every other proxy's new traffic. Honest proxies send at most
   * `stats.maxEdges` (200 by default) edges.
   */
  readonly maxSeriesPerReporter?: number;
  /**
   * At most this many reporters (pods) are kept (default 10,000): a report from one more is
   * dropped whole and counted ('reporters'). A reporter is kept five minutes after its last
   * report whether or not it holds series, with its recent denials and retries, and its key is
   * the pod its stream claims: without a bound, streams claiming a new pod name each (a
   * source that lists no pods checks no claim, and plaintext checks nothing) grew the map
   * without limit (adv29).
   */
  readonly maxReporters?: number;
  /**
   * Called for each limit that fires: 'series' (maxSeries), 'series-per-proxy' (maxSeriesPerReporter), 'invalid-edges' (a report's edges dropped as
   * malformed or over MAX_EDGES_PER_REPORT), 'reporters' (maxReporters: a report dropped), 'reporter-detail' (denials and retries left out for MAX_REPORTER_DETAIL_CHARS).
   */
  readonly onLimit?: (limit: 'series' | 'series-per-proxy' | 'invalid-edges' | 'reporters' | 'reporter-detail', n: number) => void;
  /** Called after each report, with the number of series kept. */
  readonly onIngest?: (series: number) => void;
}

/**
 * The most characters of recent denials and retries kept per reporter (as JSON), half for
 * each list, the newest first. Each was bounded only in entries (20 denials of up to 50
 * policies of 300 characters, 50 retries of up to 20 causes): about a million characters
 * per reporter, kept five minutes. An honest proxy's are a few kilobytes (a denial names the
 * few policies considered); past the bound the oldest entries are left out and counted
 * ('reporter-detail').
 */
export const MAX_REPORTER_DETAIL_CHARS = 32 * 1024;

/** Per-report cap (the proxy's own default is 200; discovery.statsReport.maxEdges at most 10,000). */
export const MAX_EDGES_PER_REPORT = 10_000;
const MAX_BOUNDS = 64;

export interface Latency {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
}

/** One line of `wren stat`: a service, a workload, a namespace or an edge. */
export interface StatRow {
  readonly kind: 'service' | 'workload' | 'namespace' | 'edge';
  readonly name: string;
  readonly namespace: string;
  /** Proxies whose reports make up this row. */
  readonly reporters: number;
  /** Requests per second over the window. */
  readonly requestRate: number;
  /** successes / requests over the window; null without requests. */
  readonly successRate: number | null;
  readonly latencyMs: Latency | null;
  readonly tcp: { readonly open: number; readonly openedRate: number };
  /** Share of requests (or, with none, of connections) that were mutual TLS; null with neither. */
  readonly mtlsShare: number | null;
  /** Edges only: the caller's workload and the destination service (and workload). */
  readonly from?: { readonly workload: string; readonly namespace: string };
  readonly to?: { readonly service: string; readonly workload: string };
}

interface Acc {
  reporters: Set<string>;
  rate: number;
  success: number;
  failure: number;
  mtls: number;
  tcpOpenedRate: number;
  tcpOpen: number;
  tcpMtls: number;
  tcpOpened: number;
  bounds: readonly number[] | null;
  buckets: number[] | null;
}

const newAcc = (): Acc => ({ reporters: new Set(), rate: 0, success: 0, failure: 0, mtls: 0, tcpOpenedRate: 0, tcpOpen: 0, tcpMtls: 0, tcpOpened: 0, bounds: null, buckets: null });

function addTo(a: Acc, s: StatsSeries, d: WindowDelta): void {
  a.reporters.add(`${s.reporter.namespace}/${s.reporter.pod}`);
  const sec = d.spanMs / 1000;
  const requests = d.success + d.failure;
  if (sec > 0) {
    a.rate += requests / sec;
    a.tcpOpenedRate += d.tcpOpened / sec;
  }
  a.success += d.success;
  a.failure += d.failure;
  if (s.edge.mtls) {
    a.mtls += requests;
    a.tcpMtls += d.tcpOpened + d.tcpOpen;
  }
  a.tcpOpened += d.tcpOpened + d.tcpOpen;
  a.tcpOpen += d.tcpOpen;
  // A series with no latency observed in the window adds nothing to the histogram, and must
  // not pick its bucket bounds: a proxy that has carried no HTTP request reports no bounds
  // at all (opaque TCP only, or idle), and taking its [] first would make every other
  // series of the row look incompatible and drop its latency (a namespace row holding an
  // opaque-TCP workload showed no latency at all).
  if (!d.buckets.some((c) => c > 0)) return;
  if (a.bounds === null) {
    a.bounds = s.bounds;
    a.buckets = [...d.buckets];
  } else if (sameBounds(a.bounds, s.bounds)) for (let i = 0; i < d.buckets.length; i++) a.buckets![i] += d.buckets[i];
}

const sameBounds = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const round = (n: number, digits = 3): number => Math.round(n * 10 ** digits) / 10 ** digits;

function rowOf(kind: StatRow['kind'], name: string, namespace: string, a: Acc, extra: Partial<StatRow> = {}): StatRow {
  const requests = a.success + a.failure;
  const q = (p: number) => round(histogramQuantile(p, a.bounds ?? [], a.buckets ?? []) ?? 0);
  const hasLatency = a.buckets !== null && a.buckets.some((c) => c > 0);
  return {
    kind, name, namespace, reporters: a.reporters.size,
    requestRate: round(a.rate), successRate: requests > 0 ? round(a.success / requests, 4) : null,
    latencyMs: hasLatency ? { p50: q(0.5), p95: q(0.95), p99: q(0.99) } : null,
    tcp: { open: a.tcpOpen, openedRate: round(a.tcpOpenedRate) },
    mtlsShare: requests > 0 ? round(a.mtls / requests, 4) : a.tcpOpened > 0 ? round(a.tcpMtls / a.tcpOpened, 4) : null,
    ...extra,
  };
}

/** A recent denial as the control plane keeps it: when (its clock) and who reported it. */
export interface DenialRow extends Omit<RecentDenial, 'ageMs'> {
  readonly at: number;
  readonly reporter: string;
  readonly workload: string;
}

/** A recent retry as the control plane keeps it: when (its clock) and who reported it. */
export interface RetryRow extends Omit<RecentRetry, 'ageMs'> {
  readonly at: number;
  readonly reporter: string;
  readonly workload: string;
}

/** Retries kept per reporter (a report carries each thread's last 20; the newest are kept). */
const MAX_RETRIES_PER_REPORTER = 50;

/**
 * The control plane's aggregation of the proxies' StatsReports (contract/discovery.proto):
 * one series per (reporter, edge) of cumulative counters with their arrival times (the
 * control plane's injected clock), and rates, success rates and latency percentiles over
 * the last 30 s and 1 min computed from the series' increases, summed over reporters.
 *
 * Which side counts (as Linkerd viz): a service's row is what its callers' proxies saw
 * (outbound edges to it: the latency and failures the callers got); a workload's row is
 * what its own proxies saw serving (inbound edges); an edge (--from/--to, the topology)
 * is the caller's outbound view of one (caller workload, service).
 */
export class StatsStore {
  private readonly series = new Map<string, StatsSeries>();
  private readonly reporters = new Map<string, { reporter: Reporter; at: number; droppedEdges: number; denials: DenialRow[]; retries: RetryRow[]; droppedRetries: number; complete: boolean }>();
  private readonly maxSeries: number;
  private readonly maxPerReporter: number;
  private readonly maxReporters: number;
  /** Series held per reporter key, for maxSeriesPerReporter. */
  private readonly perReporter = new Map<string, number>();

  constructor(private readonly o: StatsStoreOptions) {
    this.maxSeries = o.maxSeries ?? 20_000;
    this.maxPerReporter = o.maxSeriesPerReporter ?? (o.maxSeries === undefined ? 2_000 : this.maxSeries);
    this.maxReporters = o.maxReporters ?? 10_000;
  }

  /** Takes one report from `reporter`. Malformed edges are dropped and counted; nothing else is lost. */
  ingest(reporter: Reporter, r: Partial<StatsReport>): void {
    const now = this.o.clock.now();
    this.prune(now);
    const rkey = `${reporter.namespace}/${reporter.pod}`;
    if (!this.reporters.has(rkey) && this.reporters.size >= this.maxReporters) {
      this.o.onLimit?.('reporters', 1);
      return;
    }
    const bounds = Array.isArray(r.latencyBoundsMs) ? r.latencyBoundsMs.slice(0, MAX_BOUNDS).map(Number) : [];
    const boundsOk = bounds.every((b, i) => Number.isFinite(b) && b > 0 && (i === 0 || b > bounds[i - 1]));
    const edges = Array.isArray(r.edges) ? r.edges : [];
    let invalid = Math.max(0, edges.length - MAX_EDGES_PER_REPORT);
    let overCap = 0;
    let overReporterCap = 0;
    const intervalMs = Math.max(0, Number(r.intervalMs) || 0);
    const baseline = this.zeroBaseline(this.reporters.get(rkey), Number(r.uptimeMs) || 0, now);
    for (const raw of edges.slice(0, MAX_EDGES_PER_REPORT)) {
      const e = boundsOk ? validEdge(raw, bounds.length + 1) : null;
      if (!e) {
        invalid++;
        continue;
      }
      const meta: EdgeMeta = {
        direction: e.direction, peerWorkload: e.peerWorkload, peerNamespace: e.peerNamespace, peerIdentity: e.peerIdentity,
        service: e.service, destinationWorkload: e.destinationWorkload, mtls: e.mtls,
      };
      const key = `${rkey}\n${JSON.stringify(meta)}`;
      let s = this.series.get(key);
      // A new edge's counters were 0 at the previous report (it was not in it); a known edge's, at the proxy's start (after a restart).
      const zeroAt = s ? baseline.startedAt : baseline.newEdge;
      if (s && !sameBounds(s.bounds, bounds)) {
        this.deleteSeries(key, rkey);
        s = undefined;
      }
      if (!s) {
        const held = this.perReporter.get(rkey) ?? 0;
        if (this.series.size >= this.maxSeries || held >= this.maxPerReporter) {
          if (this.series.size >= this.maxSeries) overCap++;
          else overReporterCap++;
          continue;
        }
        this.series.set(key, (s = new StatsSeries(reporter, meta, bounds)));
        this.perReporter.set(rkey, held + 1);
      }
      s.add(now, e, intervalMs, LONGEST_MS, zeroAt);
    }
    if (invalid > 0) this.o.onLimit?.('invalid-edges', invalid);
    if (overCap > 0) this.o.onLimit?.('series', overCap);
    if (overReporterCap > 0) this.o.onLimit?.('series-per-proxy', overReporterCap);
    const denials = (Array.isArray(r.recentDenials) ? r.recentDenials : []).slice(-20).map((d): DenialRow => ({
      at: now - Math.max(0, Number(d?.ageMs) || 0), reporter: rkey, workload: reporter.workload,
      policy: str(d?.policy), action: str(d?.action), reason: str(d?.reason), principal: str(d?.principal), method: str(d?.method), path: str(d?.path), port: Number(d?.port) || 0,
      // An older proxy sends no rule: -1 (none known), not rule 0.
      rule: str(d?.effectivePolicyId) === '' ? -1 : Math.trunc(Number(d?.rule) || 0), effectivePolicyId: str(d?.effectivePolicyId),
      policiesConsidered: (Array.isArray(d?.policiesConsidered) ? d.policiesConsidered : []).slice(0, 50).map(str),
      closedTunnel: str(d?.closedTunnel),
    }));
    const droppedEdges = Number(r.droppedEdges) || 0;
    const retries = retryRows(r.recentRetries, now, rkey, reporter.workload);
    const detailDropped = newestWithin(denials, MAX_REPORTER_DETAIL_CHARS / 2) + newestWithin(retries, MAX_REPORTER_DETAIL_CHARS / 2);
    if (detailDropped > 0) this.o.onLimit?.('reporter-detail', detailDropped);
    this.reporters.set(rkey, {
      reporter, at: now, droppedEdges, denials, retries, droppedRetries: Number(r.droppedRetries) || 0,
      complete: droppedEdges === 0 && invalid === 0 && overCap === 0 && overReporterCap === 0,
    });
    this.o.onIngest?.(this.series.size);
  }

  /** One row per service (callers' view), per workload (its own inbound view) or per namespace (its workloads'). */
  stat(kind: 'service' | 'workload' | 'namespace', window: WindowName): StatRow[] {
    const now = this.o.clock.now();
    const groups = new Map<string, { name: string; namespace: string; acc: Acc }>();
    const group = (name: string, namespace: string): Acc => {
      const k = `${namespace}/${name}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { name, namespace, acc: newAcc() }));
      return g.acc;
    };
    if (kind !== 'service') {
      // Every reporting workload has a row, with no traffic if it served none.
      for (const { reporter, at } of this.reporters.values())
        if (at >= now - LONGEST_MS * 5) (kind === 'workload' ? group(reporter.workload, reporter.namespace) : group(reporter.namespace, '')).reporters.add(`${reporter.namespace}/${reporter.pod}`);
    }
    for (const s of this.series.values()) {
      const d = s.window(now, WINDOWS_MS[window], this.staleMs(s));
      if (!d) continue;
      if (kind === 'service') {
        if (s.edge.direction !== 'outbound' || s.edge.service === '') continue;
        const dot = s.edge.service.indexOf('.');
        addTo(group(s.edge.service.slice(0, dot), s.edge.service.slice(dot + 1)), s, d);
      } else if (s.edge.direction === 'inbound') {
        addTo(kind === 'workload' ? group(s.reporter.workload, s.reporter.namespace) : group(s.reporter.namespace, ''), s, d);
      }
    }
    return [...groups.values()].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name)).map((g) => rowOf(kind, g.name, g.namespace, g.acc));
  }

  /** One row per (caller workload -> service, destination workload), from the callers' outbound reports. */
  edges(window: WindowName): StatRow[] {
    const now = this.o.clock.now();
    const groups = new Map<string, { from: { workload: string; namespace: string }; to: { service: string; workload: string }; acc: Acc }>();
    for (const s of this.series.values()) {
      if (s.edge.direction !== 'outbound') continue;
      const d = s.window(now, WINDOWS_MS[window], this.staleMs(s));
      if (!d) continue;
      const from = { workload: s.reporter.workload, namespace: s.reporter.namespace };
      const to = { service: s.edge.service, workload: s.edge.destinationWorkload };
      const k = JSON.stringify([from, to]);
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { from, to, acc: newAcc() }));
      addTo(g.acc, s, d);
    }
    return [...groups.values()]
      .sort((a, b) => `${a.from.namespace}/${a.from.workload} ${a.to.service}`.localeCompare(`${b.from.namespace}/${b.from.workload} ${b.to.service}`))
      .map((g) => rowOf('edge', `${g.from.workload} -> ${g.to.service || 'unknown'}`, g.from.namespace, g.acc, { from: g.from, to: g.to }));
  }

  /** Every reporter's recent denials, newest first. */
  denials(): DenialRow[] {
    return [...this.reporters.values()].flatMap((r) => r.denials).sort((a, b) => b.at - a.at);
  }

  /** Every reporter's recent retries, newest first. */
  retries(): RetryRow[] {
    return [...this.reporters.values()].flatMap((r) => r.retries).sort((a, b) => b.at - a.at);
  }

  /** Retries the reporters dropped before reporting them (their cumulative counts, summed). */
  droppedRetries(): number {
    return [...this.reporters.values()].reduce((n, r) => n + r.droppedRetries, 0);
  }

  /** The reporters (pods) heard from, with when and how many edges their last report left out. */
  reporterList(): { pod: string; workload: string; identity: string; lastReportAt: number; droppedEdges: number }[] {
    return [...this.reporters.entries()].map(([pod, r]) => ({ pod, workload: r.reporter.workload, identity: r.reporter.identity, lastReportAt: r.at, droppedEdges: r.droppedEdges }));
  }

  get seriesCount(): number {
    return this.series.size;
  }

  /**
   * When the counters of a report's edges were all still 0, for the zero baseline of a
   * new series (stats-series.ts), or null when not known well enough:
   * - `startedAt`: the proxy's start (now - its uptimeMs), for a proxy younger than the
   *   longest window. A proxy that has run longer (a control-plane restart, a proxy that
   *   only now reaches this replica) gets none: its counters hold history from before any
   *   window, so its first report stays a plain baseline, as before.
   * - `newEdge`: for an edge that was not in this proxy's previous report, the later of
   *   that report and `startedAt`, when that report was complete (no edge left out by
   *   maxEdges, as malformed or over maxSeries: such an edge may have had counts) and
   *   within the longest window. The proxy's counters only grow, so an edge absent then
   *   was at 0.
   */
  private zeroBaseline(prev: { at: number; complete: boolean } | undefined, uptimeMs: number, now: number): { startedAt: number | null; newEdge: number | null } {
    const startedAt = uptimeMs > 0 && uptimeMs <= LONGEST_MS ? now - uptimeMs : null;
    const prevAt = prev && prev.complete && prev.at >= now - LONGEST_MS && prev.at < now ? prev.at : null;
    return { startedAt, newEdge: prevAt === null ? startedAt : Math.max(prevAt, startedAt ?? -Infinity) };
  }

  /** A series is stale once it missed two reports (and at least the window has passed, see window()). */
  private staleMs(s: StatsSeries): number {
    return s.intervalMs > 0 ? s.intervalMs * 2 + 1000 : 0;
  }

  /** Forgets series and reporters not heard from for five minutes. */
  private prune(now: number): void {
    const horizon = now - LONGEST_MS * 5;
    for (const [k, s] of this.series) if (s.lastAt < horizon) this.deleteSeries(k, `${s.reporter.namespace}/${s.reporter.pod}`);
    for (const [k, r] of this.reporters) if (r.at < horizon) this.reporters.delete(k);
  }

  private deleteSeries(key: string, rkey: string): void {
    if (!this.series.delete(key)) return;
    const n = (this.perReporter.get(rkey) ?? 1) - 1;
    if (n > 0) this.perReporter.set(rkey, n);
    else this.perReporter.delete(rkey);
  }

}

/** Drops the oldest (first) entries of `rows` until the rest are at most `chars` as JSON; returns how many. */
function newestWithin(rows: unknown[], chars: number): number {
  let total = 0;
  let keep = rows.length;
  for (let i = rows.length - 1; i >= 0; i--) {
    total += JSON.stringify(rows[i]).length + 1;
    if (total > chars) break;
    keep = i;
  }
  if (total <= chars) return 0;
  const dropped = keep;
  rows.splice(0, dropped);
  return dropped;
}

/** A reported string, bounded and printable (common/printable.ts): a proxy's report is its own claim. */
const str = (v: unknown): string => printable(String(v ?? '').slice(0, 300));

/** A report's retries, checked field by field (a proxy's report is input), the newest MAX_RETRIES_PER_REPORTER. */
function retryRows(raw: unknown, now: number, reporter: string, workload: string): RetryRow[] {
  const list = (Array.isArray(raw) ? raw : []) as Partial<RecentRetry>[];
  return list.slice(-MAX_RETRIES_PER_REPORTER).map((x): RetryRow => ({
    at: now - Math.max(0, Number(x?.ageMs) || 0), reporter, workload,
    service: str(x?.service), port: Number(x?.port) || 0, route: str(x?.route), method: str(x?.method), path: str(x?.path), attempts: Math.max(0, Math.trunc(Number(x?.attempts) || 0)),
    causes: (Array.isArray(x?.causes) ? x.causes : []).slice(0, 20).map((c) => ({ outcome: str(c?.outcome), retryOn: str(c?.retryOn) })),
    result: str(x?.result), stopped: str(x?.stopped),
  }));
}
const count = (v: unknown): number | null => {
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : null;
};

function validEdge(raw: Partial<EdgeStats> | undefined, buckets: number): EdgeStats | null {
  if (!raw || (raw.direction !== 'inbound' && raw.direction !== 'outbound')) return null;
  const nums = [raw.success, raw.failure, raw.tcpOpened, raw.tcpClosed].map(count);
  if (nums.some((n) => n === null)) return null;
  const b = Array.isArray(raw.latencyBuckets) ? raw.latencyBuckets.map(count) : [];
  if (b.length !== buckets || b.some((n) => n === null)) return null;
  return {
    direction: raw.direction, peerWorkload: str(raw.peerWorkload), peerNamespace: str(raw.peerNamespace), peerIdentity: str(raw.peerIdentity),
    service: str(raw.service), destinationWorkload: str(raw.destinationWorkload),
    success: nums[0]!, failure: nums[1]!, tcpOpened: nums[2]!, tcpClosed: nums[3]!, latencyBuckets: b as number[], latencySumMs: count(raw.latencySumMs) ?? 0, mtls: raw.mtls === true,
  };

}
