import { Cancel, type CancelSignal } from './cancel.js';

const ONCE = { once: true } as const;

/**
 * A cancellation (common/cancel.ts) that also aborts, with the same reason, when `parent`
 * does: what `AbortSignal.any([parent, own.signal])` gives, without it. node's
 * AbortSignal.any links the signals through WeakRefs and keeps a composite signal that has
 * an 'abort' listener in a set until it aborts; scavenges cannot free either, so what they
 * reach was promoted with them (1.5 KB a request with a per-try timeout:
 * test/scavenge-survivors.test.ts, docs/benchmarks.md "Promoted by an object listener").
 * A plain function listener on the parent is freed with the request.
 */
export function linkedAbort(parent: CancelSignal): Cancel {
  const ac = new Cancel();
  if (parent.aborted) ac.abort(parent.reason);
  else parent.addEventListener('abort', () => ac.abort(parent.reason), ONCE);
  return ac;
}
