import { printable } from '../../common/printable.js';

/**
 * One line of `wren check`: ✓ or ✗ (or - when it could not run because an earlier
 * check failed, or ‼ for a warning), what was found, and on a failure or a warning a hint
 * and the section of docs/operations.md that explains it. A warning is `linkerd check`'s
 * ‼: something to know that the mesh runs with (an older cluster where the injector
 * injects classic sidecars); it does not fail the command (exit 0, JSON `ok: true`).
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped';

export interface CheckOutcome {
  /** Stable id; also the docs anchor (docs/operations.md#check-ID). */
  readonly id: string;
  readonly status: CheckStatus;
  readonly message: string;
  /** What to do (failures and warnings only). */
  readonly hint: string | null;
  readonly docs: string;
  /** One line per thing found wrong, when there can be many (source-rejections: each object, its field path and reason). */
  readonly details?: readonly string[];
}

export const docsFor = (id: string): string => `docs/operations.md#check-${id}`;

export const ok = (id: string, message: string): CheckOutcome => ({ id, status: 'ok', message, hint: null, docs: docsFor(id) });
export const fail = (id: string, message: string, hint: string, details?: readonly string[]): CheckOutcome =>
  ({ id, status: 'fail', message, hint, docs: docsFor(id), ...(details?.length ? { details } : {}) });
export const warn = (id: string, message: string, hint: string): CheckOutcome => ({ id, status: 'warn', message, hint, docs: docsFor(id) });
export const skipped = (id: string, why: string): CheckOutcome => ({ id, status: 'skipped', message: why, hint: null, docs: docsFor(id) });

/** Runs a check; an exception is its failure (with the hint given for "could not even ask"). */
export async function guarded(id: string, hint: string, run: () => Promise<CheckOutcome>): Promise<CheckOutcome> {
  try {
    return await run();
  } catch (e) {
    return fail(id, (e as Error).message, hint);
  }
}

const MARK: Record<CheckStatus, string> = { ok: '✓', warn: '‼', fail: '✗', skipped: '-' };

export function formatOutcomes(outcomes: readonly CheckOutcome[]): string {
  // Messages and details quote what control planes, proxies and the API server answered
  // (a not-ready replica's body, a NACK, an error): every one printable, in one place.
  const p = printable;
  const lines = outcomes.map((o) =>
    `${MARK[o.status]} ${o.id}: ${p(o.message)}${(o.details ?? []).map((d) => `\n    - ${p(d)}`).join('')}${o.status === 'fail' || o.status === 'warn' ? `\n    hint: ${p(String(o.hint))}\n    see:  ${o.docs}` : ''}`);
  const failed = outcomes.filter((o) => o.status === 'fail').length;
  const skippedN = outcomes.filter((o) => o.status === 'skipped').length;
  const warned = outcomes.filter((o) => o.status === 'warn').length;
  const warnings = warned ? `, ${warned} warning(s)` : '';
  return `${lines.join('\n')}\n\n${failed === 0 ? `Status check results are ✓ (${outcomes.length} checks${warnings})` : `${failed} check(s) failed${warnings}${skippedN ? `, ${skippedN} skipped` : ''}`}\n`;
}

/** Whole days from now until `notAfterMs` (negative: expired). */
export const daysLeft = (notAfterMs: number, now: number): number => Math.floor((notAfterMs - now) / 86_400_000);
