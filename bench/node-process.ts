import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** A Node child process of a benchmark, started by `startNode`. */
export interface NodeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The ready pattern's match (its groups carry the ports the process printed). */
  readonly match: RegExpMatchArray;
}

/**
 * Starts `node [nodeArgs] args` and resolves once its stdout or stderr (the proxy logs to
 * stderr) matches `ready`; rejects if it exits first. Every child is added to `into` so
 * the benchmark can stop them all. WREN_BENCH_LOG=1 echoes their output. `env` adds variables to the benchmark's own.
 */
export function startNode(into: ChildProcess[], args: readonly string[], ready: RegExp, nodeArgs: readonly string[] = [], env?: Readonly<Record<string, string>>): Promise<NodeProcess> {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
  into.push(child);
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (process.env.WREN_BENCH_LOG) process.stderr.write(`[${child.pid}] ${d.toString()}`);
      const m = buf.match(ready);
      if (m) resolve({ child, pid: child.pid!, match: m });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${buf.slice(-500)}`)));
  });
}

/** A free loopback port, for programs that cannot bind port 0 and report it back (HAProxy) or ports another config must name up front. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

