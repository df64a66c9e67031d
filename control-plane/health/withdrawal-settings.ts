import { bool, duration, fail, map, num, obj, parseWith, type Parser } from '../../common/schema.js';

/**
 * Settings of mesh-wide health-based withdrawal (docs/control-plane.md, "Health-based
 * withdrawal"). Parsed once at the edge (ControlPlaneOptions.healthWithdrawal, or the
 * `--health-*` flags of `wren control-plane`); errors name the field.
 *
 * Defaults, and why:
 * - minReporters 2: one proxy's view is its own network path (a partition, a bad node, or
 *   a lying client); two distinct reporters must agree. Envoy and Istio have no mesh-wide
 *   equivalent (each Envoy ejects on its own); Consul's passive checks are per proxy too.
 * - windowMs 10 s: Envoy's outlier `interval` and the Kubernetes probe period (10 s): two
 *   onsets further apart than one detection interval are not the same event.
 * - ttlMs 30 s: Envoy's `base_ejection_time`. Kubernetes needs 40 s (node-monitor grace
 *   period) or more to mark a lost node's pods unready; the withdrawal bridges that gap and
 *   then gives the endpoint back (probation) unless fresh reports take it out again.
 * - maxWithdrawnPercent 50: Envoy's `healthy_panic_threshold` (50 %): reports never take
 *   out more than half of a service port's ready endpoints (rounded down), so a fleet of
 *   confused reporters cannot empty a service.
 */
export interface WithdrawalSettings {
  /** false: reports are kept and shown, never acted on. */
  readonly enabled: boolean;
  readonly minReporters: number;
  readonly windowMs: number;
  readonly ttlMs: number;
  readonly maxWithdrawnPercent: number;
}

export const DEFAULT_WITHDRAWAL: WithdrawalSettings = Object.freeze({ enabled: true, minReporters: 2, windowMs: 10_000, ttlMs: 30_000, maxWithdrawnPercent: 50 });

const D = DEFAULT_WITHDRAWAL;

/** Field parsers, also used one by one for the CLI flags (the flag is the path). */
export const WITHDRAWAL_FIELDS = {
  enabled: bool(D.enabled),
  minReporters: num({ int: true, min: 1, max: 1000, default: D.minReporters }),
  windowMs: positive(duration(D.windowMs)),
  ttlMs: positive(duration(D.ttlMs)),
  maxWithdrawnPercent: num({ min: 0, max: 100, default: D.maxWithdrawnPercent }),
} as const;

function positive(p: Parser<number>): Parser<number> {
  return map(p, (n, path) => (n >= 1 ? n : fail(path, `expected a duration of at least 1ms, got ${n}`)));
}

const parser: Parser<WithdrawalSettings> = obj(WITHDRAWAL_FIELDS);

/** `raw` is the `healthWithdrawal` object (undefined: every default). */
export function parseWithdrawalSettings(raw: unknown, source?: string): WithdrawalSettings {
  return parseWith((r) => parser(r, 'healthWithdrawal'), raw, source);
}
