import type { Clock } from '../../common/clock.js';

/** How often the drain looks at the in-flight counts: no hook on the request path, a look every 50 ms while draining only. */
const POLL_MS = 50;

/**
 * Resolves true as soon as `busy()` is 0 (looked at now, then every 50 ms), false when
 * `withinMs` is over first. The outbound half of the drain: in-flight outbound requests and
 * tunnels count, idle keep-alive connections do not.
 */
export function untilIdle(clock: Clock, busy: () => number, withinMs: number): Promise<boolean> {
  if (busy() === 0) return Promise.resolve(true);
  const deadline = clock.now() + withinMs;
  return new Promise<boolean>((resolve) => {
    const look = (): void => {
      if (busy() === 0) return resolve(true);
      const left = deadline - clock.now();
      if (left <= 0) return resolve(false);
      clock.setTimeout(look, Math.min(POLL_MS, left));
    };
    clock.setTimeout(look, Math.min(POLL_MS, withinMs));
  });
}
