/**
 * A real Prometheus (Debian's `prometheus` package, /usr/bin/prometheus) started by a test
 * on loopback, scraping the targets it is given every second, and a small client for its
 * HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/). Prometheus cannot
 * listen on port 0, so a free port is found by binding and releasing one, and the start is
 * retried on another port if something took it in between. Its storage is a temporary
 * directory, removed by close(). It never touches a system Prometheus (the Debian package's
 * service, on :9090) nor its configuration.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMissing, installCommand, missing } from '../../scripts/test-prerequisites.mjs';
import { closedPort } from './closed-port.js';

export interface ScrapeTarget {
  /** host:port serving the metrics at `path` (default /metrics; a sidecar's metrics port serves /stats/prometheus). */
  readonly address: string;
  readonly job: string;
  /** Target labels, as Kubernetes service discovery relabelling would set them (namespace, pod). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly path?: string;
}

export interface PromSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

export type QueryResult = { readonly ok: true; readonly samples: readonly PromSample[] } | { readonly ok: false; readonly error: string };

/** Why a test needing Prometheus cannot run here (printed, for a `describe.skip`), or null. */
export function prometheusSkipReason(file: string): string | null {
  const gone = missing(['prometheus']);
  if (!gone.length) return null;
  const reason = `missing ${describeMissing(gone)}; \`npm test\` installs it when run as root on Debian, or run: ${installCommand(gone)}`;
  // Straight to stderr: jest drops the console output of a file whose tests are all skipped.
  process.stderr.write(`\n${'!'.repeat(78)}\n! ${file}: SKIPPED: ${reason}\n${'!'.repeat(78)}\n`);
  return reason;
}

function configYaml(targets: readonly ScrapeTarget[], intervalS: number): string {
  // JSON is YAML: no quoting rules to get wrong.
  return JSON.stringify({
    global: { scrape_interval: `${intervalS}s`, scrape_timeout: `${intervalS}s`, evaluation_interval: `${intervalS}s` },
    scrape_configs: targets.map((t, i) => ({
      job_name: `${t.job}-${i}`,
      metrics_path: t.path ?? '/metrics',
      static_configs: [{ targets: [t.address], labels: { job: t.job, ...t.labels } }],
    })),
  });
}

export class Prometheus {
  private out = '';

  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  /** Starts Prometheus scraping `targets` every `intervalS` seconds; resolves once /-/ready answers. */
  static async start(targets: readonly ScrapeTarget[], intervalS = 1): Promise<Prometheus> {
    const dir = await mkdtemp(join(tmpdir(), 'wren-prometheus-'));
    await writeFile(join(dir, 'prometheus.yml'), configYaml(targets, intervalS));
    let lastError = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await closedPort();
      const child = spawn(
        'prometheus',
        [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
        { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const p = new Prometheus(`http://127.0.0.1:${port}`, child, dir);
      if (await p.ready(20_000)) return p;
      lastError = p.out;
      await p.stop();
      if (!/address already in use/.test(lastError)) break;
    }
    await rm(dir, { recursive: true, force: true });
    throw new Error(`prometheus did not start:\n${lastError.slice(-3000)}`);
  }

  private async ready(ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    while (performance.now() < end && this.child.exitCode === null) {
      try {
        if ((await fetch(`${this.url}/-/ready`)).ok) return true;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  /** Prometheus' own output (warnings and errors only), for failure messages. */
  log(): string {
    return this.out.slice(-4000);
  }

  private async api(path: string, params: Record<string, string | readonly string[]>): Promise<{ status: string; data?: unknown; error?: string }> {
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const one of typeof v === 'string' ? [v] : v) body.append(k, one);
    const res = await fetch(`${this.url}${path}`, { method: 'POST', body });
    return (await res.json()) as { status: string; data?: unknown; error?: string };
  }

  /** An instant query (/api/v1/query) at the current time. */
  async query(expr: string): Promise<QueryResult> {
    const r = await this.api('/api/v1/query', { query: expr });
    if (r.status !== 'success') return { ok: false, error: r.error ?? r.status };
    const data = r.data as { resultType: string; result: unknown };
    if (data.resultType === 'scalar') return { ok: true, samples: [{ metric: {}, value: data.result as [number, string] }] };
    if (data.resultType !== 'vector') return { ok: false, error: `unexpected result type ${data.resultType}` };
    return { ok: true, samples: data.result as PromSample[] };
  }

  /** Values of `label` on the series matching `match` (/api/v1/label/<label>/values), over the last hour. */
  async labelValues(label: string, match?: string): Promise<{ ok: true; values: string[] } | { ok: false; error: string }> {
    const params: Record<string, string> = { start: String(Date.now() / 1000 - 3600) };
    if (match) params['match[]'] = match;
    // This endpoint is GET only.
    const res = await fetch(`${this.url}/api/v1/label/${encodeURIComponent(label)}/values?${new URLSearchParams(params)}`);
    const r = (await res.json()) as { status: string; data?: string[]; error?: string };
    return r.status === 'success' ? { ok: true, values: r.data ?? [] } : { ok: false, error: r.error ?? r.status };
  }

  /** Scrape state of every target (/api/v1/targets). */
  async targets(): Promise<{ scrapeUrl: string; health: string; lastScrape: string; lastError: string }[]> {
    const res = await fetch(`${this.url}/api/v1/targets?state=active`);
    return ((await res.json()) as { data: { activeTargets: { scrapeUrl: string; health: string; lastScrape: string; lastError: string }[] } }).data.activeTargets;
  }

  /** Resolves after every target has been scraped successfully `n` more times from now. */
  async waitForScrapes(n: number, timeoutMs = 20_000): Promise<void> {
    const end = performance.now() + timeoutMs;
    for (let i = 0; i < n; i++) {
      const since = Date.now();
      for (;;) {
        const t = await this.targets();
        if (t.length && t.every((x) => x.health === 'up' && Date.parse(x.lastScrape) > since)) break;
        if (performance.now() > end) throw new Error(`targets not scraped ${n} times: ${JSON.stringify(t)}\n${this.log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
