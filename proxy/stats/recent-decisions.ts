import type { RecentDenial, RecentRetry } from '../../contract/discovery.js';

/** What a proxy thread reports for the dashboard's "why" view: its recent denials and retries. */
export interface RecentDecisions {
  readonly denials: readonly RecentDenial[];
  readonly retries: readonly RecentRetry[];
  /** Retries pushed out of the bounded list before a report carried them (cumulative). */
  readonly droppedRetries: number;
}

const oldestFirst = (a: { ageMs: number }, b: { ageMs: number }): number => b.ageMs - a.ageMs;

/**
 * The threads' decisions as one (config `concurrency` > 1: the main thread and each
 * listener worker keep their own bounded lists, proxy/workers/): oldest first as each list
 * is, drops summed. Bounded by threads x each list's bound; the control plane keeps the
 * newest of them.
 */
export function mergeDecisions(parts: readonly (RecentDecisions | null)[]): RecentDecisions {
  const present = parts.filter((p): p is RecentDecisions => p !== null);
  if (present.length === 1) return present[0];
  return {
    denials: present.flatMap((p) => p.denials).sort(oldestFirst),
    retries: present.flatMap((p) => p.retries).sort(oldestFirst),
    droppedRetries: present.reduce((n, p) => n + p.droppedRetries, 0),
  };
}
