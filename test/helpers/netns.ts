/**
 * Throwaway network namespaces for tests that need real interception (root or
 * CAP_NET_ADMIN + CAP_SYS_ADMIN, iproute2, iptables; util-linux's setpriv to run a
 * process as another UID). Everything is named with a per-run prefix so parallel runs
 * never share a namespace; `cleanup()` stops what was started and deletes the namespaces.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { describeMissing, installCommand, missing } from '../../scripts/test-prerequisites.mjs';

export const sh = (args: string[]): string => execFileSync(args[0], args.slice(1), { stdio: 'pipe' }).toString();
export const inNs = (ns: string, args: string[]): string => sh(['ip', 'netns', 'exec', ns, ...args]);

/** The tools every namespace test needs (rows of scripts/test-prerequisites.mjs). */
export const NETNS_TOOLS = ['ip', 'iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore', 'setpriv'] as const;

/**
 * Why a namespace test cannot run here, or null when it can: decided once, when jest
 * collects the file, so the suite is declared with `describe.skip` and counted as
 * skipped (never as passed). Missing tools are named with the command that installs
 * them; namespaces are probed for real (`ip netns add`), since root alone is not enough
 * in a container without CAP_SYS_ADMIN. Any other failure of the probe throws.
 */
export function netnsSkipReason(file: string, tools: readonly string[]): string | null {
  const reason = whyNot(tools);
  // Straight to stderr: jest drops the console output of a file whose tests are all skipped.
  if (reason) process.stderr.write(`\n${'!'.repeat(78)}\n! ${file}: SKIPPED: ${reason}\n${'!'.repeat(78)}\n`);
  return reason;
}

function whyNot(tools: readonly string[]): string | null {
  const gone = missing(tools);
  if (gone.length) return `missing ${describeMissing(gone)}; \`npm test\` installs them when run as root on Debian, or run: ${installCommand(gone)}`;
  const probe = `wren-probe-${randomBytes(4).toString('hex')}`;
  try {
    sh(['ip', 'netns', 'add', probe]);
  } catch (e) {
    const text = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
    if (/not permitted|EPERM|permission denied/i.test(text)) return `network namespaces are unavailable (needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN): ${text}`;
    throw new Error(`ip netns add ${probe} failed: ${text}`, { cause: e });
  }
  sh(['ip', 'netns', 'del', probe]);
  return null;
}

/** A process started inside a namespace; its output is kept for failure reports. */
export class NsProcess {
  out = '';
  err = '';
  readonly exit: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.err += d.toString()));
    this.exit = new Promise((r) => child.once('close', (code) => r(code)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    return `--- ${this.name} (pid ${this.child.pid}, ${this.running ? 'running' : `exited ${this.child.exitCode ?? this.child.signalCode}`})\nstdout:\n${this.out.slice(-4000)}\nstderr:\n${this.err.slice(-4000)}`;
  }

  /** Resolves when stdout matches; rejects (with the process's output) if it exits or the time runs out. */
  waitForOutput(re: RegExp, ms: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(this.out);
        if (m) {
          done();
          resolve(m[0]);
        }
      };
      const onExit = () => {
        done();
        reject(new Error(`${this.name} exited before printing ${re}\n${this.log()}`));
      };
      const t = setTimeout(() => {
        done();
        reject(new Error(`${this.name} did not print ${re} within ${ms} ms\n${this.log()}`));
      }, ms);
      const done = () => {
        clearTimeout(t);
        this.child.stdout?.off('data', check);
        this.child.off('close', onExit);
      };
      this.child.stdout?.on('data', check);
      this.child.once('close', onExit);
      check();
      if (!this.running) onExit();
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(t);
  }
}

/** A directory bind-mounted into the process's own mount namespace, as a container volume. */
export interface Mount {
  /** Host directory (outside /run). */
  readonly source: string;
  /** Where the process sees it: under /run (or /var/run), like the injector's volumes. */
  readonly target: string;
  readonly readOnly?: boolean;
}

