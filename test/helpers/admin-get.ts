/**
 * fetch() for a control plane's admin pages, waiting out the render budget's refusals as
 * the CLI and the dashboard do (cli/retry-after.ts): a 503 with Retry-After
 * (control-plane/dashboard/render-budget.ts) is asked again after the time it names, at
 * most four times. On a loaded machine any render can take the 100 ms that makes the
 * next request of that page a refusal, so a test that reads a page twice must not take
 * that 503 for the page's answer. A 503 without Retry-After is returned as it is.
 */
export async function adminGet(url: string, init?: RequestInit): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(url, init);
    const after = res.headers.get('retry-after');
    if (res.status !== 503 || after === null || attempt === 4) return res;
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, Math.min(Number(after), 10) * 1000 + 50));
  }
}
