import type { Clock, Timer } from './clock.js';

/** A WallDeadline looks at the wall clock at least this often. */
export const WALL_CHECK_MS = 60_000;

/**
 * A one-shot timer for something due by the wall clock (a certificate's renewal or expiry):
 * it fires when either clock says so, the monotonic one its timers run on (`delayMs` from
 * now: a wall clock stepped back must not postpone it) or the wall clock (`dueWallMs`, by
 * default `delayMs` from the wall clock's now), and is armed for at most WALL_CHECK_MS at a
 * time, looking again each time. During a host suspend (a laptop running kind or k3d asleep,
 * a VM paused or live-migrated) CLOCK_MONOTONIC, which Node's timers and performance.now()
 * run on, stops, and the wall clock is set right on resume: a single timer of the whole delay
 * fired that much *running* time later, hours after the certificate it was for had expired.
 * The proxy's workload-certificate renewal and its wait for a new certificate's notBefore
 * (proxy/identity/workload-identity.ts, istio/ztunnel#1481) use it too; dapr (dapr/dapr#7565)
 * and cert-manager (cert-manager/cert-manager#8464) re-check every minute as this does.
 *
 * The timer is unref()ed (what it is for never keeps the process alive by itself) unless
 * `keepAlive`: something awaits it (a sidecar's first certificate waiting for its notBefore).
 */
export class WallDeadline {
  private timer: Timer | null = null;
  private readonly dueMs: number;
  /** When it is due by the wall clock (clock.wallNow()). */
  readonly dueWallMs: number;

  private readonly keepAlive: boolean;

  /** `delayMs` absent: due by the wall clock only (`dueWallMs`). */
  constructor(
    private readonly clock: Clock,
    o: ({ readonly delayMs: number; readonly dueWallMs?: number } | { readonly delayMs?: undefined; readonly dueWallMs: number }) & { readonly keepAlive?: boolean },
    private readonly fn: () => void,
  ) {
    this.dueMs = o.delayMs === undefined ? Infinity : clock.now() + o.delayMs;
    this.dueWallMs = o.dueWallMs ?? clock.wallNow() + o.delayMs!;
    this.keepAlive = o.keepAlive === true;
    this.arm();
  }

  /** Ms until it is due by the earlier clock (<= 0: due). */
  get leftMs(): number {
    return Math.min(this.dueMs - this.clock.now(), this.dueWallMs - this.clock.wallNow());
  }

  cancel(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    const left = this.leftMs;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (this.leftMs <= 0) this.fn();
      else this.arm();
    }, left <= 0 ? 0 : Math.min(left, WALL_CHECK_MS));
    if (!this.keepAlive) this.timer.unref?.();
  }
}
