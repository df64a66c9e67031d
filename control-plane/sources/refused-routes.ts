import type { Logger } from '../../common/logger.js';
import type { ControlPlaneMetrics } from '../metrics.js';

/**
 * Routes the control plane refused because the proxies' route parser would refuse what
 * they compile to (route-compile.ts, the one validator). Routes are recompiled on every
 * route, ReferenceGrant or Service change, so a refusal is counted in
 * wren_cp_invalid_objects_total and logged once, when it appears (or its reason changes),
 * like an object the sources' parsers reject.
 */
export class RefusedRoutes {
  private current: ReadonlyMap<string, string> = new Map();

  constructor(
    private readonly source: 'dir' | 'kubernetes',
    private readonly metrics: ControlPlaneMetrics,
    private readonly logger: Logger,
  ) {}

  note(refused: ReadonlyMap<string, string>): void {
    for (const [key, why] of refused) {
      if (this.current.get(key) === why) continue;
      this.metrics.invalidObjects.inc({ source: this.source });
      this.logger.warn('route refused: the proxies cannot serve it; its last accepted version (if any) stays in force', { route: key, error: why });
    }
    this.current = refused;
  }
}
