import type { Proxy } from '../../proxy/proxy.js';

/** The first capture of `re` in a sidecar's /metrics text, as a number (0 when the series is absent). */
export async function metric(p: Proxy, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}
