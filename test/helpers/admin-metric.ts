import type { Proxy } from '../../proxy/proxy.js';

/** The first capture of `re` in a sidecar's /metrics text, as a number (0 when the series is absent). */
export async function metric(p: Proxy, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

export type Series = { labels: Record<string, string>; value: number };

/** The samples of `name` in a sidecar's admin /metrics (Prometheus text format), labels parsed. */
export async function scrape(p: Proxy, name: string): Promise<Series[]> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf('}'));
    const labels: Record<string, string> = {};
    for (const m of body.matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
    out.push({ labels, value: Number(line.slice(line.lastIndexOf(' ') + 1)) });
  }
  return out;
}
