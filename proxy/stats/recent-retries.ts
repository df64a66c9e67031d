import type { Clock } from '../../common/clock.js';
import type { RecentRetry, RetryCause } from '../../contract/discovery.js';
import type { ProxyRequest } from '../http/exchange.js';

/** How many retried requests a proxy thread keeps for its StatsReport (StatsReport.recent_retries). */
export const RECENT_RETRIES = 20;

interface Entry {
  readonly at: number;
  readonly seq: number;
  readonly r: Omit<RecentRetry, 'ageMs'>;
}

/**
 * The last RECENT_RETRIES requests the retry layer retried (or wanted to retry and the
 * cluster refused), for the dashboard's "why" view: a fixed ring, so memory is bounded
 * whatever the retry rate. An entry pushed out before any report read it is counted
 * (`dropped`: the report's dropped_retries, and `onDropped` for the proxy's
 * wren_limit_exceeded_total{limit="recent-retries"}); one already reported leaves quietly.
 * Only the retry path pays: the layer calls `record` once per retried request.
 */
export class RecentRetries {
  private readonly ring: (Entry | undefined)[];
  private next = 0;
  private seq = 0;
  /** Entries with seq <= this were in a report already. */
  private readSeq = 0;
  private droppedTotal = 0;

  constructor(
    private readonly clock: Clock,
    private readonly onDropped: () => void = () => undefined,
    capacity = RECENT_RETRIES,
  ) {
    this.ring = new Array<Entry | undefined>(capacity);
  }

  /** The retry layer's observer (proxy/layers/retry.ts RetryObserver). */
  readonly record = (req: ProxyRequest, attempts: number, causes: readonly RetryCause[], result: string, stopped: string): void => {
    const route = req.route;
    const old = this.ring[this.next];
    if (old !== undefined && old.seq > this.readSeq) {
      this.droppedTotal++;
      this.onDropped();
    }
    this.ring[this.next] = {
      at: this.clock.now(),
      seq: ++this.seq,
      r: {
        // The path as the client sent it (before a URLRewrite), without its query (it may carry secrets).
        service: route ? `${route.service.name}.${route.service.namespace}` : '', port: route?.port.port ?? 0, route: req.routeName ?? '',
        method: req.method, path: (req.originalPath ?? req.path).split('?')[0].slice(0, 300), attempts, causes: causes.map((c) => ({ outcome: c.outcome, retryOn: c.retryOn })), result, stopped,
      },
    };
    this.next = (this.next + 1) % this.ring.length;
  };

  /** Retries pushed out before a report carried them (cumulative). */
  get dropped(): number {
    return this.droppedTotal;
  }

  /** The kept retries, oldest first, each with how long ago it ended; what is returned counts as reported. */
  recent(): RecentRetry[] {
    const now = this.clock.now();
    const out: RecentRetry[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const e = this.ring[(this.next + i) % this.ring.length];
      if (e !== undefined) out.push({ ...e.r, ageMs: Math.max(0, Math.round(now - e.at)) });
    }
    this.readSeq = this.seq;
    return out;
  }
}
