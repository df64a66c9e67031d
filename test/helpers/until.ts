/** Polls `cond` every 50 ms until it holds or `ms` have passed; resolves with a last check (true if it holds by then). */
export async function until(cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}
