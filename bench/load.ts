/**
 * The load generators of the data-path benchmark, all C programs so their cost stays out
 * of the proxies' figures: wrk for HTTP/1.1 at saturation (as the issue's table was
 * measured), h2load (nghttp2-client) for everything else. Each returns requests/s, the
 * counts, and p50/p90/p99 in ms.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const execFileAsync = promisify(execFile);

export interface LoadResult {
  readonly rps: number;
  readonly done: number;
  readonly failed: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

export interface H2loadOptions {
  readonly h1: boolean;
  readonly clients: number;
  readonly streams: number;
  readonly seconds: number;
  /** Requests per second per connection (h2load `--rps`). */
  readonly rps?: number;
  /**
   * Start the connections one per millisecond (`-r 1 --rate-period=1ms`), so that with
   * `rps` each connection's request timer is offset from the others' and arrivals are
   * spread evenly instead of all connections firing on the same tick. h2load then runs a
   * request count (`-n`, rate × seconds) instead of a duration (it refuses both).
   */
  readonly spread?: boolean;
  readonly headers: readonly string[];
  /** A file to send as the request body. */
  readonly data?: string;
}

export const quantile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;

function fromLatencies(rps: number, done: number, failed: number, sorted: readonly number[]): LoadResult {
  return { rps, done, failed, p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99) };
}

/**
 * The warm-up of a timed h2load run (`-D`): its requests are not in the figures h2load
 * reports, so whoever counts the servers' CPU per request starts counting after it
 * (bench/data-path.ts, measure).
 */
export const H2LOAD_WARM_UP_SECONDS = 1;

/** One h2load run; percentiles come from its per-request log, not its summary. */
export async function h2load(url: string, o: H2loadOptions): Promise<LoadResult & { lat: number[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'wren-h2load-'));
  const log = join(dir, 'log.tsv');
  const args = [...(o.h1 ? ['--h1'] : []), '-c', String(o.clients), '-m', String(o.streams), '--log-file', log];
  if (o.spread && o.rps) args.push('-n', String(Math.round(o.rps * o.clients * o.seconds)), '-r', '1', '--rate-period=1ms');
  else args.push('-D', String(o.seconds), `--warm-up-time=${H2LOAD_WARM_UP_SECONDS}`);
  if (o.rps) args.push(`--rps=${o.rps}`);
  for (const h of o.headers) args.push('-H', h);
  if (o.data) args.push('-d', o.data);
  args.push(url);
  try {
    const { stdout: out } = await execFileAsync('h2load', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
    const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
    const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(out);
    const lat = (await readFile(log, 'utf8')).trim().split('\n').map((l) => Number(l.split('\t')[2]) / 1000).filter((x) => x >= 0).sort((a, b) => a - b);
    return { ...fromLatencies(rps, Number(req?.[3] ?? 0), Number(req?.[5] ?? 0), lat), lat };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A fixed rate from `n` single-connection h2load processes, each sending `rate / n` req/s,
 * started a few ms apart so arrivals interleave (one h2load with `--rps` and no spread
 * fires all its connections on the same tick).
 */
export async function pacedH2load(url: string, o: { h1: boolean; n: number; rate: number; seconds: number; headers: readonly string[] }): Promise<LoadResult> {
  const period = 1000 / o.rate;
  const runs = await Promise.all(
    Array.from({ length: o.n }, (_, i) =>
      new Promise((r) => setTimeout(r, i * period * 0.97)).then(() => h2load(url, { h1: o.h1, clients: 1, streams: 1, seconds: o.seconds, rps: o.rate / o.n, headers: o.headers })),
    ),
  );
  const sum = (k: 'rps' | 'done' | 'failed') => runs.reduce((a, r) => a + r[k], 0);
  return fromLatencies(sum('rps'), sum('done'), sum('failed'), runs.flatMap((r) => r.lat).sort((a, b) => a - b));
}

const MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** wrk at saturation with its HdrHistogram percentiles (`--latency`). */
export async function wrk(url: string, o: { connections: number; seconds: number; host: string; postBytes?: number; close?: boolean }): Promise<LoadResult> {
  // postBytes: every request a POST of that many bytes (wrk's Lua: wrk.body, sent with its Content-Length).
  // close: every request says `Connection: close`, so the server closes after its response and wrk connects again (a connection per request).
  const dir = o.postBytes === undefined ? null : await mkdtemp(join(tmpdir(), 'wren-wrk-'));
  const script = dir === null ? [] : ['-s', join(dir, 'post.lua')];
  if (dir !== null) await writeFile(script[1], `wrk.method = "POST"\nwrk.body = string.rep("u", ${o.postBytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
  const { stdout: out } = await execFileAsync('wrk', ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency', ...script, '-H', `Host: ${o.host}`, ...(o.close ? ['-H', 'Connection: close'] : []), url], { encoding: 'utf8' }).finally(() => (dir === null ? undefined : rm(dir, { recursive: true, force: true })));
  const pct = (p: number) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? Number(m[1]) * MS[m[2]] : NaN;
  };
  const done = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = sock ? sock.slice(1).reduce((a, x) => a + Number(x), 0) : 0;
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN), done, failed: non2xx + errors, p50: pct(50), p90: pct(90), p99: pct(99) };
}