export interface SpawnOptions {
  /** Run as this UID (and the same GID) via setpriv, with supplementary groups cleared. */
  readonly uid?: number;
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /**
   * Volumes: the process gets a private mount namespace with a fresh tmpfs on /run (a
   * container's /run is its own) and each source bind-mounted at its target. Nothing is
   * created on the host's /run, and the mounts vanish with the process.
   */
  readonly mounts?: readonly Mount[];
}

/** The checkout the tests run from: the apps and sidecars they start as other UIDs read it. */
const CHECKOUT = resolve(import.meta.dirname, '..', '..');

/**
 * The topmost directory on the way to the checkout that other users cannot search, or null.
 * A root user's checkout on a fresh Debian machine is in root's own home (/root is 0700), where
 * an app or a sidecar started as UID 1000 or 2102 could not read node, the built code or the
 * modules (`Cannot read package config /root/package.json: permission denied`). Such a process
 * gets, in its own mount namespace only, a 0711 tmpfs over that directory with the checkout
 * bound back at its path (withMounts): it reaches the checkout and nothing else of the
 * directory; nothing changes on the host.
 */
function blockedAncestor(dir: string): string | null {
  const parts = dir.split('/').filter(Boolean);
  // The checkout itself is not looked at: hiding it would not help.
  for (let i = 1; i < parts.length; i++) {
    const p = `/${parts.slice(0, i).join('/')}`;
    if ((statSync(p).mode & 0o001) === 0) return p;
  }
  return null;
}
const BLOCKED = blockedAncestor(CHECKOUT);

const underRun = (p: string): string | null => {
  const m = /^\/(?:var\/)?run(\/.*)?$/.exec(p);
  return m && !(m[1] ?? '').split('/').includes('..') ? `/run${m[1] ?? ''}` : null;
};

/**
 * `unshare --mount` + a shell that mounts the volumes and execs `argv` (positional
 * parameters carry every path, so nothing is quoted into the script). `mount -n`: libmount
 * would otherwise create /run/mount/utab on the host before the tmpfs hides /run.
 */
function withMounts(mounts: readonly Mount[], argv: string[], blocked: string | null = null): string[] {
  const lines = ['set -e', 'mount -n -t tmpfs -o mode=0755,size=16m wren-pod-run /run'];
  const params: string[] = [];
  for (const m of mounts) {
    const target = underRun(m.target);
    if (!target) throw new Error(`mount target ${m.target}: only paths under /run or /var/run are supported`);
    if (underRun(m.source) || !m.source.startsWith('/')) throw new Error(`mount source ${m.source}: expected an absolute path outside /run`);
    const [s, t] = [params.push(m.source), params.push(target)];
    // ${N}, not $N: $10 would be ${1}0.
    lines.push(`mkdir -p "\${${t}}"`, `mount -n --bind "\${${s}}" "\${${t}}"`);
    if (m.readOnly) lines.push(`mount -n -o remount,bind,ro "\${${t}}"`);
  }
  if (blocked) {
    // After the volumes (their sources may be under `blocked`): the checkout kept aside in
    // this namespace's /run, `blocked` hidden under a searchable tmpfs, the checkout back.
    const [b, c] = [params.push(blocked), params.push(CHECKOUT)];
    lines.push(
      'mkdir -p /run/.wren-checkout',
      `mount -n --bind "\${${c}}" /run/.wren-checkout`,
      `mount -n -t tmpfs -o mode=0711,size=1m wren-traverse "\${${b}}"`,
      `mkdir -p "\${${c}}"`,
      `mount -n --bind /run/.wren-checkout "\${${c}}"`,
    );
  }
  // unset PWD: the shell exported it; the process gets exactly the environment it was given.
  lines.push(`shift ${params.length}`, 'unset PWD', 'exec "$@"');
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', lines.join('\n'), 'sh', ...params, ...argv];
}

export class NetnsLab {
  readonly namespaces: string[] = [];
  readonly procs: NsProcess[] = [];

  /** `prefix` should be unique per run (e.g. with a random suffix). */
  constructor(readonly prefix: string) {}

