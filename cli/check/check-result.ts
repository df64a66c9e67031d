import { printable } from '../../common/printable.js';

/**
 * One line of `wren check`: ✓ or ✗ (or - when it could not run because an earlier
 * check failed), what was found, and on a failure a hint and the section of
 * docs/operations.md that explains it.
 */
export type CheckStatus = 'ok' | 'fail' | 'skipped';

export interface CheckOutcome {
  /** Stable id; also the docs anchor (docs/operations.md#check-ID). */
  readonly id: string;
  readonly status: CheckStatus;
  readonly message: string;
  /** What to do (failures only). */
  readonly hint: string | null;
  readonly docs: string;
  /** One line per thing found wrong, when there can be many (source-rejections: each object, its field path and reason). */
  readonly details?: readonly string[];
}

export const docsFor = (id: string): string => `docs/operations.md#check-${id}`;

export const ok = (id: string, message: string): CheckOutcome => ({ id, status: 'ok', message, hint: null, docs: docsFor(id) });
export const fail = (id: string, message: string, hint: string, details?: readonly string[]): CheckOutcome =>
  ({ id, status: 'fail', message, hint, docs: docsFor(id), ...(details?.length ? { details } : {}) });
export const skipped = (id: string, why: string): CheckOutcome => ({ id, status: 'skipped', message: why, hint: null, docs: docsFor(id) });

/** Runs a check; an exception is its failure (with the hint given for "could not even ask"). */
export async function guarded(id: string, hint: string, run: () => Promise<CheckOutcome>): Promise<CheckOutcome> {
  try {
    return await run();
  } catch (e) {
    return fail(id, (e as Error).message, hint);
  }
}

const MARK: Record<CheckStatus, string> = { ok: '✓', fail: '✗', skipped: '-' };

export function formatOutcomes(outcomes: readonly CheckOutcome[]): string {
  // Messages and details quote what control planes, proxies and the API server answered
  // (a not-ready replica's body, a NACK, an error): every one printable, in one place.
  const p = printable;
  const lines = outcomes.map((o) =>
    `${MARK[o.status]} ${o.id}: ${p(o.message)}${(o.details ?? []).map((d) => `\n    - ${p(d)}`).join('')}${o.status === 'fail' ? `\n    hint: ${p(String(o.hint))}\n    see:  ${o.docs}` : ''}`);
  const failed = outcomes.filter((o) => o.status === 'fail').length;
  const skippedN = outcomes.filter((o) => o.status === 'skipped').length;
  return `${lines.join('\n')}\n\n${failed === 0 ? `Status check results are ✓ (${outcomes.length} checks)` : `${failed} check(s) failed${skippedN ? `, ${skippedN} skipped` : ''}`}\n`;
}

/** Whole days from now until `notAfterMs` (negative: expired). */
export const daysLeft = (notAfterMs: number, now: number): number => Math.floor((notAfterMs - now) / 86_400_000);
