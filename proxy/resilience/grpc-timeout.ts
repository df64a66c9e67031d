/**
 * The `grpc-timeout` request header (gRPC over HTTP/2, PROTOCOL-HTTP2.md "Requests"):
 *   Timeout      → "grpc-timeout" TimeoutValue TimeoutUnit
 *   TimeoutValue → positive integer, at most 8 ASCII digits
 *   TimeoutUnit  → H (hour) / M (minute) / S (second) / m (milli) / u (micro) / n (nano)
 */
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };
const FORMAT = /^(\d{1,8})([HMSmun])$/;

/** Milliseconds (possibly fractional), or null when the value is malformed. */
export function parseGrpcTimeout(raw: string): number | null {
  const m = FORMAT.exec(raw.trim());
  if (!m) return null;
  return Number(m[1]) * UNIT_MS[m[2]];
}

/**
 * Whether a deadline with `leftMs` to go is spent: under 1 ms. The proxy writes
 * grpc-timeout in whole milliseconds (below) and its timers fire in whole milliseconds
 * (as grpc-js keeps deadlines), so less than 1 ms cannot be passed on without granting the
 * upstream more than is left, nor enforced: the call fails locally with DEADLINE_EXCEEDED,
 * as a gRPC client fails a call whose deadline has passed before sending it.
 */
export function deadlineSpent(leftMs: number): boolean {
  return !(leftMs >= 1);
}

/**
 * Encode a remaining deadline for the upstream, rounded down so the upstream never gets
 * more time than is left, in the finest unit whose value fits in 8 digits. At least 1 ms
 * ("1m"), since the spec's value is positive; callers fail locally before that
 * (deadlineSpent: layers/timeouts.ts on arrival, layers/retry.ts for each attempt).
 */
export function formatGrpcTimeout(ms: number): string {
  const v = Math.max(1, Math.floor(ms));
  if (v < 1e8) return `${v}m`;
  const s = Math.floor(v / 1_000);
  if (s < 1e8) return `${s}S`;
  const min = Math.floor(v / 60_000);
  if (min < 1e8) return `${min}M`;
  return `${Math.min(99_999_999, Math.floor(v / 3_600_000))}H`;
}

/** Past what a timer can hold (2^31-1 ms, 24.8 days) a deadline is no deadline. */
const MAX_PROPAGATED_DEADLINE_MS = 2 ** 31 - 1;

/**
 * The grpc-timeout an attempt sends upstream (gRPC deadline propagation): what is left of
 * the caller's deadline (`deadlineAt`, the clock's ms), or the per-try timeout if that is
 * shorter. null when the deadline is spent (deadlineSpent: the attempt fails locally); ''
 * when it is past what a timer can hold, and none is sent: grpc-js sends none for such a
 * deadline (deadline.ts getRelativeTimeout: "treated as infinitely far in the future"), and
 * its server turns such a grpc-timeout into a timer that fires at once. Used as an attempt
 * starts (layers/retry.ts) and again once it has waited for its connection (layers/timeouts.ts).
 */
export function attemptGrpcTimeout(deadlineAt: number, perTryMs: number, nowMs: number): string | null {
  const remaining = deadlineAt - nowMs;
  if (deadlineSpent(remaining)) return null;
  const left = perTryMs > 0 ? Math.min(remaining, perTryMs) : remaining;
  return left > MAX_PROPAGATED_DEADLINE_MS ? '' : formatGrpcTimeout(left);
}
