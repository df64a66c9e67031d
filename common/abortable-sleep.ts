import type { Clock } from './clock.js';

/**
 * Waits `ms` on `clock`; rejects with `signal`'s reason as soon as it aborts, the timer
 * cleared. A signal already aborted is the caller's to check: the wait starts regardless.
 */
export function abortableSleep(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clock.clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