  /** Creates `${prefix}-${name}` with loopback up (the caller checked netnsSkipReason first). */
  add(name: string): string {
    const ns = `${this.prefix}-${name}`;
    sh(['ip', 'netns', 'add', ns]);
    this.namespaces.push(ns);
    inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces, created directly inside them (no names in the host namespace). */
  veth(a: { ns: string; dev: string; addrs?: string[] }, b: { ns: string; dev: string; addrs?: string[] }): void {
    sh(['ip', 'link', 'add', a.dev, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns]);
    for (const end of [a, b]) {
      // IPv6 with nodad: usable at once, without duplicate address detection's delay.
      for (const addr of end.addrs ?? []) inNs(end.ns, addr.includes(':') ? ['ip', '-6', 'addr', 'add', addr, 'dev', end.dev, 'nodad'] : ['ip', 'addr', 'add', addr, 'dev', end.dev]);
      inNs(end.ns, ['ip', 'link', 'set', end.dev, 'up']);
    }
  }

  /** A Linux bridge in `ns` joining `ports` (devices already in `ns`). */
  bridge(ns: string, dev: string, ports: string[]): void {
    inNs(ns, ['ip', 'link', 'add', dev, 'type', 'bridge']);
    for (const p of ports) inNs(ns, ['ip', 'link', 'set', p, 'master', dev]);
    inNs(ns, ['ip', 'link', 'set', dev, 'up']);
  }

  /** Starts `argv` inside `ns` (as root, or as `uid`). Tracked: `cleanup()` stops it. */
  spawn(name: string, ns: string, argv: string[], o: SpawnOptions = {}): NsProcess {
    const asUser = o.uid === undefined ? [] : ['setpriv', `--reuid=${o.uid}`, `--regid=${o.uid}`, '--clear-groups', '--'];
    // A minimal environment: no proxy variables (grpc-js honours http_proxy) or other host state leaks in.
    const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...(o.env ?? {}) };
    const blocked = o.uid === undefined ? null : BLOCKED;
    const cmd = o.mounts?.length || blocked ? withMounts(o.mounts ?? [], [...asUser, ...argv], blocked) : [...asUser, ...argv];
    const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], env, ...(o.cwd ? { cwd: o.cwd } : {}) });
    const p = new NsProcess(name, child);
    this.procs.push(p);
    return p;
  }

  /** Runs `argv` inside `ns` to completion; resolves with its exit code and output. */
  async run(name: string, ns: string, argv: string[], o: SpawnOptions & { timeoutMs?: number } = {}): Promise<{ code: number | null; out: string; err: string }> {
    const p = this.spawn(name, ns, argv, o);
    const t = setTimeout(() => p.child.kill('SIGKILL'), o.timeoutMs ?? 15_000);
    const code = await p.exit;
    clearTimeout(t);
    return { code, out: p.out, err: p.err };
  }

  /**
   * HTTP GETs from inside `ns` by a throwaway node process (as `kubectl exec ... curl`
   * would): each URL's status and body, status 0 with the error when it fails.
   */
  async httpGet(ns: string, urls: readonly string[], o: SpawnOptions = {}): Promise<{ status: number; body: string }[]> {
    const script = `const out = [];
for (const u of process.argv.slice(1)) {
  try { const r = await fetch(u, { signal: AbortSignal.timeout(3000) }); out.push({ status: r.status, body: await r.text() }); }
  catch (e) { out.push({ status: 0, body: String(e?.cause ?? e) }); }
}
console.log(JSON.stringify(out));`;
    const r = await this.run(`GET in ${ns}`, ns, [process.execPath, '--input-type=module', '-e', script, ...urls], o);
    if (r.code !== 0) throw new Error(`GET ${urls.join(' ')} in ${ns} failed (exit ${r.code}): ${r.err}`);
    return JSON.parse(r.out.trim().split('\n').pop()!) as { status: number; body: string }[];
  }

  /** The UID a process runs as (real UID from /proc), to show who is who. */
  static uidOf(pid: number): number {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  }

  /** Stops every process started here (and any left in our namespaces), then deletes the namespaces. */
  async cleanup(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop(1500)));
    for (const ns of this.namespaces) {
      let pids: number[] = [];
      try {
        pids = sh(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
      } catch {
        // namespace already gone
      }
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        sh(['ip', 'netns', 'del', ns]);
      } catch (e) {
        console.warn(`could not delete netns ${ns}: ${(e as Error).message}`);
      }
    }
  }
}
