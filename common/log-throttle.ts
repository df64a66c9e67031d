import type { Clock } from './clock.js';

/**
 * At most `perSecond` log lines per key each second, the rest counted and said in the next
 * line let through (`suppressed`). For lines a remote client can cause at will (a refused
 * Certify per junk token): the metric counts every event, the log keeps enough to see what
 * happens without costing a JSON line per event in a flood. Keys are a fixed set (reasons),
 * not client input.
 */
export class LogThrottle {
  private readonly windows = new Map<string, { start: number; lines: number; suppressed: number }>();

  constructor(
    private readonly clock: Pick<Clock, 'now'>,
    private readonly perSecond = 10,
  ) {}

  /** null: drop this line; else log it, with this many dropped since the last one of `key` (0: none). */
  admit(key: string): number | null {
    const now = this.clock.now();
    let w = this.windows.get(key);
    if (w === undefined) {
      w = { start: now, lines: 0, suppressed: 0 };
      this.windows.set(key, w);
    } else if (now - w.start >= 1000) {
      w.start = now;
      w.lines = 0;
    }
    if (w.lines >= this.perSecond) {
      w.suppressed++;
      return null;
    }
    w.lines++;
    const dropped = w.suppressed;
    w.suppressed = 0;
    return dropped;
  }
}
