import { ProxyError } from '../errors/proxy-error.js';
import type { Clock } from '../../common/clock.js';
import type { CancelSignal } from '../../common/cancel.js';

/** The ProxyError an aborted signal stands for: its reason if typed, else the client going away. */
export function abortReason(signal: CancelSignal): ProxyError {
  return signal.reason instanceof ProxyError ? signal.reason : new ProxyError('CLIENT_CANCELLED');
}

/**
 * Settles with `p`, or rejects with the abort reason as soon as `signal` aborts. Layers
 * below may not watch the signal at every step (a pending connect does not), so timeouts
 * and cancellation take effect at once; a result that arrives late goes to `onLate` so
 * its body can be released.
 */
export function raceSignal<T>(p: Promise<T>, signal: CancelSignal, onLate?: (v: T) => void): Promise<T> {
  if (signal.aborted) {
    p.then((v) => onLate?.(v), () => undefined);
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) return void onLate?.(v);
        settled = true;
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        reject(e);
      },
    );
  });
}

/** Waits `ms` on the injected clock; rejects with the abort reason if `signal` aborts first. */
export function sleep(clock: Clock, ms: number, signal: CancelSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clock.clearTimeout(t);
      reject(abortReason(signal));
    };
    const t = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
