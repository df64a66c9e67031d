import { num, obj, optional, parseWith, type Parser } from '../common/schema.js';
import type { ReportBudget } from './discovery/discovery-server.js';

/**
 * How much of the proxies' reporting a control plane takes: the report budget per discovery
 * stream and kind (discovery-server.ts REPORT_BUDGET: a burst of 10, then 5 a second) and the
 * stats store's bounds (stats-store.ts: 20,000 series, 2,000 of them per proxy, 10,000
 * proxies). As the embedded API takes them (`reportBudget`, `statsLimits` of
 * ControlPlane.start) and as `wren control-plane`'s flags set them (--report-burst,
 * --report-rate, --stats-max-series, --stats-max-series-per-proxy, --stats-max-reporters).
 * Until 2026-12-07 (adv41) they were settable only by building a DiscoveryServer or StatsStore
 * by hand: ControlPlane.start took none of them, so a mesh whose proxies report more often, or
 * one with more than 10,000 pods reporting, could not be served without patching the code.
 * Checked once at the edge, errors naming the field (`statsLimits.maxReporters: ...`) or the
 * flag. Absent fields: the defaults.
 */
export interface StatsLimits {
  /** Series (reporter x edge) kept at most (default 20,000). */
  readonly maxSeries?: number;
  /** Of them from one proxy (default 2,000; with only maxSeries given, maxSeries). */
  readonly maxSeriesPerReporter?: number;
  /** Proxies (pods) reporting kept at most (default 10,000). */
  readonly maxReporters?: number;
}

const count = (max: number): Parser<number> => num({ int: true, min: 1, max });

/** Field parsers, also used one by one for the CLI flags (the flag is the path). */
export const REPORT_LIMIT_FIELDS = {
  burst: count(10_000),
  // At least one report every 1000 s: slower is a typo (a proxy reports every 10 s by default).
  perSecond: num({ min: 0.001, max: 1000 }),
  maxSeries: count(10_000_000),
  maxSeriesPerReporter: count(10_000_000),
  maxReporters: count(1_000_000),
  /** Discovery streams of one fleet's certificates (discovery-server.ts DEFAULT_MAX_STREAMS_PER_FLEET; --discovery-max-streams-per-fleet). */
  maxStreamsPerFleet: count(1_000_000),
} as const;

const budgetParser: Parser<Partial<ReportBudget>> = obj({ burst: optional(REPORT_LIMIT_FIELDS.burst), perSecond: optional(REPORT_LIMIT_FIELDS.perSecond) });
const statsParser: Parser<StatsLimits> = obj({
  maxSeries: optional(REPORT_LIMIT_FIELDS.maxSeries),
  maxSeriesPerReporter: optional(REPORT_LIMIT_FIELDS.maxSeriesPerReporter),
  maxReporters: optional(REPORT_LIMIT_FIELDS.maxReporters),
});

/** Drops the fields left undefined: `{ burst: undefined }` is no setting, not a burst of undefined. */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** `raw`: the reportBudget object (undefined: the defaults); `path`: where it sits, for errors. */
export function parseReportBudget(raw: unknown, path: string): Partial<ReportBudget> {
  return defined(parseWith((r) => budgetParser(r, path), raw ?? {}));
}

/** `raw`: the statsLimits object (undefined: the defaults); `path`: where it sits, for errors. */
export function parseStatsLimits(raw: unknown, path: string): StatsLimits {
  return defined(parseWith((r) => statsParser(r, path), raw ?? {}));
}
