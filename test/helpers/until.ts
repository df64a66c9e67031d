/** Polls `cond` every 50 ms until it holds or `ms` have passed; resolves with a last check (true if it holds by then). */
export async function until(cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/**
 * Resolves with `read()` once it has stayed the same for `quietMs` (polled every 50 ms), or with
 * undefined if it is still changing after `maxMs`. For "grows to a bound and stops": a fixed settle
 * time is a guess about machine speed, a quiet window is the claim itself.
 */
export async function settled<T>(read: () => T, quietMs: number, maxMs: number): Promise<T | undefined> {
  const end = Date.now() + maxMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    const now = read();
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) return now;
  }
  return undefined;
}
