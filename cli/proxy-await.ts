/**
 * `wren proxy await`: wait until the local sidecar answers 200 on its admin `/ready`.
 * It is what the injected native sidecar's startupProbe and the classic sidecar's
 * postStart hook exec (control-plane/injector/sidecar.ts): the admin port binds
 * 127.0.0.1, which kubelet's httpGet probes cannot reach, so the check runs inside the
 * pod. Same role as Linkerd's `linkerd-await`. Exit codes: 0 ready, 1 not ready within
 * --timeout, 2 bad usage.
 */
import { request } from '../common/node-http.js';
import { parseArgs } from 'node:util';
import { systemClock, type Clock } from '../common/clock.js';
import { duration, parseWith } from '../common/schema.js';
import { retryAfterMs } from './retry-after.js';

type Out = (s: string) => void;

export const PROXY_AWAIT_USAGE = `Usage: wren proxy await [--admin-port 15000] [--timeout 120s] [--interval 100ms]

Polls http://ADDRESS:PORT/ready on the sidecar's admin port until it answers 200 and
exits 0; exits 1 if it has not by --timeout. Used by the injected proxy's startupProbe
(native sidecar) and postStart hook (classic sidecar), so the app starts only once its
proxy is ready.

Options:
  --admin-port PORT      the proxy's admin port (default 15000)
  --admin-address ADDR   where the admin port listens (default 127.0.0.1)
  --timeout DURATION     give up after this long, e.g. 2s, 120s, 5m (default 120s)
  --interval DURATION    pause between attempts (default 100ms)
  -h, --help             show this help
`;

export interface ProxyAwaitDeps {
  readonly clock?: Clock;
}

class UsageError extends Error {}

interface AwaitArgs {
  readonly address: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly intervalMs: number;
  readonly help: boolean;
}

function durationFlag(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  // The config parser's durations ("250ms", "2s", "5m"); a bare number is ambiguous here.
  try {
    return parseWith(duration(), v, `--${name}`);
  } catch {
    throw new UsageError(`--${name}: expected a duration like 100ms, 2s or 5m, got ${JSON.stringify(v)}`);
  }
}

function parse(argv: string[]): AwaitArgs {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      'admin-port': { type: 'string' },
      'admin-address': { type: 'string' },
      timeout: { type: 'string' },
      interval: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const p = values['admin-port'] ?? '15000';
  if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new UsageError(`--admin-port: expected a port 1-65535, got ${JSON.stringify(p)}`);
  const timeoutMs = durationFlag('timeout', values.timeout, 120_000);
  const intervalMs = durationFlag('interval', values.interval, 100);
  if (timeoutMs <= 0) throw new UsageError('--timeout must be more than 0');
  return { address: values['admin-address'] ?? '127.0.0.1', port: Number(p), timeoutMs, intervalMs, help: values.help ?? false };
}

/** One answer of /ready; `timedOut`: none came within the attempt's time. */
interface Probe {
  status: number;
  detail: string;
  timedOut?: boolean;
  /** The answer's Retry-After header, if any. */
  retryAfter?: string;
}

/** One GET /ready: the status and the first line of the body, or the connection error. */
function probe(a: AwaitArgs, clock: Clock, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: Probe) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      resolve(r);
    };
    const req = request({ host: a.address, port: a.port, path: '/ready', method: 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 512) body += d;
      });
      const ra = res.headers['retry-after'];
      res.on('end', () => finish({ status: res.statusCode ?? 0, detail: body.trim().split('\n')[0] ?? '', ...(ra === undefined ? {} : { retryAfter: ra }) }));
      res.on('error', (e) => finish({ status: 0, detail: e.message }));
    });
    // A proxy that accepts but never answers must not stall the probe past its deadline.
    const timer = clock.setTimeout(() => {
      finish({ status: 0, detail: `no answer within ${timeoutMs} ms`, timedOut: true });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => finish({ status: 0, detail: e.code ? `${e.code} ${e.message}` : e.message }));
    req.end();
  });
}

const sleep = (clock: Clock, ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));

/** One attempt's longest wait for an answer. */
const ATTEMPT_MS = 1000;

export async function proxyAwaitCommand(argv: string[], out: Out, err: Out, deps: ProxyAwaitDeps = {}): Promise<number> {
  let a: AwaitArgs;
  try {
    a = parse(argv);
  } catch (e) {
    err(`wren proxy await: ${(e as Error).message}\n\n${PROXY_AWAIT_USAGE}`);
    return 2;
  }
  if (a.help) {
    out(PROXY_AWAIT_USAGE);
    return 0;
  }
  const clock = deps.clock ?? systemClock;
  const url = `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}/ready`;
  const start = clock.now();
  const deadline = start + a.timeoutMs;
  let attempts = 0;
  let last: Probe = { status: 0, detail: 'no attempt' };
  for (;;) {
    attempts++;
    const budget = Math.max(1, Math.ceil(Math.min(ATTEMPT_MS, deadline - clock.now())));
    const r = await probe(a, clock, budget);
    // An attempt cut short by the deadline itself (its time was what was left, and it ran
    // out) says less than the answer before it. Judged by its own budget, not by the clock
    // after it: a 1 ms timer may fire before the deadline has passed (libuv's loop time).
    const cutShort = r.timedOut === true && budget < ATTEMPT_MS;
    if (!cutShort || last.status === 0) last = r;
    if (last.status === 200) {
      out(`proxy ready: ${url} answered 200 after ${Math.round(clock.now() - start)} ms (${attempts} attempt${attempts === 1 ? '' : 's'})\n`);
      return 0;
    }
    const left = deadline - clock.now();
    if (left <= 0) break;
    // A 429/503 with Retry-After (RFC 9110 section 10.2.3) asks for a longer pause than
    // --interval: honoured, within what is left of --timeout (which bounds the attempts).
    const asked = r.status === 429 || r.status === 503 ? (retryAfterMs(r.retryAfter, clock.wallNow()) ?? 0) : 0;
    await sleep(clock, Math.min(Math.max(a.intervalMs, asked), left));
    if (deadline - clock.now() <= 0) break;
  }
  const lastSeen = last.status ? `HTTP ${last.status}${last.detail ? ` (${last.detail})` : ''}` : last.detail;
  err(`wren proxy await: the proxy was not ready within ${a.timeoutMs} ms: ${url} never answered 200 (${attempts} attempt${attempts === 1 ? '' : 's'}; last: ${lastSeen})\n`);
  return 1;
}
