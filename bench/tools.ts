/**
 * The external programs a benchmark needs (haproxy, h2load, wrk; iptables and ip for the soak). When one is missing and
 * the benchmark runs as root, it is installed with apt-get, so the comparison always runs
 * on a fresh machine; otherwise the caller gets the exact reason, to print as a
 * "not measured" row rather than leaving the row out.
 */
import { execFileSync } from 'node:child_process';

/** Program → the Debian package that ships it. */
const PACKAGES: Readonly<Record<string, string>> = { haproxy: 'haproxy', h2load: 'nghttp2-client', wrk: 'wrk', iptables: 'iptables', ip: 'iproute2' };

function present(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Returns, for each program still missing after trying to install it, why it is missing. */
export function ensureTools(programs: readonly string[]): Map<string, string> {
  const missing = programs.filter((p) => !present(p));
  const why = new Map<string, string>();
  if (missing.length === 0) return why;
  const pkgs = missing.map((p) => PACKAGES[p] ?? p);
  if (process.getuid?.() !== 0) {
    for (const p of missing) why.set(p, `${p} is not installed and the benchmark is not root (as root: apt-get install ${PACKAGES[p] ?? p})`);
    return why;
  }
  console.log(`installing ${pkgs.join(', ')} for the benchmark (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let err = '';
  for (const step of [['update', '-qq'], ['install', '-y', '-qq', ...pkgs]]) {
    try {
      execFileSync('apt-get', step, { stdio: ['ignore', 'ignore', 'pipe'], env });
    } catch (e) {
      err = String((e as { stderr?: Buffer }).stderr ?? e).trim().split('\n').slice(-2).join(' ');
    }
  }
  for (const p of missing) if (!present(p)) why.set(p, `${p} is not installed and apt-get install ${PACKAGES[p] ?? p} failed${err ? `: ${err}` : ''}`);
  return why;
}
