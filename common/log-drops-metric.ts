import { Counter, type Registry } from 'prom-client';
import { droppedLogLines } from './logger.js';

/** `wren_log_lines_dropped_total`: log lines the default sink dropped because stderr was backed up (common/logger.ts). */
export function registerLogDrops(registry: Registry): Counter {
  let seen = 0;
  return new Counter({
    name: 'wren_log_lines_dropped_total',
    help: 'Log lines dropped because more than 4 MiB of earlier lines were still unwritten to stderr (a stalled log reader)',
    registers: [registry],
    collect() {
      const n = droppedLogLines.count;
      if (n > seen) this.inc(n - seen);
      seen = n;
    },
  });
}
