import { createRequire } from 'node:module';
import type { Counter as PromCounter, Registry } from 'prom-client';
import { droppedLogLines } from './logger.js';

// The class from its own module, not `import 'prom-client'`, whose index also loads the
// default metrics and @opentelemetry/api: memory a sidecar would pay for nothing (proxy/metrics/prom.ts).
const Counter = createRequire(import.meta.url)('prom-client/lib/counter') as typeof PromCounter;
type Counter = PromCounter;

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
