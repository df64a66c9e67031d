import type { Proxy } from '../../proxy/proxy.js';

/** Polls a sidecar's /ready until it answers 200; throws after `timeoutMs`. */
export async function untilReady(p: Proxy, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while ((await fetch(`http://127.0.0.1:${p.adminPort}/ready`)).status !== 200) {
    if (Date.now() > end) throw new Error('not ready');
    await new Promise((r) => setTimeout(r, 20));
  }
}
